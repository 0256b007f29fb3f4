"""Housing-subsidy applications (`entradaRadicarPostulacion`) for the people of the seeded legacy data.

A caja de compensación radicates these at the housing window: each household is headed by a person the
seeded Registraduría, SISBEN, SNR and Fonvivienda know (`adapters.legacy.seed.people()`), applies to call
MCY-2026-02 for a new home (ADQUISICION_NUEVA) where its head lives, and declares an income below 2 SMMLV
and savings of 6 to 15 SMMLV, so that an eligible household scores above the call's minimum.

`expected` predicts, from the seeded data, what the chain (chains/vivienda-postulacion.yaml) will find about
the head of household: "elegible", or a reason in the order of `REASONS` — the cross-checks (document at the
Registraduría, Sisbén survey, a current property at the SNR, a previous subsidy still ASIGNADO or APLICADO at
Fonvivienda), then no place left in the department's pool (checked before the score's requirements; every
eligible household is counted against its pool, capped by places and by balance at the call's maximum value),
then Sisbén group D. The cross-checks run in parallel, so heads with a single reason are drawn first. Other
members have none of the cross-check reasons and never head nor join another household of the batch, so they
never change the outcome.

The seeded data used is a fresh `seed()` in a temporary folder (the same deterministic data `var/legacy`
holds when seeded with the same seed and count). With the shipped seed nobody is outside SISBEN nor has a
document other than VIGENTE, so those two reasons appear only if the seed gains such people; group D and La
Guajira's pool (money left, no places) give two reasons of their own.
"""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.legacy import seed as seeding
from adapters.legacy.seed import Person
from adapters.sdk.mapping import department_name, municipality_name
from broker.gelxml.namespaces import FINANCIERO, GEL_PREFIX, PERSONAL, UBICACION, qname

__all__ = [
    "DOCUMENT_NOT_VALID",
    "ELIGIBLE",
    "NOT_IN_SISBEN",
    "NO_PLACES",
    "OWNS_HOME",
    "PREVIOUS_SUBSIDY",
    "REASONS",
    "SISBEN_GROUP_D",
    "HousingApplication",
    "housing_applications",
]

RADICAR = GEL_PREFIX + "Vivienda/RadicarPostulacion/1.0"
CONVOCATORIA = "MCY-2026-02"
MODALITY = ("ADQUISICION_NUEVA", "Adquisición de vivienda nueva", "AVN")

ELIGIBLE = "elegible"
DOCUMENT_NOT_VALID = "documento no vigente"
NOT_IN_SISBEN = "no está en el Sisbén"
OWNS_HOME = "tiene vivienda propia"
PREVIOUS_SUBSIDY = "subsidio previo vigente"
SISBEN_GROUP_D = "grupo D del Sisbén"
NO_PLACES = "sin cupos en la bolsa del departamento"
REASONS = (DOCUMENT_NOT_VALID, NOT_IN_SISBEN, OWNS_HOME, PREVIOUS_SUBSIDY, NO_PLACES, SISBEN_GROUP_D)
"""Every reason, in the order the chain meets them."""

_REASON_SHARE = 0.3
_MEMBERS = (0, 1, 1, 2, 2, 3)
_PARENTESCOS = {"CONYUGE": "Cónyuge o compañero(a) permanente", "HIJO": "Hijo(a)", "PADRE_MADRE": "Padre o madre",
                "HERMANO": "Hermano(a)"}
_STREETS = ("Calle", "Carrera", "Diagonal", "Transversal", "Avenida Calle")
_MAIL_DOMAINS = ("gmail.com", "hotmail.com", "outlook.com", "yahoo.es", "correo.com.co")
_SUBSIDY_IN_FORCE = ("1", "2")  # ASIGNADO, APLICADO
_NOT_A_MEMBER = frozenset((DOCUMENT_NOT_VALID, NOT_IN_SISBEN, OWNS_HOME, PREVIOUS_SUBSIDY))


@dataclass(frozen=True, slots=True)
class HousingApplication:
    """One application to radicate, with who heads it and what the chain should find."""

    payload: etree._Element
    doc_type: str
    doc_number: str
    full_name: str
    email: str
    expected: str


@dataclass(frozen=True, slots=True)
class _Seeded:
    people: tuple[Person, ...]
    valid_documents: frozenset[tuple[str, str]]
    surveyed: frozenset[tuple[str, str]]
    owners: frozenset[tuple[str, str]]
    subsidised: frozenset[tuple[str, str]]
    capacity: Mapping[str, int]
    """Department → applications its MCY-2026-02 pool can still assign, after the seeded pending ones."""


def _rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as connection:
        return list(connection.execute(sql, params))


@cache
def _seeded(random_seed: int, count: int) -> _Seeded:
    with tempfile.TemporaryDirectory(prefix="gel-legado-") as folder:
        seeded = seeding.seed(Path(folder), count=count, random_seed=random_seed)
        gel_type = {v: k for k, v in seeding.SNR_DOCUMENT_TYPES.items()}
        identity = json.loads(seeded.identity_json.read_text(encoding="utf-8"))
        cap = next(c[3] for c in seeding.CONVOCATORIAS if c[0] == CONVOCATORIA)
        pools = _rows(seeded.fonvivienda_db, """
            SELECT B.COD_DPTO, B.CUPOS_DISPONIBLES, B.SALDO_DISPONIBLE, COUNT(P.RADICADO) FROM SFV_BOLSAS AS B
            LEFT JOIN SFV_POSTULACIONES AS P ON P.COD_CONVOCATORIA = B.COD_CONVOCATORIA AND P.COD_DPTO = B.COD_DPTO
                 AND P.COD_MODALIDAD = B.COD_MODALIDAD
                 AND P.RADICADO NOT IN (SELECT RADICADO FROM SFV_ASIGNACIONES)
            WHERE B.COD_CONVOCATORIA = ? AND B.COD_MODALIDAD = ? GROUP BY 1, 2, 3""", CONVOCATORIA, MODALITY[2])
        return _Seeded(
            people=tuple(seeding.people(count, seed=random_seed)),
            valid_documents=frozenset(("CC" if r["TipoDoc"] == "C.C." else r["TipoDoc"], r["NumeroDoc"])
                                      for r in identity if r["Estado"] == "V"),
            surveyed=frozenset(_rows(seeded.sisben_db, "SELECT tipo_documento, documento FROM encuestados")),
            owners=frozenset((gel_type[kind], number) for kind, number in _rows(
                seeded.snr_db, "SELECT tipo_documento, numero_documento FROM propietarios WHERE vigente = 'S'")
                if kind in gel_type),
            subsidised=frozenset(_rows(seeded.fonvivienda_db, "SELECT TIPO_DOC, NUM_DOC FROM SFV_SUBSIDIOS "
                                       "WHERE COD_ESTADO IN (?, ?)", *_SUBSIDY_IN_FORCE)),
            capacity={department: max(0, min(places, balance // cap) - pending)
                      for department, places, balance, pending in pools},
        )


def _reasons(person: Person, seeded: _Seeded) -> list[str]:
    """The reasons the chain would meet, in its order (a pool closed from the start counts; one that other
    households of the batch fill up is `_labelled`'s business)."""
    key = (person.doc_type, person.number)
    found = [(key not in seeded.valid_documents, DOCUMENT_NOT_VALID), (key not in seeded.surveyed, NOT_IN_SISBEN),
             (key in seeded.owners, OWNS_HOME), (key in seeded.subsidised, PREVIOUS_SUBSIDY),
             (seeded.capacity.get(person.municipality_code[:2], 0) == 0, NO_PLACES),
             (person.sisben_group.startswith("D"), SISBEN_GROUP_D)]
    return [reason for applies, reason in found if applies]


def _labelled(people: Sequence[Person], seeded: _Seeded) -> dict[str, list[Person]]:
    """Everyone by the outcome they would have as head of household (in the given order, single reasons first;
    each eligible one takes a place of its department's pool)."""
    places = dict(seeded.capacity)
    by_label: dict[str, list[Person]] = {label: [] for label in (ELIGIBLE, *REASONS)}
    for person in sorted(people, key=lambda p: len(_reasons(p, seeded))):
        reasons = _reasons(person, seeded)
        department = person.municipality_code[:2]
        if reasons:
            by_label[reasons[0]].append(person)
        elif places.get(department, 0) > 0:
            places[department] -= 1
            by_label[ELIGIBLE].append(person)
        else:
            by_label[NO_PLACES].append(person)
    return by_label


def _heads(count: int, by_label: dict[str, list[Person]]) -> list[tuple[Person, str]]:
    """`count` heads of household: mostly eligible, the rest spread over every reason there is."""
    reasons = [label for label in REASONS if by_label[label]]
    queues = {label: list(people) for label, people in by_label.items()}
    wanted = max(round(count * _REASON_SHARE), min(len(reasons), count // 2))
    chosen: list[tuple[Person, str]] = []

    def take(labels: Sequence[str], until: int) -> None:
        while len(chosen) < until and any(queues[label] for label in labels):
            for label in labels:
                if queues[label] and len(chosen) < until:
                    chosen.append((queues[label].pop(0), label))

    take(reasons, wanted)
    take([ELIGIBLE], count)
    take(reasons, count)
    if len(chosen) < count:
        raise ValueError(f"Los datos sembrados tienen {len(chosen)} personas para encabezar postulaciones; se "
                         f"pidieron {count} (siembre más personas: python -m adapters.legacy.seed --personas N).")
    return chosen


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum()).lower()


def _email(person: Person, rng: random.Random) -> str:
    user = f"{_ascii(person.given_names.split()[0])}.{_ascii(person.first_surname)}{person.number[-3:]}"
    return f"{user}@{rng.choice(_MAIL_DOMAINS)}"


def _full_name(person: Person) -> str:
    return " ".join(part for part in (person.given_names, person.first_surname, person.second_surname) if part)


def _add(parent: etree._Element, namespace: str, local: str, text: object | None = None) -> etree._Element:
    child = etree.SubElement(parent, qname(namespace, local))
    if text is not None:
        child.text = str(text)
    return child


def _persona(parent: etree._Element, person: Person) -> None:
    persona = _add(parent, PERSONAL, "persona")
    identificacion = _add(persona, PERSONAL, "identificacion")
    _add(identificacion, PERSONAL, "codTipoDocumento", person.doc_type)
    _add(identificacion, PERSONAL, "numDocumento", person.number)
    names = _add(persona, PERSONAL, "nombreCompleto")
    first, *rest = person.given_names.split(maxsplit=1)
    _add(names, PERSONAL, "primerNombre", first)
    if rest:
        _add(names, PERSONAL, "segundoNombre", rest[0])
    _add(names, PERSONAL, "primerApellido", person.first_surname)
    if person.second_surname:
        _add(names, PERSONAL, "segundoApellido", person.second_surname)
    _add(persona, PERSONAL, "codSexo", "F" if first in seeding.FEMALE else "M")
    _add(persona, PERSONAL, "fechaNacimiento", person.born.isoformat())


def _contact(parent: etree._Element, person: Person, email: str, rng: random.Random) -> None:
    contact = _add(parent, UBICACION, "datosContacto")
    place = _add(contact, UBICACION, "ubicacion")
    _add(place, UBICACION, "codDepartamento", person.municipality_code[:2])
    _add(place, UBICACION, "nomDepartamento", department_name(person.municipality_code[:2]))
    _add(place, UBICACION, "codMunicipio", person.municipality_code)
    _add(place, UBICACION, "nomMunicipio", municipality_name(person.municipality_code))
    _add(place, UBICACION, "direccionUrbana",
         f"{rng.choice(_STREETS)} {rng.randint(1, 180)} # {rng.randint(1, 99)}-{rng.randint(1, 99)}")
    phone = _add(contact, UBICACION, "telefono")
    _add(phone, UBICACION, "indicativoPais", "57")
    _add(phone, UBICACION, "numTelefono", f"3{rng.choice('0125'):s}{rng.randint(0, 99_999_999):08d}")
    _add(contact, UBICACION, "correoElectronico", email)


def _parentesco(head: Person, member: Person, has_spouse: bool) -> str:
    years = (member.born - head.born).days / 365.25
    if years > 15:
        return "HIJO"
    if years < -15:
        return "PADRE_MADRE"
    return "HERMANO" if has_spouse else "CONYUGE"


def _pesos(smmlv: int, low: float, high: float, rng: random.Random, step: int) -> str:
    amount = round(smmlv * rng.uniform(low, high) / step) * step
    return f"{Decimal(amount):.2f}"


def _payload(head: Person, members: Sequence[Person], email: str, rng: random.Random) -> etree._Element:
    smmlv = seeding.SMMLV[2026]
    root = etree.Element(qname(RADICAR, "entradaRadicarPostulacion"),
                         nsmap={"rad": RADICAR, "per": PERSONAL, "ubi": UBICACION, "fin": FINANCIERO})
    _add(root, RADICAR, "codConvocatoria", CONVOCATORIA)
    _add(root, RADICAR, "codModalidad", MODALITY[0])
    _add(root, RADICAR, "nomModalidad", MODALITY[1])
    hogar = _add(root, RADICAR, "hogar")
    jefe = _add(hogar, RADICAR, "jefeHogar")
    _persona(jefe, head)
    _contact(jefe, head, email, rng)
    miembros = _add(hogar, RADICAR, "miembros")
    relations: list[tuple[Person, str]] = [(head, "JEFE_HOGAR")]
    for member in members:
        relations.append((member, _parentesco(head, member, any(r == "CONYUGE" for _m, r in relations))))
    for person, relation in relations:
        miembro = _add(miembros, RADICAR, "miembro")
        _persona(miembro, person)
        _add(miembro, RADICAR, "codParentesco", relation)
        _add(miembro, RADICAR, "nomParentesco", "Jefe del hogar" if relation == "JEFE_HOGAR"
             else _PARENTESCOS[relation])
    _add(hogar, RADICAR, "ingresosMensualesHogar", _pesos(smmlv, 0.9, 1.8, rng, 1_000))
    _add(hogar, RADICAR, "condicionDiscapacidad", str(rng.random() < 0.08).lower())
    _add(hogar, RADICAR, "condicionVictima", str(rng.random() < 0.12).lower())
    wanted = _add(hogar, RADICAR, "ubicacionDeseada")
    _add(wanted, UBICACION, "codDepartamento", head.municipality_code[:2])
    _add(wanted, UBICACION, "codMunicipio", head.municipality_code)
    _add(hogar, RADICAR, "ahorroPrevio", _pesos(smmlv, 6, 15, rng, 10_000))
    if rng.random() < 0.6:
        _add(hogar, RADICAR, "creditoAprobado", _pesos(smmlv, 25, 55, rng, 100_000))
    return root


def housing_applications(count: int, *, random_seed: int = 2026, legacy_seed: int = 2026,
                         legacy_people: int = 200) -> list[HousingApplication]:
    """`count` applications drawn with `random_seed`, for the legacy data `seed()` writes with `legacy_seed`
    and `legacy_people` (its defaults, as `var/legacy` is seeded). Raises ValueError when the seeded people
    cannot head that many distinct households."""
    if count < 0:
        raise ValueError("count no puede ser negativo")
    rng = random.Random(random_seed)
    seeded = _seeded(legacy_seed, legacy_people)
    people = list(seeded.people)
    rng.shuffle(people)
    heads = _heads(count, _labelled(people, seeded))
    rng.shuffle(heads)
    taken = {head.number for head, _label in heads}
    spare = [p for p in people if p.number not in taken and not _NOT_A_MEMBER.intersection(_reasons(p, seeded))]
    result: list[HousingApplication] = []
    for head, label in heads:
        members = [spare.pop() for _ in range(min(rng.choice(_MEMBERS), len(spare)))]
        email = _email(head, rng)
        result.append(HousingApplication(_payload(head, members, email, rng), head.doc_type, head.number,
                                         _full_name(head), email, label))
    return result
