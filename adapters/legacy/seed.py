"""Seeded legacy data for the chains' entities: what their systems hold before the platform arrives.

Deterministic (one random seed), realistic Colombian records: names with compound surnames, cédulas,
birth dates, DANE municipality codes, SISBEN IV groups. Each entity keeps its data its own way, as real
registries do — that is what the adapters' mappings bridge:

- the identity registry (Registraduría) answers JSON with `Nombres` and `Apellidos` in one field each,
  document types like "C.C." and dates as dd/mm/yyyy (served by `adapters.legacy.identity_app`);
- SISBEN (DNP) keeps a SQL table with `nombres`, `primer_apellido`, `segundo_apellido`, the group code
  and the survey date as yyyy-mm-dd, and the municipality by name.

The housing window (Ventanilla Única de Subsidios de Vivienda) adds:

- the property registry (SNR) keeps SQL tables `predios` (folio by matrícula inmobiliaria, as the
  registry office writes it: `051-187342` in Soacha, `50C-1456789` in Bogotá's Zona Centro, municipality by
  name, address with registry abbreviations) and `propietarios` (one row per right recorded in a folio's
  anotación, entity-B style names, document type letters, share as Colombian text `50,00`, `vigente` S/N:
  a sold property stays in the folio's history);
- Fonvivienda keeps an Oracle-style schema (`SFV_*` tables, upper-case columns, dates as YYYYMMDD, pesos as
  integers, state codes as digits): previous subsidies granted by any otorgante (by NIT), the calls
  (convocatorias) with their minimum score and cap, the resource pools (bolsas) per call, department and
  modality, the scoring parameters per year (SMMLV), the applications (postulaciones) and the decisions
  (asignaciones, 986 resolutions already issued in 2026), with a trigger that charges each assignment to
  its pool and records it among the subsidies;
- Fiduciaria La Previsora keeps lower-case tables with amounts as Colombian text (`39.000.000,00`), dates
  as dd/mm/yyyy and one-letter states: the subsidies it administers (`sfv_encargos`), the payments made
  (`giros`) and its numbering series (`consecutivos`);
- the cajas de compensación (Colsubsidio, Compensar) and the oferente exchange files through folders with
  `entrada/`, `salida/`, `procesados/` and `errores/` (their batch processes read `salida/`).

The people of the sample messages (schemas/samples) are always included, so the chains' samples find
their records: the sample household owns no property (JUAN CARLOS PÉREZ MORALES sold his Soacha house in
2019), he had a Colsubsidio subsidy in 2015 for $19.330.000 that expired unused, application
VIV-2026-000123 waits in the MCY-2026-02 pool of Cundinamarca (214 places, $8.346.000.000), and the
fiduciaria administers its subsidy under resolution FNV-0987-2026.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

__all__ = ["Person", "SeededLegacy", "people", "seed"]

FEMALE = ["MARÍA", "ANA", "LUZ", "SANDRA", "DIANA", "PAOLA", "ÁNGELA", "FERNANDA", "VALENTINA", "DANIELA", "MARTHA",
          "CLAUDIA", "YOLANDA", "NATALIA", "ESPERANZA", "LUISA", "CAROLINA", "GLORIA"]
MALE = ["JOSÉ", "LUIS", "CARLOS", "JUAN", "JORGE", "ANDRÉS", "CAMILO", "JULIÁN", "ALEJANDRO", "SANTIAGO", "ÓSCAR",
        "HERNÁN", "EDGAR", "FABIO", "WILSON", "MIGUEL", "DAVID", "ENRIQUE"]
SURNAMES = ["GÓMEZ", "RODRÍGUEZ", "MARTÍNEZ", "GARCÍA", "LÓPEZ", "HERNÁNDEZ", "GONZÁLEZ", "PÉREZ", "SÁNCHEZ",
            "RAMÍREZ", "TORRES", "DÍAZ", "MORENO", "ROJAS", "VARGAS", "JIMÉNEZ", "CASTRO", "RUIZ", "ORTIZ",
            "MORALES", "DE LA TORRE", "DEL CASTILLO", "DE LOS RÍOS", "SAN MIGUEL", "DE LA HOZ", "MEJÍA", "OSORIO"]
MUNICIPALITIES = [("11001", "Bogotá D.C."), ("25754", "Soacha"), ("05001", "Medellín"), ("76001", "Cali"),
                  ("08001", "Barranquilla"), ("13001", "Cartagena de Indias"), ("68001", "Bucaramanga"),
                  ("66001", "Pereira"), ("44847", "Uribia"), ("44430", "Maicao")]
SISBEN_GROUPS = {"A": "Pobreza extrema", "B": "Pobreza moderada", "C": "Vulnerable", "D": "No pobre, no vulnerable"}


@dataclass(frozen=True, slots=True)
class Person:
    doc_type: str
    number: str
    given_names: str
    first_surname: str
    second_surname: str | None
    born: dt.date
    municipality_code: str
    municipality: str
    sisben_group: str
    survey_date: dt.date


SAMPLE_PEOPLE = (
    Person("CC", "1020304050", "MARÍA FERNANDA", "GÓMEZ", "RUIZ", dt.date(1990, 4, 12), "25754", "Soacha",
           "C3", dt.date(2024, 3, 15)),
    Person("CC", "1019876543", "JUAN CARLOS", "PÉREZ", "MORALES", dt.date(1978, 3, 14), "25754", "Soacha",
           "C5", dt.date(2024, 3, 15)),
    Person("CC", "79845123", "JORGE ENRIQUE", "DE LA TORRE", "PÉREZ", dt.date(1974, 3, 18), "11001", "Bogotá D.C.",
           "B2", dt.date(2023, 11, 2)),
)


def people(count: int = 200, *, seed: int = 2026) -> list[Person]:
    """The sample people, then `count` generated ones (cédulas unique, deterministic for a seed)."""
    rng = random.Random(seed)
    result = list(SAMPLE_PEOPLE)
    taken = {p.number for p in result}
    while len(result) < count + len(SAMPLE_PEOPLE):
        number = str(rng.randint(10_000_000, 1_099_999_999))
        if number in taken:
            continue
        taken.add(number)
        given = " ".join(rng.sample(rng.choice([FEMALE, MALE]), rng.choice([1, 2, 2])))
        second = rng.choice(SURNAMES) if rng.random() > 0.05 else None
        code, name = rng.choice(MUNICIPALITIES)
        group = rng.choice("ABCD")
        result.append(Person(
            "CC", number, given, rng.choice(SURNAMES), second,
            dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 55)), code, name,
            f"{group}{rng.randint(1, 21 if group == 'D' else 5)}",
            dt.date(2022, 1, 1) + dt.timedelta(days=rng.randint(0, 900)),
        ))
    return result


def _surnames(person: Person) -> str:
    return " ".join(s for s in (person.first_surname, person.second_surname) if s)


def identity_records(persons: list[Person]) -> list[dict[str, str]]:
    """The Registraduría's legacy JSON records (style A: one field for all surnames)."""
    return [{"TipoDoc": "C.C." if p.doc_type == "CC" else p.doc_type, "NumeroDoc": p.number,
             "Nombres": p.given_names, "Apellidos": _surnames(p), "FechaNacimiento": p.born.strftime("%d/%m/%Y"),
             "Estado": "V", "Municipio": p.municipality} for p in persons]


# -- the housing window: property registry, Fonvivienda, the fiduciaria, the cajas and the oferente ---------

ORIP_CIRCLES: dict[str, tuple[str, ...]] = {
    # Registry offices (oficinas de registro de instrumentos públicos) by municipality: Bogotá's three zones
    # write an alphanumeric circle; the others a three-digit code.
    "11001": ("50C", "50N", "50S"), "25754": ("051",), "05001": ("001",), "76001": ("370",), "08001": ("040",),
    "13001": ("060",), "68001": ("300",), "66001": ("290",), "44847": ("210",), "44430": ("210",),
}
SNR_MUNICIPALITIES = {"11001": "BOGOTA D.C.", "25754": "SOACHA", "05001": "MEDELLIN", "76001": "CALI",
                      "08001": "BARRANQUILLA", "13001": "CARTAGENA", "68001": "BUCARAMANGA", "66001": "PEREIRA",
                      "44847": "URIBIA", "44430": "MAICAO"}
SNR_DOCUMENT_TYPES = {"CC": "C", "TI": "T", "CE": "E", "PA": "P", "RC": "R", "NIT": "N", "NUIP": "U"}
STREETS = ("KR", "CL", "DG", "TV", "AK", "AC")
VEREDAS = ("EL HATO", "SAN JORGE", "LA CHAPA", "CHACUA", "PANAMA", "SAN FRANCISCO", "LOS SOCHES")
RURAL_LOTS = ("LOTE LA ESPERANZA", "LOTE EL PORVENIR", "FINCA SAN JOSE", "LOTE LOS PINOS", "PARCELA EL RECREO")

FONVIVIENDA_NIT = "830121208"
COLSUBSIDIO_NIT = "860007336"
COMPENSAR_NIT = "860066942"
OFERENTE_NIT = "900123451"
# Otorgantes of previous subsidies the consolidated information system knows (Fonvivienda and cajas).
OTORGANTES = (FONVIVIENDA_NIT, COLSUBSIDIO_NIT, COMPENSAR_NIT, "860013570", "890900841", "890303208")
SUBSIDY_STATES = ("1", "2", "3", "4", "5")  # asignado, aplicado, vencido, renunciado, revocado
SMMLV = {2024: 1_300_000, 2025: 1_423_500, 2026: 1_750_905}  # salario mínimo mensual legal vigente
DEPARTMENTS = ("11", "25", "05", "76", "08", "13", "68", "66", "44")
CONVOCATORIAS = (
    # code, name, minimum score, cap (pesos), months of validity, opens, closes, modality (Fonvivienda code)
    ("MCY-2026-01", "Mi Casa Ya 2026 - primera convocatoria", 400, 30 * SMMLV[2026], 12, "20260201", "20260531", "AVN"),
    ("MCY-2026-02", "Mi Casa Ya 2026 - segunda convocatoria", 400, 30 * SMMLV[2026], 12, "20260701", "20261215", "AVN"),
    ("CSP-2026-01", "Construcción en sitio propio 2026", 350, 22 * SMMLV[2026], 18, "20260301", "20261130", "CSP"),
    ("MEJ-2026-01", "Cambia Mi Casa 2026 - mejoramiento", 300, 12 * SMMLV[2026], 9, "20260401", "20261130", "MEJ"),
)
SAMPLE_RADICADO = "VIV-2026-000123"
ISSUED_RESOLUTIONS_2026 = 986
LAST_PAYMENT_NUMBER = 4511


def pesos(amount: int | Decimal) -> str:
    """Pesos as a Colombian spreadsheet shows them: `39.000.000,00`."""
    return f"{Decimal(amount):,.2f}".translate(str.maketrans(",.", ".,"))


@dataclass(frozen=True, slots=True)
class SeededLegacy:
    identity_json: Path
    sisben_db: Path
    people: int
    snr_db: Path
    fonvivienda_db: Path
    fiduprevisora_db: Path
    colsubsidio_dir: Path
    compensar_dir: Path
    oferente_dir: Path


def seed(folder: Path, *, count: int = 200, random_seed: int = 2026) -> SeededLegacy:
    """Write every legacy system's data under `folder` (replacing what was there)."""
    folder.mkdir(parents=True, exist_ok=True)
    persons = people(count, seed=random_seed)
    identity = folder / "registraduria.json"
    identity.write_text(json.dumps(identity_records(persons), ensure_ascii=False, indent=1), encoding="utf-8")
    sisben = folder / "sisben.db"
    sisben.unlink(missing_ok=True)
    with sqlite3.connect(sisben) as connection:
        connection.execute(
            "CREATE TABLE encuestados (tipo_documento TEXT NOT NULL, documento TEXT NOT NULL, nombres TEXT, "
            "primer_apellido TEXT, segundo_apellido TEXT, grupo TEXT NOT NULL, clasificacion TEXT NOT NULL, "
            "municipio TEXT NOT NULL, fecha_encuesta TEXT NOT NULL, PRIMARY KEY (tipo_documento, documento))")
        connection.executemany(
            "INSERT INTO encuestados VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [("CC" if p.doc_type == "CC" else p.doc_type, p.number, p.given_names, p.first_surname,
              p.second_surname, p.sisben_group, SISBEN_GROUPS[p.sisben_group[0]], p.municipality,
              p.survey_date.isoformat()) for p in persons])
    (folder / "personas.json").write_text(json.dumps([asdict(p) for p in persons], ensure_ascii=False,
                                                     default=str, indent=1), encoding="utf-8")
    # Each new store draws from its own generator, so adding one never changes the others (nor the people).
    history = _issued_resolutions(random.Random(random_seed + 3))
    return SeededLegacy(
        identity_json=identity, sisben_db=sisben, people=len(persons),
        snr_db=_seed_snr(folder / "snr.db", persons, random.Random(random_seed + 1)),
        fonvivienda_db=_seed_fonvivienda(folder / "fonvivienda.db", persons, history, random.Random(random_seed + 2)),
        fiduprevisora_db=_seed_fiduprevisora(folder / "fiduprevisora.db", history, random.Random(random_seed + 4)),
        colsubsidio_dir=_drop_folders(folder / "colsubsidio"),
        compensar_dir=_drop_folders(folder / "compensar"),
        oferente_dir=_drop_folders(folder / "oferente"),
    )


def _fresh_database(path: Path, schema: str) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.executescript(schema)
    return connection


def _drop_folders(root: Path) -> Path:
    """An empty exchange folder tree (entrada, salida, procesados, errores)."""
    if root.exists():
        shutil.rmtree(root)
    for name in ("entrada", "salida", "procesados", "errores"):
        (root / name).mkdir(parents=True)
    return root


def _by_number(persons: Sequence[Person], number: str) -> Person:
    return next(p for p in persons if p.number == number)


# Property registry (SNR)


def _address(rng: random.Random, code: str) -> str:
    if code not in ("11001", "05001", "76001", "08001") and rng.random() < 0.12:
        return f"{rng.choice(RURAL_LOTS)} VEREDA {rng.choice(VEREDAS)}"
    street = rng.choice(STREETS)
    south = " SUR" if code == "11001" and rng.random() < 0.3 else ""
    unit = (f" AP {rng.randint(1, 22)}0{rng.randint(1, 8)}" if code in ("11001", "05001") or rng.random() < 0.4
            else f" CASA {rng.randint(1, 60)}")
    return f"{street} {rng.randint(1, 180)}{south} # {rng.randint(1, 99)}-{rng.randint(1, 99)}{unit}"


def _seed_snr(path: Path, persons: Sequence[Person], rng: random.Random) -> Path:
    connection = _fresh_database(path, """
        CREATE TABLE predios (
            matricula TEXT PRIMARY KEY, circulo TEXT NOT NULL, municipio TEXT NOT NULL, direccion TEXT NOT NULL,
            tipo_predio TEXT NOT NULL CHECK (tipo_predio IN ('U', 'R')), fecha_apertura TEXT NOT NULL);
        CREATE TABLE propietarios (
            matricula TEXT NOT NULL REFERENCES predios (matricula), tipo_documento TEXT NOT NULL,
            numero_documento TEXT NOT NULL, nombres TEXT, primer_apellido TEXT, segundo_apellido TEXT,
            razon_social TEXT, porcentaje TEXT NOT NULL, anotacion INTEGER NOT NULL, fecha_anotacion TEXT NOT NULL,
            vigente TEXT NOT NULL CHECK (vigente IN ('S', 'N')),
            PRIMARY KEY (matricula, tipo_documento, numero_documento, anotacion));
        CREATE INDEX propietarios_documento ON propietarios (tipo_documento, numero_documento);
    """)
    predios: list[tuple[str, str, str, str, str, str]] = []
    owners: list[tuple[object, ...]] = []
    taken: set[str] = set()

    def folio(code: str, address: str | None = None, number: str | None = None, opened: dt.date | None = None,
              circle: str | None = None) -> str:
        circle = circle or rng.choice(ORIP_CIRCLES[code])
        while number is None or f"{circle}-{number}" in taken:
            bogota = circle.startswith("50")  # Bogotá's folios have seven digits, the others six
            number = str(rng.randint(1_000_000, 2_999_999) if bogota else rng.randint(100_000, 399_999))
        matricula = f"{circle}-{number}"
        taken.add(matricula)
        address = address or _address(rng, code)
        opened = opened or dt.date(1975, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 50))
        predios.append((matricula, circle, SNR_MUNICIPALITIES[code], address,
                        "R" if address.startswith(RURAL_LOTS) else "U", opened.isoformat()))
        return matricula

    def owner(matricula: str, person: Person, share: str, entry: int, on: dt.date, current: bool) -> None:
        owners.append((matricula, SNR_DOCUMENT_TYPES[person.doc_type], person.number, person.given_names,
                       person.first_surname, person.second_surname, None, share, entry, on.isoformat(),
                       "S" if current else "N"))

    generated = list(persons[len(SAMPLE_PEOPLE):])
    soacha_buyer = next(p for p in generated if p.municipality_code == "25754")
    # The sample household owns nothing today; JUAN CARLOS sold his Soacha house in 2019 (the folio keeps him).
    sold = folio("25754", "CL 13 # 8-21 CASA 4 URB LEON XIII", "187342", dt.date(1998, 3, 2), circle="051")
    owner(sold, _by_number(persons, "1019876543"), "100,00", 2, dt.date(2008, 7, 15), current=False)
    owner(sold, soacha_buyer, "100,00", 5, dt.date(2019, 10, 3), current=True)
    # A sample person with a Bogotá flat (Zona Centro: an alphanumeric circle).
    flat = folio("11001", "KR 15 # 93-47 AP 502", "1456789", dt.date(2009, 5, 14), circle="50C")
    owner(flat, _by_number(persons, "79845123"), "100,00", 3, dt.date(2011, 2, 10), current=True)
    # The flat the sample household is buying: still the builder's (the oferente) until the deed is registered.
    new_flat = folio("25754", "KR 4 # 37-15 TO 2 AP 704 CONJ HORIZONTE SOCIAL", "298754", dt.date(2025, 8, 20),
                     circle="051")
    owners.append((new_flat, "N", OFERENTE_NIT, None, None, None, "CONSTRUCTORA HORIZONTE SOCIAL S.A.S.", "100,00",
                   1, "2025-08-20", "S"))
    for person in generated:
        draw = rng.random()
        if draw >= 0.20 or person is soacha_buyer:
            continue
        current = draw < 0.14
        for _ in range(2 if rng.random() < 0.08 else 1):
            matricula = folio(person.municipality_code)
            bought = dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 34))
            partner = rng.choice(generated) if rng.random() < 0.3 else None
            share = "50,00" if partner is not None and partner is not person else "100,00"
            owner(matricula, person, share, rng.randint(1, 6), bought, current)
            if share == "50,00" and partner is not None:
                owner(matricula, partner, share, rng.randint(1, 6), bought, current)
    with connection:
        connection.executemany("INSERT INTO predios VALUES (?, ?, ?, ?, ?, ?)", predios)
        connection.executemany("INSERT INTO propietarios VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", owners)
    connection.close()
    return path


# Fonvivienda


@dataclass(frozen=True, slots=True)
class _Resolution:
    radicado: str
    convocatoria: str
    department: str
    modality: str
    amount: int
    score: Decimal
    number: int
    issued: dt.date
    expires: dt.date

    @property
    def code(self) -> str:
        return f"FNV-{self.number:04d}-{self.issued.year}"


def _compact(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _months_later(day: dt.date, months: int) -> dt.date:
    """The day before the same date `months` later (a validity of N months)."""
    year, month = divmod(day.month - 1 + months, 12)
    return dt.date(day.year + year, month + 1, min(day.day, 28)) - dt.timedelta(days=1)


def _issued_resolutions(rng: random.Random) -> list[_Resolution]:
    """The assignments Fonvivienda already resolved in 2026 (numbered 1…986), on applications of 2025."""
    first, last = dt.date(2026, 2, 10), dt.date(2026, 11, 18)
    span = (last - first).days
    result: list[_Resolution] = []
    for n in range(1, ISSUED_RESOLUTIONS_2026 + 1):
        code, _name, _minimum, cap, months, *_rest, modality = rng.choices(CONVOCATORIAS, weights=(60, 30, 7, 3))[0]
        amount = min(cap, rng.choice((15, 20, 22, 25, 30)) * SMMLV[2026]) if modality == "AVN" else \
            rng.randrange(8_000_000, cap, 10_000)
        issued = first + dt.timedelta(days=span * (n - 1) // (ISSUED_RESOLUTIONS_2026 - 1))
        result.append(_Resolution(
            radicado=f"VIV-2025-{n:06d}", convocatoria=code, department=rng.choice(DEPARTMENTS), modality=modality,
            amount=amount, score=Decimal(rng.randint(40_000, 95_000)) / 100, number=n, issued=issued,
            expires=_months_later(issued, months),
        ))
    return result


def _seed_fonvivienda(path: Path, persons: Sequence[Person], history: Sequence[_Resolution],
                      rng: random.Random) -> Path:
    connection = _fresh_database(path, """
        CREATE TABLE SFV_SUBSIDIOS (
            ID_SUBSIDIO INTEGER PRIMARY KEY, TIPO_DOC TEXT NOT NULL, NUM_DOC TEXT NOT NULL,
            NIT_OTORGANTE TEXT NOT NULL, FECHA_ASIGNACION TEXT NOT NULL, VALOR_ASIGNADO INTEGER NOT NULL,
            COD_ESTADO TEXT NOT NULL, NUM_ACTO TEXT);
        CREATE INDEX SFV_SUBSIDIOS_DOC ON SFV_SUBSIDIOS (TIPO_DOC, NUM_DOC);
        CREATE TABLE SFV_CONVOCATORIAS (
            COD_CONVOCATORIA TEXT PRIMARY KEY, NOMBRE TEXT NOT NULL, PUNTAJE_MINIMO NUMERIC NOT NULL,
            TOPE_VALOR INTEGER NOT NULL, MESES_VIGENCIA INTEGER NOT NULL, FECHA_APERTURA TEXT NOT NULL,
            FECHA_CIERRE TEXT NOT NULL);
        CREATE TABLE SFV_BOLSAS (
            COD_CONVOCATORIA TEXT NOT NULL REFERENCES SFV_CONVOCATORIAS, COD_DPTO TEXT NOT NULL,
            COD_MODALIDAD TEXT NOT NULL, CUPOS_INICIALES INTEGER NOT NULL, CUPOS_DISPONIBLES INTEGER NOT NULL,
            SALDO_DISPONIBLE INTEGER NOT NULL, FECHA_CORTE TEXT NOT NULL,
            PRIMARY KEY (COD_CONVOCATORIA, COD_DPTO, COD_MODALIDAD));
        CREATE TABLE SFV_PARAMETROS (
            VIGENCIA INTEGER NOT NULL, PARAMETRO TEXT NOT NULL, VALOR NUMERIC NOT NULL,
            PRIMARY KEY (VIGENCIA, PARAMETRO));
        CREATE TABLE SFV_POSTULACIONES (
            RADICADO TEXT PRIMARY KEY, COD_CONVOCATORIA TEXT NOT NULL, COD_DPTO TEXT NOT NULL,
            COD_MODALIDAD TEXT NOT NULL, TIPO_DOC_JEFE TEXT NOT NULL, NUM_DOC_JEFE TEXT NOT NULL,
            FECHA_RADICACION TEXT NOT NULL);
        CREATE TABLE SFV_ASIGNACIONES (
            RADICADO TEXT PRIMARY KEY, ESTADO TEXT NOT NULL CHECK (ESTADO IN ('ASIGNADO', 'NEGADO')), MOTIVO TEXT,
            VALOR INTEGER, PUNTAJE NUMERIC NOT NULL, COD_CONVOCATORIA TEXT NOT NULL, COD_DPTO TEXT NOT NULL,
            COD_MODALIDAD TEXT NOT NULL, ANIO_RESOLUCION TEXT, CONSECUTIVO INTEGER, NUM_RESOLUCION TEXT UNIQUE,
            FECHA_RESOLUCION TEXT, FECHA_VENCIMIENTO TEXT, FECHA_DECISION TEXT NOT NULL);
    """)
    subsidies: list[tuple[object, ...]] = [
        ("CC", "1019876543", COLSUBSIDIO_NIT, "20150612", 19_330_000, "3", None),  # expired unused
    ]
    generated = list(persons[len(SAMPLE_PEOPLE):])
    for person in generated:
        if rng.random() < 0.08:
            year = rng.randint(2005, 2023)
            state = rng.choices(SUBSIDY_STATES, weights=(3, 60, 20, 10, 7))[0]
            subsidies.append((person.doc_type, person.number, rng.choice(OTORGANTES),
                              f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                              rng.randrange(8_000_000, 35_000_000, 10_000), state, None))
    overrides = {("MCY-2026-02", "25", "AVN"): (214, 8_346_000_000),  # the sample's pool
                 ("MCY-2026-02", "44", "AVN"): (0, 45_500_000)}  # La Guajira's: money left, no places
    bolsas: list[tuple[object, ...]] = []
    for code, _name, _minimum, _cap, _months, _opens, _closes, modality in CONVOCATORIAS:
        for department in DEPARTMENTS:
            initial = rng.randint(150, 900)
            left = rng.randint(0, initial // 2) if code != "MCY-2026-01" else rng.randint(0, 6)
            left, balance = overrides.get((code, department, modality),
                                          (left, left * rng.randint(30, 45) * 1_000_000))
            bolsas.append((code, department, modality, initial, left, balance, "20261119"))
    applications: list[tuple[object, ...]] = [
        (SAMPLE_RADICADO, "MCY-2026-02", "25", "AVN", "CC", "1020304050", "20261110"),
    ]
    guajira = next(p for p in generated if p.municipality_code.startswith("44"))
    applicants = [guajira, *rng.sample([p for p in generated if p is not guajira], 35)]
    for n, person in enumerate(applicants, start=124):
        department = person.municipality_code[:2]
        code, modality = ("MCY-2026-02", "AVN") if person is guajira else rng.choice(
            (("MCY-2026-02", "AVN"), ("MCY-2026-02", "AVN"), ("CSP-2026-01", "CSP"), ("MEJ-2026-01", "MEJ")))
        applications.append((f"VIV-2026-{n:06d}", code, department, modality, person.doc_type, person.number,
                             _compact(dt.date(2026, 11, 10) + dt.timedelta(days=n - 124))))
    with connection:
        connection.executemany(
            "INSERT INTO SFV_SUBSIDIOS (TIPO_DOC, NUM_DOC, NIT_OTORGANTE, FECHA_ASIGNACION, VALOR_ASIGNADO, "
            "COD_ESTADO, NUM_ACTO) VALUES (?, ?, ?, ?, ?, ?, ?)", subsidies)
        connection.executemany("INSERT INTO SFV_CONVOCATORIAS VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [c[:7] for c in CONVOCATORIAS])
        connection.executemany("INSERT INTO SFV_BOLSAS VALUES (?, ?, ?, ?, ?, ?, ?)", bolsas)
        connection.executemany("INSERT INTO SFV_PARAMETROS VALUES (?, ?, ?)",
                               [(year, name, value) for year, smmlv in SMMLV.items()
                                for name, value in (("SMMLV", smmlv), ("TOPE_INGRESOS_SMMLV", 4))
                                if year >= 2025])
        connection.executemany("INSERT INTO SFV_POSTULACIONES VALUES (?, ?, ?, ?, ?, ?, ?)", applications)
        connection.executemany(
            "INSERT INTO SFV_ASIGNACIONES VALUES (?, 'ASIGNADO', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.radicado, r.amount, str(r.score), r.convocatoria, r.department, r.modality, str(r.issued.year),
              r.number, r.code, _compact(r.issued), _compact(r.expires), _compact(r.issued)) for r in history])
        # From now on every assignment is charged to its pool and recorded among the subsidies granted.
        connection.executescript("""
            CREATE TRIGGER SFV_ASIGNACION_REGISTRADA AFTER INSERT ON SFV_ASIGNACIONES
            WHEN NEW.ESTADO = 'ASIGNADO'
            BEGIN
                UPDATE SFV_BOLSAS
                   SET CUPOS_DISPONIBLES = CUPOS_DISPONIBLES - 1,
                       SALDO_DISPONIBLE = SALDO_DISPONIBLE - NEW.VALOR,
                       FECHA_CORTE = NEW.FECHA_RESOLUCION
                 WHERE COD_CONVOCATORIA = NEW.COD_CONVOCATORIA AND COD_DPTO = NEW.COD_DPTO
                   AND COD_MODALIDAD = NEW.COD_MODALIDAD;
                INSERT INTO SFV_SUBSIDIOS (TIPO_DOC, NUM_DOC, NIT_OTORGANTE, FECHA_ASIGNACION, VALOR_ASIGNADO,
                                           COD_ESTADO, NUM_ACTO)
                SELECT TIPO_DOC_JEFE, NUM_DOC_JEFE, '830121208', NEW.FECHA_RESOLUCION, NEW.VALOR, '1',
                       NEW.NUM_RESOLUCION
                  FROM SFV_POSTULACIONES WHERE RADICADO = NEW.RADICADO;
            END;
        """)
    connection.close()
    return path


# Fiduciaria La Previsora


@dataclass(frozen=True, slots=True)
class _Encargo:
    radicado: str
    resolution: str
    issued: dt.date
    amount: int
    doc_type: str
    doc_number: str
    name: str
    state: str


def _seed_fiduprevisora(path: Path, history: Sequence[_Resolution], rng: random.Random) -> Path:
    connection = _fresh_database(path, """
        CREATE TABLE sfv_encargos (
            radicado TEXT PRIMARY KEY, resolucion TEXT NOT NULL UNIQUE, fecha_resolucion TEXT NOT NULL,
            vlr_asignado TEXT NOT NULL, tdoc_benef TEXT NOT NULL, ndoc_benef TEXT NOT NULL, nom_benef TEXT NOT NULL,
            estado TEXT NOT NULL CHECK (estado IN ('P', 'G', 'V', 'A')));
        CREATE TABLE giros (
            radicado TEXT PRIMARY KEY REFERENCES sfv_encargos (radicado), consecutivo INTEGER NOT NULL UNIQUE,
            referencia TEXT NOT NULL UNIQUE, vlr_giro TEXT NOT NULL, nit_oferente TEXT NOT NULL,
            cod_banco TEXT NOT NULL, tipo_cta TEXT NOT NULL, nro_cta TEXT NOT NULL, medio TEXT NOT NULL,
            estado TEXT NOT NULL CHECK (estado IN ('P', 'T', 'D')), autorizacion TEXT, fecha_hora_pago TEXT);
        CREATE TABLE consecutivos (serie TEXT PRIMARY KEY, ultimo INTEGER NOT NULL);
    """)

    def beneficiary() -> tuple[str, str, str]:
        names = " ".join(rng.sample(rng.choice([FEMALE, MALE]), rng.choice([1, 2])))
        surnames = f"{rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
        return "CC", str(rng.randint(10_000_000, 1_099_999_999)), f"{names} {surnames}"

    encargos: list[_Encargo] = []
    for year, count in ((2024, 12), (2025, 30)):  # older subsidies: mostly paid, some expired or revoked
        for n in range(1, count + 1):
            encargos.append(_Encargo(f"VIV-{year - 1}-{900000 + n:06d}", f"FNV-{n * 31:04d}-{year}",
                                     dt.date(year, 3, 1) + dt.timedelta(days=n * 9),
                                     rng.choice((15, 20, 25, 30)) * SMMLV[year], *beneficiary(),
                                     rng.choices("GVA", weights=(80, 15, 5))[0]))
    for resolution in history:
        state = "G" if resolution.issued < dt.date(2026, 9, 30) and rng.random() < 0.85 else "P"
        encargos.append(_Encargo(resolution.radicado, resolution.code, resolution.issued, resolution.amount,
                                 *beneficiary(), state))
    encargos.append(_Encargo(SAMPLE_RADICADO, "FNV-0987-2026", dt.date(2026, 11, 27), 39_000_000, "CC",
                             "1020304050", "MARÍA FERNANDA GÓMEZ RUIZ", "P"))
    paid = sorted((e for e in encargos if e.state == "G"), key=lambda e: (e.issued, e.radicado))
    giros: list[tuple[object, ...]] = []
    for number, encargo in enumerate(paid, start=LAST_PAYMENT_NUMBER - len(paid) + 1):
        day = min(encargo.issued + dt.timedelta(days=rng.randint(20, 90)), dt.date(2026, 11, 20))
        moment = dt.datetime.combine(day, dt.time(rng.randint(8, 16), rng.randint(0, 59), rng.randint(0, 59)))
        giros.append((encargo.radicado, number, f"FPV-DES-{moment.year}-{number:06d}", pesos(encargo.amount),
                      f"9{rng.randint(0, 99_999_999):08d}", rng.choice(("1007", "1001", "1051", "1013")),
                      rng.choice(("CC", "AH")), str(rng.randint(10**9, 10**11 - 1)), "TRF", "P",
                      f"ACH{moment:%Y%m%d}{number:06d}", f"{moment:%d/%m/%Y %H:%M:%S}"))
    with connection:
        connection.executemany("INSERT INTO sfv_encargos VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            (e.radicado, e.resolution, f"{e.issued:%d/%m/%Y}", pesos(e.amount), e.doc_type, e.doc_number, e.name,
             e.state) for e in encargos
        ])
        connection.executemany("INSERT INTO giros VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", giros)
        connection.execute("INSERT INTO consecutivos VALUES ('GIRO', ?)", (LAST_PAYMENT_NUMBER,))
        # A payment takes the next number of the series and marks the subsidy as paid (girado).
        connection.executescript("""
            CREATE TRIGGER giro_registrado AFTER INSERT ON giros
            BEGIN
                UPDATE consecutivos SET ultimo = NEW.consecutivo WHERE serie = 'GIRO';
                UPDATE sfv_encargos SET estado = 'G' WHERE radicado = NEW.radicado;
            END;
        """)
    connection.close()
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Datos heredados sembrados de la ventanilla de vivienda.")
    parser.add_argument("carpeta", type=Path, help="carpeta de destino, p. ej. var/legacy")
    parser.add_argument("--personas", type=int, default=200, help="personas generadas además de las de las muestras")
    args = parser.parse_args(argv)
    seeded = seed(args.carpeta, count=args.personas)
    print(f"Datos heredados escritos en {args.carpeta} ({seeded.people} personas).")


if __name__ == "__main__":
    main()
