"""Stores populated for real for the API tests: two chain instances through the orchestrator runtime (one
calling the Registraduría, one the Sisbén) and two messages across the gateway on the embedded transport."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from broker.api.auth import create_token
from broker.gateway.local import open_platform
from broker.gelxml import SchemaRegistry
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.orchestrator.definition import definition_from_text
from broker.orchestrator.engine import Engine
from broker.orchestrator.runtime import Orchestrator
from broker.orchestrator.store import OrchestratorStore
from broker.orchestrator.testing import RecordingDispatcher
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings
from broker.storage import open_engine
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES

REGISTRADURIA = "CO/GOB/899999040"
SISBEN = "CO/GOB/899999011"
SNR_REGISTRO = "CO/GOB/899999007"
DOC_A, DOC_B = "1111222233", "4444555566"
SECRET_A, SECRET_B = "CONTEXTO-ALFA-RESERVADO", "CONTEXTO-BETA-RESERVADO"
PAYLOAD_A, PAYLOAD_B = "ZENOBIA", "9876543210"

CHAIN = """chain: {name}
version: 1
title: {title}
radicado: {prefix}
deadline: 10d
inputs: [numDocumento]
steps:
  - id: consulta
    title: Consulta a la entidad
    call: {{service: {service}, version: "1.0", to: {to}}}
    request:
      - {{gel: per:identificacion/per:codTipoDocumento, value: CC}}
      - {{gel: per:identificacion/per:numDocumento, from: numDocumento}}
{extra}    reply:
      - {{ctx: {reply}, gel: {reply_gel}}}
  - {{id: fin, end: aprobado, summary: "Listo"}}
"""


@dataclass(frozen=True)
class Populated:
    settings: Settings
    tokens: dict[str, str]
    instance_a: str
    radicado_a: str
    instance_b: str
    radicado_b: str
    message_a: str
    message_b: str


def _chains(registry: SchemaRegistry, url: str) -> tuple[str, str, str, str]:
    identity = definition_from_text(CHAIN.format(
        name="prueba-identidad", title="Verificación de identidad de prueba", prefix="PRA",
        service="verificarIdentidad", to=REGISTRADURIA, reply="estadoDocumento", reply_gel="svc:codEstadoDocumento",
        extra="      - {gel: per:nombreCompleto/per:primerNombre, value: MARÍA}\n"
              "      - {gel: per:nombreCompleto/per:primerApellido, value: GÓMEZ}\n"), source="a.yaml")
    sisben = definition_from_text(CHAIN.format(
        name="prueba-sisben", title="Consulta del Sisbén de prueba", prefix="PRB", service="consultarSisben",
        to=SISBEN, reply="sisbenEncontrado", reply_gel="svc:encontrado", extra=""), source="b.yaml")
    outbox = RecordingDispatcher()
    clock_time = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    orchestrator = Orchestrator(OrchestratorStore(open_engine(url)), Engine(registry),
                                {identity.key: identity, sisben.key: sisben}, outbox, clock=lambda: clock_time)
    a = orchestrator.start("prueba-identidad", {"numDocumento": DOC_A, "nota": SECRET_A})
    b = orchestrator.start("prueba-sisben", {"numDocumento": DOC_B, "nota": SECRET_B})
    clock_time += dt.timedelta(seconds=2)
    assert orchestrator.on_reply(correlation=outbox.sent[0].message_id, fault_reply=False, payload=None,
                                 message_id="respuesta-a", values={"estadoDocumento": "VIGENTE"})
    return a.id, a.radicado, b.id, b.radicado


def _signed(pki: DevPKI, sample: str, element: str, text: str) -> tuple[str, bytes]:
    message = reissue(parse_untrusted((SAMPLES / "valid" / sample).read_bytes()))
    node = message.find(f".//{{*}}{element}")
    assert node is not None
    node.text = text
    body = sign_message(message, pki.credential(read_header(message).sender))
    return read_header(parse_untrusted(body)).message_id, body


def _messages(settings: Settings, pki: DevPKI) -> tuple[str, str]:
    platform = open_platform(settings, "embedded")
    try:
        id_a, body_a = _signed(pki, "verificarIdentidad-solicitud.xml", "primerNombre", PAYLOAD_A)
        id_b, body_b = _signed(pki, "consultarSisben-solicitud.xml", "numDocumento", PAYLOAD_B)
        platform.send(read_header(parse_untrusted(body_a)).sender, body_a)
        platform.send(read_header(parse_untrusted(body_b)).sender, body_b)
        assert len(platform.wait_routed(2)) >= 2
        assert platform.receive(REGISTRADURIA) is not None and platform.receive(SISBEN) is not None
    finally:
        platform.close()
    return id_a, id_b


def populate(folder: Path, registry: SchemaRegistry, pki: DevPKI) -> Populated:
    settings = Settings(
        database_url=f"sqlite:///{folder / 'gel.db'}", orchestrator_database_url=f"sqlite:///{folder / 'orq.db'}",
        api_tokens_file=folder / "api-tokens.json", certs_dir=pki.directory, schemas_dir=ROOT / "schemas",
        entities_file=ENTITIES_FILE, catalog_file=ROOT / "deploy" / "catalog.yaml",
    )
    instance_a, radicado_a, instance_b, radicado_b = _chains(registry, settings.orchestrator_database_url)
    message_a, message_b = _messages(settings, pki)
    tokens = {
        "operador": create_token(settings.api_tokens_file, role="operador", entity=None, name="Mesa de operación"),
        "registraduria": create_token(settings.api_tokens_file, role="entidad", entity=REGISTRADURIA,
                                      name="Registraduría"),
        "sisben": create_token(settings.api_tokens_file, role="entidad", entity=SISBEN, name="DNP Sisbén"),
        "publicador": create_token(settings.api_tokens_file, role="publicador", entity=SNR_REGISTRO,
                                   name="Publicador de la SNR"),
    }
    return Populated(settings, tokens, instance_a, radicado_a, instance_b, radicado_b, message_a, message_b)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
