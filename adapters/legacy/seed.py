"""Seeded legacy data for the chains' entities: what their systems hold before the platform arrives.

Deterministic (one random seed), realistic Colombian records: names with compound surnames, cédulas,
birth dates, DANE municipality codes, SISBEN IV groups. Each entity keeps its data its own way, as real
registries do — that is what the adapters' mappings bridge:

- the identity registry (Registraduría) answers JSON with `Nombres` and `Apellidos` in one field each,
  document types like "C.C." and dates as dd/mm/yyyy (served by `adapters.legacy.identity_app`);
- SISBEN (DNP) keeps a SQL table with `nombres`, `primer_apellido`, `segundo_apellido`, the group code
  and the survey date as yyyy-mm-dd, and the municipality by name.

The people of the sample messages (schemas/samples) are always included, so the chains' samples find
their records.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True, slots=True)
class SeededLegacy:
    identity_json: Path
    sisben_db: Path
    people: int


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
    return SeededLegacy(identity_json=identity, sisben_db=sisben, people=len(persons))
