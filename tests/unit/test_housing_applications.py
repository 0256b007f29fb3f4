"""The housing applications generated for the seeded people: valid requests, deterministic, and expectations
that agree with what the seeded legacy systems hold."""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.fonvivienda.handlers import puntaje
from adapters.legacy.applications import (
    ELIGIBLE,
    NO_PLACES,
    OWNS_HOME,
    PREVIOUS_SUBSIDY,
    REASONS,
    SISBEN_GROUP_D,
    HousingApplication,
    housing_applications,
)
from adapters.legacy.seed import CONVOCATORIAS, SMMLV, people, seed
from broker.gelxml import SchemaRegistry


@pytest.fixture(scope="module")
def batch() -> list[HousingApplication]:
    return housing_applications(200)


def rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as connection:
        return list(connection.execute(sql, params))


def texts(element: etree._Element, path: str) -> list[str]:
    return [node.text or "" for node in element.iterfind(path)]


def household(application: HousingApplication) -> list[tuple[str, str]]:
    """(document number, parentesco) of every member, in order."""
    return [(m.findtext("{*}persona/{*}identificacion/{*}numDocumento") or "", m.findtext("{*}codParentesco") or "")
            for m in application.payload.iterfind("{*}hogar/{*}miembros/{*}miembro")]


def test_every_payload_is_a_valid_request_for_its_head_of_household(batch: list[HousingApplication],
                                                                    registry: SchemaRegistry) -> None:
    assert len(batch) == 200
    cap = 4 * SMMLV[2026]
    for application in batch:
        payload = application.payload
        assert registry.language.validate(payload), registry.language.error_log
        assert etree.QName(payload).localname == "entradaRadicarPostulacion"
        assert (payload.findtext("{*}codConvocatoria"), payload.findtext("{*}codModalidad")) == \
            ("MCY-2026-02", "ADQUISICION_NUEVA")
        jefe = payload.find("{*}hogar/{*}jefeHogar")
        assert jefe is not None
        assert texts(jefe, "{*}persona/{*}identificacion/*") == [application.doc_type, application.doc_number]
        assert jefe.findtext("{*}datosContacto/{*}correoElectronico") == application.email
        members = household(application)
        assert members[0] == (application.doc_number, "JEFE_HOGAR") and 1 <= len(members) <= 4
        assert all(relation != "JEFE_HOGAR" for _number, relation in members[1:])
        assert texts(payload, "{*}hogar/{*}ubicacionDeseada/*") == \
            texts(jefe, "{*}datosContacto/{*}ubicacion/{*}codDepartamento") + \
            texts(jefe, "{*}datosContacto/{*}ubicacion/{*}codMunicipio")
        assert Decimal(payload.findtext("{*}hogar/{*}ingresosMensualesHogar") or "") < cap
        assert Decimal(payload.findtext("{*}hogar/{*}ahorroPrevio") or "") > 0
    everyone = [number for application in batch for number, _relation in household(application)]
    assert len(everyone) == len(set(everyone))  # nobody heads or joins two households


def test_the_batch_is_deterministic_for_a_seed() -> None:
    def canonical(batch: list[HousingApplication]) -> list[tuple[bytes, str, str, str]]:
        return [(etree.tostring(a.payload, method="c14n"), a.doc_number, a.email, a.expected) for a in batch]

    assert canonical(housing_applications(40)) == canonical(housing_applications(40))
    assert canonical(housing_applications(40, random_seed=7)) == canonical(housing_applications(40, random_seed=7))
    assert canonical(housing_applications(40)) != canonical(housing_applications(40, random_seed=7))


def test_the_count_is_honoured_up_to_every_seeded_person() -> None:
    assert [len(housing_applications(n)) for n in (0, 1, 7, 200, 203)] == [0, 1, 7, 200, 203]
    assert housing_applications(1)[0].expected == ELIGIBLE
    with pytest.raises(ValueError, match="204"):
        housing_applications(204)


def test_the_mix_is_mostly_eligible_with_every_reason_the_seeded_data_holds(batch: list[HousingApplication]) -> None:
    for applications in (housing_applications(50), batch):
        mix = Counter(a.expected for a in applications)
        assert set(mix) <= {ELIGIBLE, *REASONS}
        assert {ELIGIBLE, OWNS_HOME, PREVIOUS_SUBSIDY, SISBEN_GROUP_D, NO_PLACES} <= set(mix)
    mix = Counter(a.expected for a in housing_applications(50))
    assert mix[ELIGIBLE] > 25


def test_the_expectations_agree_with_the_seeded_legacy_systems(batch: list[HousingApplication],
                                                               tmp_path: Path) -> None:
    seeded = seed(tmp_path / "legacy")

    def owns(number: str) -> bool:
        return bool(rows(seeded.snr_db, "SELECT 1 FROM propietarios WHERE tipo_documento = 'C' "
                         "AND numero_documento = ? AND vigente = 'S'", number))

    def subsidised(number: str) -> bool:
        return bool(rows(seeded.fonvivienda_db, "SELECT 1 FROM SFV_SUBSIDIOS WHERE TIPO_DOC = 'CC' "
                         "AND NUM_DOC = ? AND COD_ESTADO IN ('1', '2')", number))

    groups = {p.number: p.sisben_group for p in people()}
    places = dict(rows(seeded.fonvivienda_db, "SELECT COD_DPTO, CUPOS_DISPONIBLES FROM SFV_BOLSAS "
                       "WHERE COD_CONVOCATORIA = 'MCY-2026-02' AND COD_MODALIDAD = 'AVN'"))
    assert len(rows(seeded.sisben_db, "SELECT 1 FROM encuestados")) == len(groups)
    for application in batch:
        number, department = application.doc_number, application.payload.findtext(
            "{*}hogar/{*}ubicacionDeseada/{*}codDepartamento")
        found = {OWNS_HOME: owns(number), PREVIOUS_SUBSIDY: subsidised(number),
                 SISBEN_GROUP_D: groups[number].startswith("D"), NO_PLACES: places[department] == 0}
        if application.expected == ELIGIBLE:
            assert not any(found.values()), (number, found)
        else:
            assert found[application.expected], (number, application.expected)
        for member, _relation in household(application)[1:]:
            assert not owns(member) and not subsidised(member)


def test_an_eligible_household_reaches_the_calls_minimum_score(batch: list[HousingApplication]) -> None:
    minimum = next(c[2] for c in CONVOCATORIAS if c[0] == "MCY-2026-02")
    groups = {p.number: p.sisben_group for p in people()}
    for application in (a for a in batch if a.expected == ELIGIBLE):
        hogar = application.payload.find("{*}hogar")
        assert hogar is not None
        variables = {"INGRESOS": hogar.findtext("{*}ingresosMensualesHogar"),
                     "AHORRO": hogar.findtext("{*}ahorroPrevio"), "GRUPO_SISBEN": groups[application.doc_number],
                     "MIEMBROS": len(household(application)),
                     "DISCAPACIDAD": hogar.findtext("{*}condicionDiscapacidad"),
                     "VICTIMA": hogar.findtext("{*}condicionVictima")}
        assert puntaje(variables, Decimal(SMMLV[2026]), Decimal(4)) >= minimum
