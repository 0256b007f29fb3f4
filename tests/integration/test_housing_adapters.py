"""The housing window's provider adapters, as shipped (adapters/<entity>/adapter.yaml), over their seeded legacy
systems: the property registry (SNR), Fonvivienda and the fiduciaria behind their SQL databases, the cajas
behind their file drops, the oferente subscribed to the assignment fan-out. The orchestrator asks them through
the platform, on both transports, and every answer is checked against what the legacy system holds."""

from __future__ import annotations

import codecs
import copy
import csv
import io
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.legacy.seed import SeededLegacy, seed
from adapters.sdk.assembly import AssembledAdapter, assemble
from adapters.sdk.config import load_adapter_config
from adapters.sdk.mapping import load_mapping, municipality_code
from adapters.sdk.runtime import Adapter, Incoming
from adapters.sdk.store import AdapterStore
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType, SchemaRegistry
from broker.gelxml.envelope import ServiceRef
from broker.gelxml.namespaces import PERSONAL, UBICACION
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.adapter_kit import sample_payload as payload
from tests.integration.adapter_kit import text
from tests.integration.test_adapter_runtime import ORCHESTRATOR, Inbox

SNR = "CO/GOB/899999007"
FONVIVIENDA = "CO/GOB/830121208"
FIDUPREVISORA = "CO/FID/860525148"
CAJAS = {"colsubsidio": "CO/CCF/860007336", "compensar": "CO/CCF/860066942"}
GATEWAY = "CO/PLAT/900000001"
ADAPTERS = ("snr", "fonvivienda", "fiduprevisora", "colsubsidio", "compensar", "oferente")
SAMPLE_RADICADO = "VIV-2026-000123"


def environment(seeded: SeededLegacy, stores: Path) -> dict[str, str]:
    """The variables the adapter.yaml files read: the seeded legacy systems, and inbox/outbox stores."""
    variables = {
        "GEL_SNR_DB_URL": f"sqlite:///{seeded.snr_db}",
        "GEL_FONVIVIENDA_DB_URL": f"sqlite:///{seeded.fonvivienda_db}",
        "GEL_FIDUPREVISORA_DB_URL": f"sqlite:///{seeded.fiduprevisora_db}",
        "GEL_COLSUBSIDIO_DIR": str(seeded.colsubsidio_dir),
        "GEL_COMPENSAR_DIR": str(seeded.compensar_dir),
        "GEL_OFERENTE_DIR": str(seeded.oferente_dir),
    }
    for name in ADAPTERS:
        variables[f"GEL_{name.upper()}_STORE"] = f"sqlite:///{stores / (name + '-store.db')}"
    return variables


def put(element: etree._Element, local_name: str, value: str) -> etree._Element:
    node = element.find(f".//{{*}}{local_name}")
    assert node is not None, local_name
    node.text = value
    return element


def rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as connection:
        return list(connection.execute(sql, params))


def iso(yyyymmdd: str) -> str:
    return f"{yyyymmdd[:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:]}"


@dataclass
class Window:
    platform: LocalPlatform
    caller: Adapter
    inbox: Inbox
    legacy: SeededLegacy
    adapters: dict[str, AssembledAdapter]

    def ask(self, service: str, recipient: str, body: etree._Element, timeout: float = 20.0) -> Incoming:
        request_id = self.caller.call(ServiceRef(service, "1.0"), recipient, body)

        def answer() -> Incoming | None:
            return next((m for m in self.inbox.messages if m.header.correlation_id == request_id
                         and m.header.message_type in (MessageType.RESPONSE, MessageType.FAULT)), None)

        with self.inbox.changed:
            self.inbox.changed.wait_for(lambda: answer() is not None, timeout=timeout)
            found = answer()
        assert found is not None, f"no answer to {service}"
        return found


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def window(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
           registry: SchemaRegistry) -> Iterator[Window]:
    """Every housing provider's adapter running over a freshly seeded legacy folder (one per transport)."""
    folder = tmp_path_factory.mktemp(f"vivienda-{request.param}")
    seeded = seed(folder / "legacy")
    with pytest.MonkeyPatch.context() as env:
        for name, value in environment(seeded, folder).items():
            env.setenv(name, value)
        settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{folder / 'gel.db'}",
                            schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
        credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
        platform = open_platform(settings, request.param, credentials=credentials)
        adapters: dict[str, AssembledAdapter] = {}
        caller: Adapter | None = None
        try:
            for name in ADAPTERS:
                config = load_adapter_config(ROOT / "adapters" / name / "adapter.yaml")
                adapters[name] = assemble(config, settings, platform.transport(config.entity), registry=registry)
            for assembled in adapters.values():
                assembled.adapter.start()
            inbox = Inbox()
            caller = Adapter(ORCHESTRATOR, platform.transport(ORCHESTRATOR), pki.credential(ORCHESTRATOR),
                             pki.trust_store(), AdapterStore(f"sqlite:///{folder / 'orquestador.db'}"), {},
                             on_message=inbox, relay_interval=0.2)
            caller.start()
            yield Window(platform, caller, inbox, seeded, adapters)
        finally:
            if caller is not None:
                caller.stop()
                caller.store.close()
            for assembled in adapters.values():
                assembled.close()
            platform.close()


# Superintendencia de Notariado y Registro


def test_snr_answers_each_member_of_the_sample_household_from_its_folios(window: Window) -> None:
    request = payload("consultarPropiedad-solicitud.xml")
    asked = [(text(i, "codTipoDocumento"), text(i, "numDocumento")) for i in request.iterfind("{*}identificacion")]
    answer = window.ask("consultarPropiedad", SNR, request)
    assert answer.header.message_type is MessageType.RESPONSE and answer.signer == SNR
    assert answer.payload is not None
    people = answer.payload.findall("{*}propiedadPersona")
    assert [(text(p, "codTipoDocumento"), text(p, "numDocumento")) for p in people] == asked  # request order
    for person, (_kind, number) in zip(people, asked, strict=True):
        current = rows(window.legacy.snr_db, "SELECT matricula FROM propietarios "
                       "WHERE numero_documento = ? AND vigente = 'S'", number)
        assert text(person, "tienePropiedad") == ("true" if current else "false")
        assert len(person.findall("{*}predio")) == len(current)
    # The registry does know JUAN CARLOS: the folio of the house he sold keeps him, as history only.
    history = rows(window.legacy.snr_db, "SELECT vigente FROM propietarios WHERE numero_documento = '1019876543'")
    assert history == [("N",)]
    assert [text(p, "tienePropiedad") for p in people] == ["false", "false", "false"]


def test_snr_lists_an_owners_folios_with_the_registered_share(window: Window) -> None:
    (owner,) = rows(window.legacy.snr_db, """
        SELECT numero_documento FROM propietarios
        WHERE vigente = 'S' AND tipo_documento = 'C' AND matricula LIKE '051-%' AND numero_documento NOT IN (
            SELECT numero_documento FROM propietarios WHERE vigente = 'S' AND matricula NOT LIKE '051-%')
        ORDER BY numero_documento LIMIT 1""")[0]
    expected = [(m, municipality_code(town), address, share.replace(",", ".")) for m, town, address, share in rows(
        window.legacy.snr_db, "SELECT p.matricula, p.municipio, p.direccion, t.porcentaje FROM propietarios AS t "
        "JOIN predios AS p ON p.matricula = t.matricula WHERE t.numero_documento = ? AND t.vigente = 'S' "
        "ORDER BY p.matricula", owner)]
    assert any(m.startswith("051-") and town == "25754" for m, town, _a, _s in expected)
    request = put(payload("consultarPropiedad-solicitud.xml"), "numDocumento", owner)
    answer = window.ask("consultarPropiedad", SNR, request)
    assert answer.payload is not None
    person = answer.payload.find("{*}propiedadPersona")
    assert text(person, "numDocumento") == owner and text(person, "tienePropiedad") == "true"
    assert person is not None
    got = [(text(p, "numMatriculaInmobiliaria"), text(p, "codMunicipio"), text(p, "direccion"),
            text(p, "porcentajeParticipacion")) for p in person.iterfind("{*}predio")]
    assert got == expected


def test_a_bogota_folio_is_answered_with_its_registry_office_code(window: Window) -> None:
    (matricula,) = rows(window.legacy.snr_db, "SELECT matricula FROM propietarios "
                        "WHERE numero_documento = '79845123' AND vigente = 'S'")[0]
    assert matricula.startswith("50C-")  # Bogotá Zona Centro: three characters, not three digits
    request = put(payload("consultarPropiedad-solicitud.xml"), "numDocumento", "79845123")
    answer = window.ask("consultarPropiedad", SNR, request)
    assert answer.header.message_type is MessageType.RESPONSE and answer.payload is not None
    person = answer.payload.find("{*}propiedadPersona")
    assert person is not None and text(person, "tienePropiedad") == "true"
    assert matricula in [text(p, "numMatriculaInmobiliaria") for p in person.iterfind("{*}predio")]


# Fonvivienda


ESTADOS = {"1": "ASIGNADO", "2": "APLICADO", "3": "VENCIDO", "4": "RENUNCIADO", "5": "REVOCADO"}


def test_fonvivienda_lists_previous_subsidies_from_its_table(window: Window) -> None:
    request = payload("consultarSubsidiosPrevios-solicitud.xml")
    answer = window.ask("consultarSubsidiosPrevios", FONVIVIENDA, request)
    assert answer.header.message_type is MessageType.RESPONSE and answer.payload is not None
    people = answer.payload.findall("{*}subsidiosPersona")
    assert [text(p, "numDocumento") for p in people] == [text(i, "numDocumento")
                                                          for i in request.iterfind("{*}identificacion")]
    by_person: dict[str, list[tuple[str | None, str | None, str | None, str | None]]] = {}
    for person in people:
        number = text(person, "numDocumento")
        assert number is not None
        by_person[number] = got = [
            (text(s, "idEntidad"), text(s, "anioAsignacion"), text(s, "valorPesos"), text(s, "codEstadoSubsidio"))
            for s in person.iterfind("{*}subsidioPrevio")]
        assert got == [(f"CO/{'GOB' if nit == '830121208' else 'CCF'}/{nit}", day[:4], f"{value}.00", ESTADOS[state])
                       for nit, day, value, state in rows(
                           window.legacy.fonvivienda_db, "SELECT NIT_OTORGANTE, FECHA_ASIGNACION, VALOR_ASIGNADO, "
                           "COD_ESTADO FROM SFV_SUBSIDIOS WHERE NUM_DOC = ? ORDER BY FECHA_ASIGNACION, ID_SUBSIDIO",
                           number)]
    # The sample's previous subsidy: Colsubsidio, 2015, $19.330.000, expired unused.
    assert by_person["1019876543"] == [("CO/CCF/860007336", "2015", "19330000.00", "VENCIDO")]
    assert text(people[1], "nomEstadoSubsidio") == "Vencido sin aplicar"


def bolsa(window: Window, convocatoria: str, department: str, modality: str) -> tuple[int, int, str]:
    (found,) = rows(window.legacy.fonvivienda_db, "SELECT CUPOS_DISPONIBLES, SALDO_DISPONIBLE, FECHA_CORTE "
                    "FROM SFV_BOLSAS WHERE COD_CONVOCATORIA = ? AND COD_DPTO = ? AND COD_MODALIDAD = ?",
                    convocatoria, department, modality)
    return found


def test_resource_availability_comes_from_the_pool(window: Window) -> None:
    answer = window.ask("consultarDisponibilidadRecursos", FONVIVIENDA,
                        payload("consultarDisponibilidadRecursos-solicitud.xml"))
    places, balance, cut = bolsa(window, "MCY-2026-02", "25", "AVN")
    assert answer.header.message_type is MessageType.RESPONSE
    assert text(answer.payload, "cuposRestantes") == str(places)
    assert text(answer.payload, "valorPesos") == f"{balance}.00"
    assert text(answer.payload, "fechaCorte") == iso(cut)
    assert text(answer.payload, "disponible") == ("true" if places > 0 and balance >= 39_000_000 else "false")
    assert places > 0

    (exhausted,) = rows(window.legacy.fonvivienda_db, "SELECT COD_DPTO FROM SFV_BOLSAS WHERE COD_CONVOCATORIA = "
                        "'MCY-2026-02' AND COD_MODALIDAD = 'AVN' AND CUPOS_DISPONIBLES = 0")[0]
    request = put(payload("consultarDisponibilidadRecursos-solicitud.xml"), "codDepartamento", exhausted)
    answer = window.ask("consultarDisponibilidadRecursos", FONVIVIENDA, request)
    assert (text(answer.payload, "disponible"), text(answer.payload, "cuposRestantes")) == ("false", "0")
    assert bolsa(window, "MCY-2026-02", exhausted, "AVN")[1] >= 39_000_000  # money left, but no places

    request = put(payload("consultarDisponibilidadRecursos-solicitud.xml"), "codConvocatoria", "MCY-2031-01")
    answer = window.ask("consultarDisponibilidadRecursos", FONVIVIENDA, request)
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer.payload, "codFalla") == FaultCode.ADAPTER_NOT_FOUND
    assert "MCY-2031-01" in (text(answer.payload, "descripcion") or "")


def test_scoring_follows_the_documented_formula_and_the_legacy_parameters(window: Window) -> None:
    database = window.legacy.fonvivienda_db
    year = rows(database, "SELECT MAX(VIGENCIA) FROM SFV_PARAMETROS WHERE VIGENCIA <= ?", date.today().year)[0][0]
    smmlv, cap = (Decimal(str(v)) for (v,) in (
        rows(database, "SELECT VALOR FROM SFV_PARAMETROS WHERE VIGENCIA = ? AND PARAMETRO = ?", year, name)[0]
        for name in ("SMMLV", "TOPE_INGRESOS_SMMLV")))

    answer = window.ask("calificarPostulacion", FONVIVIENDA, payload("calificarPostulacion-solicitud.xml"))
    assert answer.header.message_type is MessageType.RESPONSE
    # With the seeded parameters (SMMLV $1.750.905, cap 4 SMMLV) the documented formula gives, for the sample:
    # 350 × (1 − 3.200.000 / 7.003.620) + (130 − 5 × 2) + 30 × 3 + 150 × 8.500.000 / 17.509.050
    # = 190,0827 + 120 + 90 + 72,8195 = 472,90
    assert (smmlv, cap) == (Decimal(1_750_905), Decimal(4))
    assert text(answer.payload, "puntaje") == "472.90"
    assert text(answer.payload, "cumpleRequisitos") == "true" and text(answer.payload, "causalRechazo") is None
    request = put(put(put(payload("calificarPostulacion-solicitud.xml"), "numMiembrosHogar", "7"),
                      "condicionDiscapacidad", "true"), "condicionVictima", "1")
    # members count up to 5 (150), disability and victim 50 each: 190,0827 + 120 + 150 + 72,8195 + 100 = 632,90
    assert text(window.ask("calificarPostulacion", FONVIVIENDA, request).payload, "puntaje") == "632.90"

    original = rows(database, "SELECT VALOR FROM SFV_PARAMETROS WHERE VIGENCIA = ? AND PARAMETRO = 'SMMLV'", year)[0][0]
    try:  # the score follows the parameter kept in the legacy table
        with closing(sqlite3.connect(database)) as connection, connection:
            connection.execute("UPDATE SFV_PARAMETROS SET VALOR = 2000000 WHERE VIGENCIA = ? AND PARAMETRO = 'SMMLV'",
                               (year,))
        answer = window.ask("calificarPostulacion", FONVIVIENDA, payload("calificarPostulacion-solicitud.xml"))
        # 350 × (1 − 3,2 / 8) + 120 + 90 + 150 × 8,5 / 20 = 210 + 120 + 90 + 63,75
        assert text(answer.payload, "puntaje") == "483.75"
    finally:
        with closing(sqlite3.connect(database)) as connection, connection:
            connection.execute("UPDATE SFV_PARAMETROS SET VALOR = ? WHERE VIGENCIA = ? AND PARAMETRO = 'SMMLV'",
                               (original, year))

    limit = cap * smmlv
    at_limit = put(payload("calificarPostulacion-solicitud.xml"), "ingresosMensualesHogar", f"{limit:.2f}")
    assert text(window.ask("calificarPostulacion", FONVIVIENDA, at_limit).payload, "cumpleRequisitos") == "true"
    above = put(payload("calificarPostulacion-solicitud.xml"), "ingresosMensualesHogar", f"{limit + 1:.2f}")
    answer = window.ask("calificarPostulacion", FONVIVIENDA, above)
    assert text(answer.payload, "cumpleRequisitos") == "false"
    assert text(answer.payload, "codCausalRechazo") == "INGRESOS_SUPERIORES"
    assert f"${limit:,.0f}".replace(",", ".") in (text(answer.payload, "nomCausalRechazo") or "")


def undecided(window: Window, condition: str) -> tuple[str, str, str, str]:
    """An application with no decision yet whose pool meets `condition` (radicado, call, department, modality)."""
    found = rows(window.legacy.fonvivienda_db, f"""
        SELECT P.RADICADO, P.COD_CONVOCATORIA, P.COD_DPTO, P.COD_MODALIDAD FROM SFV_POSTULACIONES AS P
        JOIN SFV_CONVOCATORIAS AS C ON C.COD_CONVOCATORIA = P.COD_CONVOCATORIA
        JOIN SFV_BOLSAS AS B ON B.COD_CONVOCATORIA = P.COD_CONVOCATORIA AND B.COD_DPTO = P.COD_DPTO
                            AND B.COD_MODALIDAD = P.COD_MODALIDAD
        WHERE P.RADICADO NOT IN (SELECT RADICADO FROM SFV_ASIGNACIONES) AND P.RADICADO <> '{SAMPLE_RADICADO}'
          AND {condition}
        ORDER BY P.RADICADO""")
    assert found, condition
    return found[0]


def test_asignar_twice_with_the_same_radicado_assigns_once(window: Window) -> None:
    database = window.legacy.fonvivienda_db
    radicado, *pool = undecided(window, "B.CUPOS_DISPONIBLES > 0 AND B.SALDO_DISPONIBLE >= 39000000 "
                                        "AND C.TOPE_VALOR >= 39000000 AND C.PUNTAJE_MINIMO <= 742.35")
    places, balance, _cut = bolsa(window, *pool)
    request = put(payload("asignarSubsidio-solicitud.xml"), "radicado", radicado)
    first = window.ask("asignarSubsidio", FONVIVIENDA, request)
    second = window.ask("asignarSubsidio", FONVIVIENDA, copy.deepcopy(request))
    assert first.header.message_id != second.header.message_id  # two requests, not a redelivery
    assert first.header.message_type is second.header.message_type is MessageType.RESPONSE
    assert first.payload is not None and second.payload is not None
    assert etree.tostring(first.payload, method="c14n") == etree.tostring(second.payload, method="c14n")

    decisions = rows(database, "SELECT ESTADO, VALOR, NUM_RESOLUCION, FECHA_RESOLUCION, FECHA_VENCIMIENTO "
                     "FROM SFV_ASIGNACIONES WHERE RADICADO = ?", radicado)
    assert len(decisions) == 1
    state, value, number, issued, expires = decisions[0]
    assert state == "ASIGNADO" and text(first.payload, "asignado") == "true"
    assert text(first.payload, "valorPesos") == f"{value}.00" == "39000000.00"
    assert text(first.payload, "numActo") == number and text(first.payload, "codTipoActo") == "RESOLUCION"
    assert (text(first.payload, "fechaActo"), text(first.payload, "fechaVencimiento")) == (iso(issued), iso(expires))
    assert bolsa(window, *pool)[:2] == (places - 1, balance - 39_000_000)  # charged once to its pool
    assert len(rows(database, "SELECT 1 FROM SFV_SUBSIDIOS WHERE NUM_ACTO = ?", number)) == 1


def test_asignar_denies_without_resources_or_score_and_refuses_an_unknown_radicado(window: Window) -> None:
    database = window.legacy.fonvivienda_db
    radicado, *pool = undecided(window, "B.CUPOS_DISPONIBLES = 0 AND B.SALDO_DISPONIBLE >= 39000000")
    before = bolsa(window, *pool)
    answer = window.ask("asignarSubsidio", FONVIVIENDA, put(payload("asignarSubsidio-solicitud.xml"), "radicado",
                                                            radicado))
    assert answer.header.message_type is MessageType.RESPONSE and text(answer.payload, "asignado") == "false"
    assert text(answer.payload, "numActo") is None and text(answer.payload, "valorPesos") is None
    assert rows(database, "SELECT ESTADO, MOTIVO, NUM_RESOLUCION FROM SFV_ASIGNACIONES WHERE RADICADO = ?",
                radicado) == [("NEGADO", "SIN_RECURSOS", None)]
    assert bolsa(window, *pool) == before

    radicado, *_pool = undecided(window, "B.CUPOS_DISPONIBLES > 0 AND C.PUNTAJE_MINIMO > 100")
    request = put(put(payload("asignarSubsidio-solicitud.xml"), "radicado", radicado), "puntaje", "100.00")
    assert text(window.ask("asignarSubsidio", FONVIVIENDA, request).payload, "asignado") == "false"
    assert rows(database, "SELECT MOTIVO FROM SFV_ASIGNACIONES WHERE RADICADO = ?", radicado) == \
        [("PUNTAJE_INSUFICIENTE",)]

    request = put(payload("asignarSubsidio-solicitud.xml"), "radicado", "VIV-2026-999999")
    answer = window.ask("asignarSubsidio", FONVIVIENDA, request)
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer.payload, "codFalla") == FaultCode.ADAPTER_NOT_FOUND
    assert "VIV-2026-999999" in (text(answer.payload, "descripcion") or "")
    assert rows(database, "SELECT 1 FROM SFV_ASIGNACIONES WHERE RADICADO = 'VIV-2026-999999'") == []


def with_application(request: etree._Element, convocatoria: str, department: str, modality: str, doc_type: str,
                     number: str) -> etree._Element:
    """An asignarSubsidio request that also carries the application's data, for a grantor that has not seen it."""
    svc = etree.QName(request).namespace
    assert svc is not None
    etree.SubElement(request, f"{{{svc}}}codConvocatoria").text = convocatoria
    etree.SubElement(request, f"{{{UBICACION}}}codDepartamento").text = department
    etree.SubElement(request, f"{{{svc}}}codModalidad").text = modality
    identificacion = etree.SubElement(etree.SubElement(request, f"{{{svc}}}jefeHogar"),
                                      f"{{{PERSONAL}}}identificacion")
    etree.SubElement(identificacion, f"{{{PERSONAL}}}codTipoDocumento").text = doc_type
    etree.SubElement(identificacion, f"{{{PERSONAL}}}numDocumento").text = number
    return request


def test_asignar_registers_an_application_of_the_window_once_and_decides_it(window: Window,
                                                                            registry: SchemaRegistry) -> None:
    database = window.legacy.fonvivienda_db
    radicado = "VUV-2026-000001"
    assert rows(database, "SELECT 1 FROM SFV_POSTULACIONES WHERE RADICADO = ?", radicado) == []
    places, balance, _cut = bolsa(window, "MCY-2026-02", "25", "AVN")
    request = with_application(put(payload("asignarSubsidio-solicitud.xml"), "radicado", radicado),
                               "MCY-2026-02", "25", "ADQUISICION_NUEVA", "CC", "79845123")
    assert registry.language.validate(request), registry.language.error_log
    first = window.ask("asignarSubsidio", FONVIVIENDA, request)
    second = window.ask("asignarSubsidio", FONVIVIENDA, copy.deepcopy(request))
    assert first.header.message_type is second.header.message_type is MessageType.RESPONSE
    assert first.payload is not None and second.payload is not None
    assert etree.tostring(first.payload, method="c14n") == etree.tostring(second.payload, method="c14n")

    ((decided_on,),) = rows(database, "SELECT FECHA_DECISION FROM SFV_ASIGNACIONES WHERE RADICADO = ?", radicado)
    assert rows(database, "SELECT COD_CONVOCATORIA, COD_DPTO, COD_MODALIDAD, TIPO_DOC_JEFE, NUM_DOC_JEFE, "
                "FECHA_RADICACION FROM SFV_POSTULACIONES WHERE RADICADO = ?", radicado) == \
        [("MCY-2026-02", "25", "AVN", "CC", "79845123", decided_on)]  # the legacy modality code
    ((state, number),) = rows(database, "SELECT ESTADO, NUM_RESOLUCION FROM SFV_ASIGNACIONES WHERE RADICADO = ?",
                              radicado)
    assert state == "ASIGNADO" and text(first.payload, "asignado") == "true"
    assert number and text(first.payload, "numActo") == number
    assert bolsa(window, "MCY-2026-02", "25", "AVN")[:2] == (places - 1, balance - 39_000_000)  # charged once
    assert rows(database, "SELECT TIPO_DOC, NUM_DOC FROM SFV_SUBSIDIOS WHERE NUM_ACTO = ?", number) == \
        [("CC", "79845123")]


def test_asignar_without_the_application_data_or_with_an_unknown_call_is_not_found(window: Window) -> None:
    database = window.legacy.fonvivienda_db
    radicado = "VUV-2026-000002"
    answer = window.ask("asignarSubsidio", FONVIVIENDA, put(payload("asignarSubsidio-solicitud.xml"), "radicado",
                                                            radicado))
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer.payload, "codFalla") == FaultCode.ADAPTER_NOT_FOUND
    assert radicado in (text(answer.payload, "descripcion") or "")

    request = with_application(put(payload("asignarSubsidio-solicitud.xml"), "radicado", radicado),
                               "MCY-2031-01", "25", "ADQUISICION_NUEVA", "CC", "79845123")
    answer = window.ask("asignarSubsidio", FONVIVIENDA, request)
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer.payload, "codFalla") == FaultCode.ADAPTER_NOT_FOUND
    assert "MCY-2031-01" in (text(answer.payload, "descripcion") or "")
    for table in ("SFV_POSTULACIONES", "SFV_ASIGNACIONES"):
        assert rows(database, f"SELECT 1 FROM {table} WHERE RADICADO = ?", radicado) == []


# Fiduciaria La Previsora


def test_the_fiduciaria_pays_the_sample_subsidy_once(window: Window) -> None:
    database = window.legacy.fiduprevisora_db
    assert rows(database, "SELECT estado FROM sfv_encargos WHERE radicado = ?", SAMPLE_RADICADO) == [("P",)]
    (last,) = rows(database, "SELECT ultimo FROM consecutivos WHERE serie = 'GIRO'")[0]
    first = window.ask("movilizarSubsidio", FIDUPREVISORA, payload("movilizarSubsidio-solicitud.xml"))
    second = window.ask("movilizarSubsidio", FIDUPREVISORA, payload("movilizarSubsidio-solicitud.xml"))
    assert first.header.message_type is MessageType.RESPONSE and first.signer == FIDUPREVISORA
    assert first.payload is not None and second.payload is not None
    assert etree.tostring(first.payload, method="c14n") == etree.tostring(second.payload, method="c14n")

    (giro,) = rows(database, "SELECT consecutivo, referencia, vlr_giro, cod_banco, nro_cta, autorizacion, "
                   "fecha_hora_pago FROM giros WHERE radicado = ?", SAMPLE_RADICADO)
    number, reference, value, bank, account, authorisation, paid_at = giro
    assert number == last + 1 and rows(database, "SELECT ultimo FROM consecutivos") == [(number,)]
    assert text(first.payload, "codEstadoDesembolso") == "PAGADO"
    assert text(first.payload, "referenciaPago") == reference
    assert text(first.payload, "valorPesos") == value.replace(".", "").replace(",", ".") == "39000000.00"
    assert (text(first.payload, "codBanco"), text(first.payload, "numAutorizacion")) == (bank, authorisation)
    assert account == text(payload("movilizarSubsidio-solicitud.xml"), "numCuenta")
    paid = datetime.fromisoformat(text(first.payload, "fechaHoraPago") or "")
    assert f"{paid:%d/%m/%Y %H:%M:%S}" == paid_at and paid.utcoffset() == timedelta(hours=-5)
    assert rows(database, "SELECT estado FROM sfv_encargos WHERE radicado = ?", SAMPLE_RADICADO) == [("G",)]


def test_the_fiduciaria_rejects_a_wrong_value_and_an_expired_subsidy(window: Window) -> None:
    database = window.legacy.fiduprevisora_db
    radicado, resolution, value = rows(database, "SELECT radicado, resolucion, vlr_asignado FROM sfv_encargos "
                                       "WHERE estado = 'P' AND radicado <> ? ORDER BY radicado", SAMPLE_RADICADO)[0]
    assigned = Decimal(value.replace(".", "").replace(",", "."))
    request = put(put(put(payload("movilizarSubsidio-solicitud.xml"), "radicado", radicado), "numActo", resolution),
                  "valorPesos", f"{assigned + 1000:.2f}")
    answer = window.ask("movilizarSubsidio", FIDUPREVISORA, request)
    assert text(answer.payload, "codEstadoDesembolso") == "RECHAZADO" and text(answer.payload, "pago") is None
    assert value in (text(answer.payload, "nomEstadoDesembolso") or "")
    assert rows(database, "SELECT 1 FROM giros WHERE radicado = ?", radicado) == []

    radicado, resolution, value = rows(database, "SELECT radicado, resolucion, vlr_asignado FROM sfv_encargos "
                                       "WHERE estado = 'V' ORDER BY radicado")[0]
    request = put(put(put(payload("movilizarSubsidio-solicitud.xml"), "radicado", radicado), "numActo", resolution),
                  "valorPesos", value.replace(".", "").replace(",", "."))
    answer = window.ask("movilizarSubsidio", FIDUPREVISORA, request)
    assert text(answer.payload, "codEstadoDesembolso") == "RECHAZADO"
    assert "vencido" in (text(answer.payload, "nomEstadoDesembolso") or "")

    request = put(payload("movilizarSubsidio-solicitud.xml"), "radicado", "VIV-2026-999999")
    answer = window.ask("movilizarSubsidio", FIDUPREVISORA, request)
    assert answer.header.message_type is MessageType.FAULT
    assert text(answer.payload, "codFalla") == FaultCode.ADAPTER_NOT_FOUND


# Cajas de compensación


def new_files(folder: Path, before: set[Path]) -> list[Path]:
    """Complete new files, as the legacy batch reader sees them: the writer's hidden temporary files excluded."""
    return sorted(p for p in set(folder.iterdir()) - before if not p.name.startswith(".") and p.suffix != ".tmp")


def read_batch(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";")
    records = list(reader)
    return list(reader.fieldnames or []), records


def drop_folder(window: Window, caja: str) -> Path:
    folder = {"colsubsidio": window.legacy.colsubsidio_dir, "compensar": window.legacy.compensar_dir}[caja]
    assert str(folder) == os.environ[f"GEL_{caja.upper()}_DIR"]  # the folder the adapter.yaml points at
    return folder


BATCH_LAYOUTS = {  # the columns each caja's batch process reads, in order
    "colsubsidio": ["RADICADO", "RESULTADO", "TIPO_DOC", "NUM_DOC", "NOMBRES", "APELLIDOS", "CORREO", "TELEFONO",
                    "DIRECCION", "DIRECCION_RURAL", "MUNICIPIO", "RESOLUCION", "FECHA_RESOLUCION", "MEDIO",
                    "FECHA_RECIBO", "TEXTO"],
    "compensar": ["radicado", "estado_postulacion", "tipo_identificacion", "identificacion", "primer_nombre",
                  "segundo_nombre", "primer_apellido", "segundo_apellido", "email", "celular", "direccion",
                  "direccion_rural", "cod_municipio", "acto", "fecha_acto", "canal", "fecha_registro", "mensaje"],
}


@pytest.mark.parametrize("caja", sorted(CAJAS))
def test_a_caja_hands_the_notification_to_its_batch_as_a_csv_file(window: Window, caja: str) -> None:
    salida = drop_folder(window, caja) / "salida"
    before = set(salida.iterdir())
    request = payload("notificarResultado-solicitud.xml")
    answer = window.ask("notificarResultado", CAJAS[caja], request)
    assert answer.header.message_type is MessageType.RESPONSE and answer.signer == CAJAS[caja]
    assert text(answer.payload, "notificado") == "true"
    assert text(answer.payload, "codMedioNotificacion") == "CORREO_ELECTRONICO"
    handed = datetime.fromisoformat(text(answer.payload, "fechaHoraNotificacion") or "")
    assert abs(datetime.now(handed.tzinfo) - handed) < timedelta(minutes=2)

    (written,) = new_files(salida, before)
    assert written.suffix == ".csv" and not written.name.startswith(".")
    header, records = read_batch(written)
    assert header == BATCH_LAYOUTS[caja] and len(records) == 1
    (row,) = records
    expected = {
        "colsubsidio": {"RADICADO": SAMPLE_RADICADO, "RESULTADO": "ASIGNADO", "TIPO_DOC": "C.C.",
                        "NUM_DOC": "1020304050", "NOMBRES": "MARÍA FERNANDA", "APELLIDOS": "GÓMEZ RUIZ",
                        "CORREO": text(request, "correoElectronico"), "MUNICIPIO": "SOACHA",
                        "DIRECCION": text(request, "direccionUrbana"), "RESOLUCION": "FNV-0987-2026",
                        "FECHA_RESOLUCION": "27/11/2026", "MEDIO": "EMAIL",
                        "TEXTO": text(request, "textoNotificacion")},
        "compensar": {"radicado": SAMPLE_RADICADO, "estado_postulacion": "A", "tipo_identificacion": "1",
                      "identificacion": "1020304050", "primer_nombre": "MARÍA", "segundo_nombre": "FERNANDA",
                      "primer_apellido": "GÓMEZ", "segundo_apellido": "RUIZ",
                      "email": text(request, "correoElectronico"), "cod_municipio": "25754",
                      "direccion": text(request, "direccionUrbana"), "acto": "FNV-0987-2026",
                      "fecha_acto": "2026-11-27", "canal": "E", "mensaje": text(request, "textoNotificacion")},
    }[caja]
    assert {name: row[name] for name in expected} == expected


@pytest.mark.parametrize("caja", sorted(CAJAS))
def test_without_an_email_the_caja_notifies_by_certified_mail(window: Window, caja: str) -> None:
    salida = drop_folder(window, caja) / "salida"
    before = set(salida.iterdir())
    request = payload("notificarResultado-solicitud.xml")
    email = request.find(".//{*}correoElectronico")
    parent = email.getparent() if email is not None else None
    assert email is not None and parent is not None
    parent.remove(email)
    answer = window.ask("notificarResultado", CAJAS[caja], request)
    assert text(answer.payload, "codMedioNotificacion") == "CORREO_CERTIFICADO"
    (written,) = new_files(salida, before)
    (row,) = read_batch(written)[1]
    medium, mail, address = ("MEDIO", "CORREO", "DIRECCION") if caja == "colsubsidio" else \
        ("canal", "email", "direccion")
    assert (row[medium], row[mail]) == (("CERTIFICADO", "") if caja == "colsubsidio" else ("C", ""))
    assert row[address] == text(request, "direccionUrbana")


# The oferente: no service, a subscriber of the assignment event


def test_fonvivienda_announces_a_new_assignment_once_and_the_oferente_records_it(window: Window) -> None:
    radicado, *_pool = undecided(window, "B.CUPOS_DISPONIBLES > 0 AND B.SALDO_DISPONIBLE >= 39000000 "
                                         "AND C.TOPE_VALOR >= 39000000 AND C.PUNTAJE_MINIMO <= 742.35")
    request = put(payload("asignarSubsidio-solicitud.xml"), "radicado", radicado)
    salida = window.legacy.oferente_dir / "salida"
    before = set(salida.iterdir())
    decided = window.ask("asignarSubsidio", FONVIVIENDA, request)
    assert decided.header.message_type is MessageType.RESPONSE and decided.payload is not None
    assert text(decided.payload, "asignado") == "true"
    deadline = time.monotonic() + 20
    while not (written := new_files(salida, before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(written) == 1, "the oferente did not record the event Fonvivienda emitted with its answer"
    header, records = read_batch(written[0])
    assert header == ["radicado", "asignado", "valor", "resolucion", "fecha_resolucion", "recibido"]
    (row,) = records
    value = Decimal(text(decided.payload, "valorPesos") or "")
    assert (row["radicado"], row["asignado"], row["resolucion"]) == (radicado, "SI", text(decided.payload, "numActo"))
    assert row["valor"] == f"{value:,.2f}".translate(str.maketrans(",.", ".,"))
    assert row["fecha_resolucion"] == f"{date.fromisoformat(text(decided.payload, 'fechaActo') or ''):%d/%m/%Y}"
    again = window.ask("asignarSubsidio", FONVIVIENDA, copy.deepcopy(request))
    assert again.header.message_type is MessageType.RESPONSE
    time.sleep(1)
    assert new_files(salida, before) == written, "asking again repeats the answer, not the announcement"


# Configuration


def test_every_housing_mapping_loads_against_its_schema(registry: SchemaRegistry) -> None:
    files = sorted(path for name in ADAPTERS for path in (ROOT / "adapters" / name / "mappings").glob("*.yaml"))
    assert len(files) == 10
    for path in files:
        load_mapping(path, registry)


def test_gel_adapter_check_passes_for_every_housing_adapter_over_the_seeded_data(pki: DevPKI, tmp_path: Path) -> None:
    seeded = seed(tmp_path / "legacy")
    env = {**os.environ, "GEL_CERTS_DIR": str(pki.directory), **environment(seeded, tmp_path)}
    missing = {**env, "GEL_COMPENSAR_DIR": str(tmp_path / "no-existe")}
    runs = {name: subprocess.Popen([sys.executable, "-m", "broker.cli", "adapter", "check",
                                    f"adapters/{name}/adapter.yaml"], cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in ADAPTERS}
    runs["compensar sin carpeta"] = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "adapter", "check", "adapters/compensar/adapter.yaml"], cwd=ROOT,
        env=missing, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = {name: (run.communicate(timeout=120), run.returncode) for name, run in runs.items()}
    for name in ADAPTERS:
        (out, err), code = results[name]
        assert code == 0 and "Configuración correcta." in out, f"{name}: {out}{err}"
    (out, err), code = results["compensar sin carpeta"]
    assert code == 1 and "no responde" in err and "Traceback" not in err
