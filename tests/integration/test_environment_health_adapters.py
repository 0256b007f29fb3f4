"""The environmental-licence and health-authorisation entities' adapters, as shipped (adapters/<entity>/adapter.yaml),
over their seeded legacy systems (adapters/legacy/seed_ambiental_salud.py): ANLA and MinInterior, Parques,
ADRES and the EPS behind SQL databases, the PSE gateway behind its legacy JSON service — answering the
orchestrator (environment) and the IPS (health) through the platform, on both transports.

The legacy databases are shared by both transports: issuing services are idempotent per expediente (ANLA,
MinInterior) or per request (EPS), so the second transport finds what the first one issued and the tests
compare answers with what the legacy database recorded."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.anla import handlers as anla_handlers
from adapters.anla.support import today
from adapters.eps import handler as eps_handler
from adapters.legacy.seed_ambiental_salud import (
    ACTS,
    COMMUNITIES,
    FEES,
    OBLIGATION_TEMPLATES,
    PROTECTED_AREAS,
    RECONCILED_PAYMENTS,
    SECTORS,
    SeededAmbientalSalud,
    seed,
)
from adapters.mininterior import handler as mininterior_handler
from adapters.parques import handler as parques_handler
from adapters.recaudo.pse_app import PseServer, start_background
from adapters.sdk.assembly import AssembledAdapter, assemble
from adapters.sdk.config import load_adapter_config
from adapters.sdk.runtime import Adapter, Incoming
from adapters.sdk.store import AdapterStore
from broker.gateway.local import LocalPlatform, open_platform
from broker.gelxml import FaultCode, MessageType, SchemaRegistry
from broker.gelxml.envelope import ServiceRef
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.adapter_kit import Inbox, text
from tests.integration.adapter_kit import sample_payload as payload

ORCHESTRATOR = "CO/PLAT/900000002"
IPS = "CO/IPS/860015536"
ANLA = "CO/GOB/900467239"
RECAUDO = "CO/PRIV/830006404"
MININTERIOR = "CO/GOB/830039230"
PARQUES = "CO/GOB/830016046"
ADRES = "CO/GOB/901037916"
EPS = "CO/EPS/800251440"
ADAPTERS = ("anla", "recaudo", "mininterior", "parques", "adres", "eps")


# -- helpers ---------------------------------------------------------------------------------------------------


def set_polygon(body: etree._Element, points: list[tuple[float, float]]) -> etree._Element:
    polygon = body.find(".//{*}poligono")
    assert polygon is not None
    namespace = etree.QName(polygon).namespace
    for vertex in list(polygon):
        polygon.remove(vertex)
    for lat, lon in points:
        vertex = etree.SubElement(polygon, f"{{{namespace}}}vertice")
        etree.SubElement(vertex, f"{{{namespace}}}latitud").text = f"{lat:.8f}"
        etree.SubElement(vertex, f"{{{namespace}}}longitud").text = f"{lon:.8f}"
    return body


def texts(incoming: Incoming, local_name: str) -> list[str]:
    assert incoming.payload is not None
    return [node.text or "" for node in incoming.payload.iter(f"{{*}}{local_name}")]


def is_fault(answer: Incoming, code: str) -> bool:
    return answer.header.message_type is MessageType.FAULT and text(answer, "codFalla") == code


def rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(sql, params).fetchall()


@dataclass
class Caller:
    adapter: Adapter
    inbox: Inbox

    def ask(self, service: str, recipient: str, body: etree._Element) -> Incoming:
        return self.answer(self.send(service, recipient, body))

    def send(self, service: str, recipient: str, body: etree._Element) -> str:
        return self.adapter.call(ServiceRef(service, "1.0"), recipient, body)

    def answer(self, request_id: str) -> Incoming:
        return self.inbox.answer_to(request_id)


@dataclass
class Legacy:
    seeded: SeededAmbientalSalud
    pse: PseServer


@dataclass
class Scene:
    platform: LocalPlatform
    orchestrator: Caller
    ips: Caller
    legacy: SeededAmbientalSalud


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Legacy]:
    seeded = seed(tmp_path_factory.mktemp("legado"))
    pse = start_background(json.loads(seeded.recaudo_json.read_text(encoding="utf-8")))
    yield Legacy(seeded, pse)
    pse.stop()
    for module in (anla_handlers, mininterior_handler, parques_handler, eps_handler):
        module.LEGACY.close()


def legacy_environment(legacy: Legacy, stores: Path) -> dict[str, str]:
    seeded = legacy.seeded
    env = {
        "GEL_ANLA_DB_URL": f"sqlite:///{seeded.anla_db}", "GEL_RECAUDO_URL": legacy.pse.url,
        "GEL_MININTERIOR_DB_URL": f"sqlite:///{seeded.mininterior_db}",
        "GEL_PARQUES_DB_URL": f"sqlite:///{seeded.parques_db}", "GEL_ADRES_DB_URL": f"sqlite:///{seeded.adres_db}",
        "GEL_EPS_DB_URL": f"sqlite:///{seeded.eps_db}",
    }
    for name in ADAPTERS:
        env[f"GEL_{name.upper()}_STORE"] = f"sqlite:///{stores / (name + '.db')}"
    return env


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
          registry: SchemaRegistry, legacy: Legacy) -> Iterator[Scene]:
    folder = tmp_path_factory.mktemp(f"plataforma-{request.param}")
    with pytest.MonkeyPatch.context() as env:
        for name, value in legacy_environment(legacy, folder).items():
            env.setenv(name, value)
        settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{folder / 'gel.db'}",
                            schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
        credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
        platform = open_platform(settings, request.param, credentials=credentials)
        adapters: list[AssembledAdapter] = []
        for name in ADAPTERS:
            config = load_adapter_config(ROOT / "adapters" / name / "adapter.yaml")
            assembled = assemble(config, settings, platform.transport(config.entity), registry=registry)
            assembled.adapter.start()
            adapters.append(assembled)
        callers: list[Caller] = []
        for entity in (ORCHESTRATOR, IPS):
            inbox = Inbox()
            adapter = Adapter(entity, platform.transport(entity), pki.credential(entity), pki.trust_store(),
                              AdapterStore(f"sqlite:///{folder / (entity.replace('/', '_') + '.db')}"), {},
                              on_message=inbox, relay_interval=0.2)
            adapter.start()
            callers.append(Caller(adapter, inbox))
        yield Scene(platform, callers[0], callers[1], legacy.seeded)
        for caller in callers:
            caller.adapter.stop()
            caller.adapter.store.close()
        for assembled in adapters:
            assembled.close()
        platform.close()


# -- ANLA: liquidation -----------------------------------------------------------------------------------------


def test_anla_liquidates_the_sample_with_its_tariff_formula(scene: Scene) -> None:
    answer = scene.orchestrator.ask("liquidarCobro", ANLA, payload("liquidarCobro-solicitud.xml"))
    assert answer.header.message_type is MessageType.RESPONSE and answer.signer == ANLA
    # The sample response's figures: 77.450.300 + (980.000 − 100.000) millones × 0,125 ‰ = 187.450.300.
    assert text(answer, "valorPesos") == "187450300.00"
    assert text(answer, "referenciaPago") == "ANLA-LIQ-2026-004512"
    assert text(answer, "fechaLimitePago") == "2026-12-04", "10 working days after the filing on 2026-11-20"
    assert "Parque Solar Fotovoltaico Alta Guajira 250 MW" in (text(answer, "concepto") or "")


def test_anla_liquidates_another_expediente_for_exactly_what_its_bank_later_reconciled(scene: Scene) -> None:
    body = payload("liquidarCobro-solicitud.xml", numExpediente="LAV0061-00-2026", valorProyecto="70000000000.00",
                   codSector="MINERIA")
    answer = scene.orchestrator.ask("liquidarCobro", ANLA, body)
    reconciled = next(p for p in RECONCILED_PAYMENTS if p[0] == "ANLA-LIQ-2026-004538")
    assert (text(answer, "valorPesos"), text(answer, "referenciaPago")) == (reconciled[2], reconciled[0])
    assert text(answer, "fechaLimitePago") == "2026-11-18", "filed 2026-11-03; Monday 2026-11-16 is a holiday"


def test_an_expediente_anla_does_not_have_is_a_not_found_falla(scene: Scene) -> None:
    answer = scene.orchestrator.ask("liquidarCobro", ANLA, payload("liquidarCobro-solicitud.xml",
                                                                    numExpediente="LAV9999-00-2026"))
    assert is_fault(answer, FaultCode.ADAPTER_NOT_FOUND)
    assert "LAV9999-00-2026" in (text(answer, "descripcion") or "")


# -- the PSE gateway -------------------------------------------------------------------------------------------


def test_the_gateway_confirms_the_sample_payment_from_its_transactions(scene: Scene) -> None:
    answer = scene.orchestrator.ask("registrarPago", RECAUDO, payload("registrarPago-solicitud.xml"))
    assert answer.signer == RECAUDO and text(answer, "pagado") == "true"
    assert (text(answer, "codEstadoPago"), text(answer, "nomEstadoPago")) == ("APROBADO", "Aprobado")
    assert text(answer, "numAutorizacion") == "PSE2026112300483921" and text(answer, "codBanco") == "1007"
    assert text(answer, "fechaHoraPago") == "2026-11-23T09:47:31-05:00"
    assert texts(answer, "valorPesos") == ["187450300.00"] and text(answer, "codMedioPago") == "PSE"


def test_a_pending_payment_is_not_paid_and_carries_no_payment_data(scene: Scene) -> None:
    body = payload("registrarPago-solicitud.xml", referenciaPago="ANLA-LIQ-2026-004551", valorPesos="57850300.00")
    answer = scene.orchestrator.ask("registrarPago", RECAUDO, body)
    assert answer.header.message_type is MessageType.RESPONSE and text(answer, "pagado") == "false"
    assert text(answer, "codEstadoPago") == "PENDIENTE" and text(answer, "pago") is None


def test_an_approved_payment_of_another_value_does_not_count(scene: Scene) -> None:
    body = payload("registrarPago-solicitud.xml", referenciaPago="ANLA-LIQ-2026-004538", valorPesos="63582100.00")
    answer = scene.orchestrator.ask("registrarPago", RECAUDO, body)
    assert text(answer, "pagado") == "false" and text(answer, "codEstadoPago") == "APROBADO"
    assert text(answer, "numAutorizacion") == "PSE2026110600412877", "the approved attempt, not the failed one"
    assert texts(answer, "valorPesos") == ["64075800.00"]


def test_a_reference_the_gateway_never_saw_is_a_not_found_falla(scene: Scene) -> None:
    body = payload("registrarPago-solicitud.xml", referenciaPago="ANLA-LIQ-2026-009999")
    assert is_fault(scene.orchestrator.ask("registrarPago", RECAUDO, body), FaultCode.ADAPTER_NOT_FOUND)


# -- ANLA: acts ------------------------------------------------------------------------------------------------


def test_anla_answers_the_sample_chain_with_the_acts_it_recorded(scene: Scene) -> None:
    orchestrator = scene.orchestrator
    auto = orchestrator.ask("expedirAutoInicio", ANLA, payload("expedirAutoInicio-solicitud.xml"))
    assert (text(auto, "numActo"), text(auto, "fechaActo")) == ("AUTO-2026-08734", "2026-11-26")
    assert text(auto, "hashDocumento") == next(a[10] for a in ACTS if a[0] == "AUTO-2026-08734")
    concept = orchestrator.ask("emitirConceptoTecnico", ANLA, payload("emitirConceptoTecnico-solicitud.xml"))
    assert text(concept, "numActo") == "CT-2027-01123" and text(concept, "viable") == "true"
    obligations = texts(concept, "obligacion")
    assert len(obligations) == 3 and obligations[0].startswith("Protocolizar la consulta previa con las comunidades")
    resolution = orchestrator.ask("expedirResolucion", ANLA, payload("expedirResolucion-solicitud.xml"))
    assert (text(resolution, "numActo"), text(resolution, "codDecision")) == ("RES-2027-00512", "OTORGAR")
    assert text(resolution, "vigenciaAnios") == "30"
    bulletin = orchestrator.ask("publicarBoletin", ANLA, payload("publicarBoletin-solicitud.xml"))
    assert (text(bulletin, "numBoletin"), text(bulletin, "fechaPublicacion")) == ("GA-2027-0058", "2027-03-22")


def test_an_unpaid_expediente_gets_no_auto_de_inicio(scene: Scene) -> None:
    body = payload("expedirAutoInicio-solicitud.xml", numExpediente="LAV0072-00-2026", radicado="AMB-2026-000072",
                   referenciaPago="ANLA-LIQ-2026-004551", numAutorizacion="PSE2026112300489015")
    answer = scene.orchestrator.ask("expedirAutoInicio", ANLA, body)
    assert is_fault(answer, FaultCode.ADAPTER_NOT_FOUND)
    assert "conciliación bancaria" in (text(answer, "descripcion") or "")
    assert rows(scene.legacy.anla_db, "SELECT * FROM actos WHERE num_expediente = 'LAV0072-00-2026'") == []


def test_a_paid_expediente_goes_from_auto_to_concept_resolution_and_bulletin(scene: Scene) -> None:
    orchestrator, anla_db, number = scene.orchestrator, scene.legacy.anla_db, "LAV0061-00-2026"
    auto = orchestrator.ask("expedirAutoInicio", ANLA, payload(
        "expedirAutoInicio-solicitud.xml", numExpediente=number, radicado="AMB-2026-000061",
        referenciaPago="ANLA-LIQ-2026-004538", numAutorizacion="PSE2026110600412877"))
    issued = dict(rows(anla_db, "SELECT tipo_acto, num_acto FROM actos WHERE num_expediente = ?", number))
    assert text(auto, "numActo") == issued["AUTO"] and issued["AUTO"] > "AUTO-2026-08734"
    assert text(auto, "fechaActo") == today().isoformat() and text(auto, "formatoArchivo") == "text/plain"

    concept_request = payload("emitirConceptoTecnico-solicitud.xml", numExpediente=number,
                              presenciaComunidades="false", requiereConsultaPrevia="false")
    concept = orchestrator.ask("emitirConceptoTecnico", ANLA, concept_request)
    assert text(concept, "viable") == "true"
    expected = [t[3] for t in sorted(OBLIGATION_TEMPLATES, key=lambda t: t[2])
                if t[0] in ("*", "MIN") and t[1] == "SIEMPRE"]
    assert texts(concept, "obligacion") == expected
    concept_number = text(concept, "numActo")
    assert concept_number == dict(rows(anla_db, "SELECT tipo_acto, num_acto FROM actos WHERE num_expediente = ?",
                                       number))["CONCEPTO"]

    resolution = orchestrator.ask("expedirResolucion", ANLA, payload(
        "expedirResolucion-solicitud.xml", numExpediente=number, numActo=concept_number or ""))
    assert text(resolution, "codDecision") == "OTORGAR"
    assert text(resolution, "vigenciaAnios") == str(dict((s[0], s[2]) for s in SECTORS)["MIN"])

    bulletin_request = payload("publicarBoletin-solicitud.xml", numExpediente=number,
                               numActo=text(resolution, "numActo") or "")
    bulletin = orchestrator.ask("publicarBoletin", ANLA, bulletin_request)
    published = rows(anla_db, "SELECT num_boletin, fecha_publicacion, uri FROM publicaciones WHERE num_acto = ?",
                     text(resolution, "numActo"))
    assert [(text(bulletin, "numBoletin"), text(bulletin, "fechaPublicacion"), text(bulletin, "uriPublicacion"))] \
        == published
    assert published[0][0].startswith(f"GA-{today().year}-")


def test_a_project_overlapping_protected_areas_gets_a_non_viable_concept_and_is_denied(scene: Scene) -> None:
    orchestrator, number = scene.orchestrator, "LAV0079-00-2026"
    auto = orchestrator.ask("expedirAutoInicio", ANLA, payload(
        "expedirAutoInicio-solicitud.xml", numExpediente=number, radicado="AMB-2026-000079",
        referenciaPago="ANLA-LIQ-2026-004560", numAutorizacion="PSE2026111800457310"))
    assert auto.header.message_type is MessageType.RESPONSE
    concept = orchestrator.ask("emitirConceptoTecnico", ANLA, payload(
        "emitirConceptoTecnico-solicitud.xml", numExpediente=number, traslapaAreasProtegidas="true"))
    assert text(concept, "viable") == "false" and texts(concept, "obligacion") == []
    resolution = orchestrator.ask("expedirResolucion", ANLA, payload(
        "expedirResolucion-solicitud.xml", numExpediente=number, numActo=text(concept, "numActo") or ""))
    assert text(resolution, "codDecision") == "NEGAR" and text(resolution, "vigenciaAnios") is None
    assert text(resolution, "nomTipoActo") == "Resolución que niega la licencia ambiental"


# -- MinInterior and Parques: spatial checks -------------------------------------------------------------------

SAMACA = [(5.51, -73.50), (5.51, -73.46), (5.47, -73.46), (5.47, -73.50)]
INSIDE_CHINGAZA = [(4.55, -73.80), (4.55, -73.75), (4.50, -73.75), (4.50, -73.80)]
ACROSS_CHINGAZA_EDGE = [(4.80, -73.70), (4.80, -73.50), (4.70, -73.50), (4.70, -73.70)]


def sphere_rectangle_hectares(points: list[tuple[float, float]]) -> float:
    """An independent check: the area of a latitude/longitude rectangle on the authalic sphere."""
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    radius = 6_371_007.2
    return (radius ** 2 * math.radians(max(lons) - min(lons))
            * (math.sin(math.radians(max(lats))) - math.sin(math.radians(min(lats))))) / 10_000


def test_mininterior_finds_the_wayuu_communities_in_the_sample_area(scene: Scene) -> None:
    answer = scene.orchestrator.ask("consultarPresenciaComunidades", MININTERIOR,
                                    payload("consultarPresenciaComunidades-solicitud.xml"))
    assert answer.signer == MININTERIOR and text(answer, "presenciaComunidades") == "true"
    expected = sorted(c[0] for c in COMMUNITIES if "Jepira" in c[0] or "Kasichi" in c[0])
    assert texts(answer, "nombreComunidad") == expected, "Walerpa's territory lies north of the polygon"
    assert set(texts(answer, "codTipoComunidad")) == {"INDIGENA"}
    assert text(answer, "requiereConsultaPrevia") == "true"
    assert (text(answer, "numActo"), text(answer, "codTipoActo")) == ("ST-1487-2026", "CERTIFICADO")


def test_a_project_away_from_any_territory_is_certified_without_consulta_previa(scene: Scene) -> None:
    body = set_polygon(payload("consultarPresenciaComunidades-solicitud.xml", numExpediente="LAV0061-00-2026"),
                       SAMACA)
    answer = scene.orchestrator.ask("consultarPresenciaComunidades", MININTERIOR, body)
    assert text(answer, "presenciaComunidades") == "false" and texts(answer, "comunidad") == []
    assert text(answer, "requiereConsultaPrevia") == "false"
    certified = rows(scene.legacy.mininterior_db, "SELECT num_certificacion, procede_consulta FROM certificaciones "
                                                  "WHERE num_expediente = 'LAV0061-00-2026'")
    assert certified == [(text(answer, "numActo"), 0)]
    assert text(answer, "nomTipoActo") == "Certificación de no procedencia de consulta previa"


def test_parques_finds_no_protected_area_in_the_sample_area(scene: Scene) -> None:
    answer = scene.orchestrator.ask("consultarAreasProtegidas", PARQUES,
                                    payload("consultarAreasProtegidas-solicitud.xml"))
    assert answer.signer == PARQUES and text(answer, "traslapa") == "false"
    assert texts(answer, "areaProtegida") == []


def test_a_project_inside_chingaza_overlaps_it_by_its_whole_area(scene: Scene) -> None:
    body = set_polygon(payload("consultarAreasProtegidas-solicitud.xml", numExpediente="LAV0072-00-2026"),
                       INSIDE_CHINGAZA)
    answer = scene.orchestrator.ask("consultarAreasProtegidas", PARQUES, body)
    chingaza = next(a for a in PROTECTED_AREAS if a[0] == "25")
    assert text(answer, "traslapa") == "true"
    assert (texts(answer, "codRunap"), texts(answer, "nombreArea")) == (["25"], [chingaza[1]])
    assert text(answer, "codCategoriaArea") == "PARQUE_NACIONAL_NATURAL"
    hectares = float(text(answer, "areaTraslapadaHectareas") or 0)
    assert hectares == pytest.approx(sphere_rectangle_hectares(INSIDE_CHINGAZA), rel=0.01)


def test_a_project_across_the_edge_of_chingaza_overlaps_it_in_part(scene: Scene) -> None:
    body = set_polygon(payload("consultarAreasProtegidas-solicitud.xml", numExpediente="LAV0072-00-2026"),
                       ACROSS_CHINGAZA_EDGE)
    answer = scene.orchestrator.ask("consultarAreasProtegidas", PARQUES, body)
    hectares = float(text(answer, "areaTraslapadaHectareas") or 0)
    assert texts(answer, "codRunap") == ["25"]
    assert 0.1 * sphere_rectangle_hectares(ACROSS_CHINGAZA_EDGE) < hectares \
        < 0.5 * sphere_rectangle_hectares(ACROSS_CHINGAZA_EDGE)


# -- ADRES -----------------------------------------------------------------------------------------------------


def test_adres_verifies_the_sample_patients_rights_in_the_bdua(scene: Scene) -> None:
    answer = scene.ips.ask("verificarDerechos", ADRES, payload("verificarDerechos-solicitud.xml"))
    assert answer.signer == ADRES and text(answer, "afiliado") == "true"
    assert [text(answer, n) for n in ("primerNombre", "segundoNombre", "primerApellido", "segundoApellido")] == \
        ["JUAN", "CARLOS", "PÉREZ", "MORALES"]
    assert (text(answer, "codSexo"), text(answer, "fechaNacimiento")) == ("M", "1978-03-14")
    assert (text(answer, "codEstadoAfiliacion"), text(answer, "codRegimen")) == ("ACTIVO", "CONTRIBUTIVO")
    assert (text(answer, "idEntidad"), text(answer, "digitoVerificacion")) == (EPS, "6")
    assert (text(answer, "codMunicipio"), text(answer, "nomMunicipio")) == ("11001", "BOGOTÁ, D.C.")
    assert (text(answer, "fechaAfiliacion"), text(answer, "codTipoAfiliado")) == ("2015-02-01", "COTIZANTE")


def test_a_suspended_affiliate_has_no_rights(scene: Scene) -> None:
    answer = scene.ips.ask("verificarDerechos", ADRES, payload("verificarDerechos-solicitud.xml",
                                                                numDocumento="52987654"))
    assert text(answer, "afiliado") == "false" and text(answer, "codEstadoAfiliacion") == "SUSPENDIDO"
    assert (text(answer, "primerNombre"), text(answer, "segundoNombre")) == ("LUZ", "MARINA")
    assert text(answer, "nomEntidad") == "EPS Sanitas S.A.S."


def test_an_affiliation_that_ended_gives_no_rights_and_no_affiliation_data(scene: Scene) -> None:
    answer = scene.ips.ask("verificarDerechos", ADRES, payload("verificarDerechos-solicitud.xml",
                                                                numDocumento="80234567"))
    assert answer.header.message_type is MessageType.RESPONSE and text(answer, "afiliado") == "false"
    assert (text(answer, "primerApellido"), text(answer, "segundoApellido")) == ("SAN MIGUEL", None)
    assert text(answer, "codEstadoAfiliacion") is None and text(answer, "entidad") is None


def test_someone_the_bdua_does_not_know_is_a_not_found_falla(scene: Scene) -> None:
    answer = scene.ips.ask("verificarDerechos", ADRES, payload("verificarDerechos-solicitud.xml",
                                                                numDocumento="999999999"))
    assert is_fault(answer, FaultCode.ADAPTER_NOT_FOUND) and "999999999" in (text(answer, "descripcion") or "")


# -- the EPS ---------------------------------------------------------------------------------------------------


def fee(concept: str, band: str) -> str:
    return next(f[2] for f in FEES if f[0] == concept and f[1] == band)


def authorisation(scene: Scene, body: etree._Element) -> tuple[Incoming, tuple[Any, ...]]:
    """The EPS's answer and the authorisation its database recorded for that very request."""
    request_id = scene.ips.send("autorizarServicio", EPS, body)
    answer = scene.ips.answer(request_id)
    recorded = rows(scene.legacy.eps_db, "SELECT num_autorizacion, estado, servicios, tipo_cuota, valor_cuota, "
                                         "vigencia_hasta FROM autorizaciones WHERE id_solicitud = ?", request_id)
    assert len(recorded) == 1, "one authorisation per request"
    return answer, recorded[0]


def test_the_eps_authorises_the_sample_request_with_the_cuota_moderadora(scene: Scene) -> None:
    answer, recorded = authorisation(scene, payload("autorizarServicio-solicitud.xml"))
    assert answer.signer == EPS and text(answer, "codEstadoAutorizacion") == "APROBADA"
    assert text(answer, "numAutorizacion") == recorded[0]
    assert str(recorded[0]).startswith(today().strftime("%Y%m%d")) and str(recorded[0]) > "2026112000456788"
    assert texts(answer, "codCups") == ["883512", "890380"] and texts(answer, "cantidad") == ["1", "1"]
    assert text(answer, "fechaVigenciaHasta") == (today() + timedelta(days=90)).isoformat()
    assert text(answer, "codTipoCuota") == "CUOTA_MODERADORA"
    assert text(answer, "valorPesos") == f"{Decimal(fee('CUOTA_MODERADORA', 'A')):.2f}"


def test_the_eps_denies_a_patient_who_is_not_its_affiliate(scene: Scene) -> None:
    answer, recorded = authorisation(scene, payload("autorizarServicio-solicitud.xml", numDocumento="1065432198"))
    assert text(answer, "codEstadoAutorizacion") == "NEGADA" and recorded[1] == "N"
    assert "no registra afiliación activa" in (text(answer, "motivoNegacion") or "")
    assert texts(answer, "servicioAutorizado") == [] and text(answer, "cuotaRecuperacion") is None


def test_a_high_cost_procedure_goes_to_medical_audit(scene: Scene) -> None:
    body = payload("autorizarServicio-solicitud.xml", codCups="815401",
                   nomCups="REEMPLAZO TOTAL DE ARTICULACIÓN DE RODILLA")
    answer, recorded = authorisation(scene, body)
    assert text(answer, "codEstadoAutorizacion") == "PENDIENTE_AUDITORIA" and recorded[1] == "P"
    assert "815401" in (text(answer, "motivoNegacion") or "") and text(answer, "fechaVigenciaHasta") is None


def test_a_beneficiary_in_hospital_pays_the_copago_up_to_the_cap(scene: Scene) -> None:
    body = payload("autorizarServicio-solicitud.xml", numDocumento="1018456789", codCups="815401",
                   nomCups="REEMPLAZO TOTAL DE ARTICULACIÓN DE RODILLA", codAmbito="HOSPITALARIO",
                   nomAmbito="Hospitalario", prioridad="PRIORITARIA")
    body.remove(body.findall("{*}servicioSolicitado")[1])  # only the knee replacement
    answer, recorded = authorisation(scene, body)
    assert text(answer, "codEstadoAutorizacion") == "APROBADA" and text(answer, "codTipoCuota") == "COPAGO"
    knee = 24_500_000 * Decimal(fee("COPAGO_PORCENTAJE", "A")) / 100  # 2.817.500 before the cap
    expected = min(knee, Decimal(fee("COPAGO_TOPE_EVENTO", "A")))
    assert text(answer, "valorPesos") == f"{expected:.2f}" == recorded[4]


# -- gel adapter check -----------------------------------------------------------------------------------------


def test_gel_adapter_check_accepts_every_adapter_over_the_seeded_systems(legacy: Legacy, pki: DevPKI,
                                                                         tmp_path: Path) -> None:
    env = {**os.environ, "GEL_CERTS_DIR": str(pki.directory), **legacy_environment(legacy, tmp_path)}
    checks = {name: subprocess.Popen([sys.executable, "-m", "broker.cli", "adapter", "check",
                                      f"adapters/{name}/adapter.yaml"], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in ADAPTERS}
    for name, process in checks.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name}: {out}{err}"
        assert "el sistema heredado responde" in out and "Configuración correcta." in out, name
    env["GEL_ANLA_DB_URL"] = f"sqlite:///{tmp_path / 'no-existe.db'}"
    done = subprocess.run([sys.executable, "-m", "broker.cli", "adapter", "check", "adapters/anla/adapter.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no responde" in done.stderr and "Traceback" not in done.stderr


def test_the_seed_is_deterministic(tmp_path: Path) -> None:
    first, second = seed(tmp_path / "a"), seed(tmp_path / "b")
    for name in ("anla_db", "mininterior_db", "parques_db", "adres_db", "eps_db"):
        dumps = []
        for seeded in (first, second):
            connection = sqlite3.connect(getattr(seeded, name))
            dumps.append(list(connection.iterdump()))
            connection.close()
        assert dumps[0] == dumps[1], name
    assert first.recaudo_json.read_bytes() == second.recaudo_json.read_bytes()
    assert first.bdua_people == second.bdua_people > 100
