"""The catalog is enforced by a running gateway on real RabbitMQ: a service published, granted, revoked and
retired through the catalog changes what the gateway admits within its refresh interval, with no restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from broker.catalog import ServiceStatus
from broker.catalog.management import Actor, CatalogManager, open_manager
from broker.catalog.publication import read_manifest
from broker.gateway.gateway import HEADER_NOTICE, Routed
from broker.gateway.runtime import build_gateway
from broker.gelxml.envelope import reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings
from broker.transport.abc import OutgoingMessage
from broker.transport.provisioning import Credentials
from broker.transport.rabbitmq import RabbitMQTransport
from broker.transport.topology import INGRESS_EXCHANGE, entity_key, entity_queue, ingress_queue
from tests.conftest import ENTITIES_FILE, ROOT

pytestmark = pytest.mark.rabbitmq

GATEWAY, ORCHESTRATOR, SNR = "CO/PLAT/900000001", "CO/PLAT/900000002", "CO/GOB/899999007"
MANIFEST = ROOT / "docs" / "ejemplos" / "publicacion" / "publicacion.yaml"
CODE = "consultarCertificadoTradicion"
OPERATOR = Actor(name="operador:prueba")


class Running:
    def __init__(self, settings: Settings, sender: RabbitMQTransport, receiver: RabbitMQTransport,
                 pki: DevPKI) -> None:
        self.settings, self.sender, self.receiver, self.pki = settings, sender, receiver, pki
        self.routed: dict[str, Routed] = {}
        self.lock = threading.Condition()

    def on_routed(self, item: Routed) -> None:
        with self.lock:
            self.routed[item.message_id] = item
            self.lock.notify_all()

    def send(self) -> Routed:
        template = parse_untrusted(read_manifest(MANIFEST).samples["solicitud"])
        message = reissue(template)
        body = sign_message(message, self.pki.credential(ORCHESTRATOR))
        message_id = parse_untrusted(body).findtext(".//{*}idMensaje") or ""
        self.sender.publish_all([OutgoingMessage(INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), body,
                                                 message_id=message_id, user_id=ORCHESTRATOR)], timeout=10)
        with self.lock:
            assert self.lock.wait_for(lambda: message_id in self.routed, timeout=20), "the gateway did not answer"
            return self.routed[message_id]


@pytest.fixture
def running(rabbitmq_platform: tuple[str, Credentials], pki: DevPKI, tmp_path: Path) -> Iterator[Running]:
    base_url, credentials = rabbitmq_platform
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE,
                        published_schemas_dir=tmp_path / "publicados", catalog_refresh_seconds=0.2)
    transports = [RabbitMQTransport(credentials.url(base_url, user), user_label=f"gel-test:{user}")
                  for user in (GATEWAY, ORCHESTRATOR, SNR)]
    running = Running(settings, transports[1], transports[2], pki)
    parts = build_gateway(settings, transports[0], on_routed=running.on_routed)
    for queue in (ingress_queue(ORCHESTRATOR), entity_queue(SNR)):
        transports[0].purge(queue)
    parts.gateway.start()
    yield running
    parts.close()
    for transport in transports:
        transport.close()


def outcome_after_change(running: Running, expected: str | None) -> Routed:
    """Send until the gateway shows `expected` (None = delivered), within a few refresh intervals."""
    deadline = time.monotonic() + 5
    while True:
        routed = running.send()
        if routed.fault_code == expected or time.monotonic() > deadline:
            return routed
        time.sleep(0.1)


def deprecation_notice(running: Running) -> str:
    """Deprecated versions are still delivered, with the catalog's warning in the delivery's headers."""
    while (earlier := running.receiver.get(entity_queue(SNR), timeout=0.3)) is not None:
        running.receiver.ack(earlier)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        routed = running.send()
        assert routed.outcome == "entregado", routed
        arrived = running.receiver.get(entity_queue(SNR), timeout=5)
        assert arrived is not None
        running.receiver.ack(arrived)
        if arrived.headers.get(HEADER_NOTICE):
            return str(arrived.headers[HEADER_NOTICE])
    raise AssertionError("no delivery carried the deprecation notice")


def test_publish_grant_revoke_and_retire_take_effect_in_the_running_gateway(running: Running) -> None:
    manager: CatalogManager = open_manager(running.settings)
    try:
        unknown = running.send()
        assert unknown.outcome == "rechazado" and unknown.fault_code.startswith("GEL-VALID-"), unknown

        publication = read_manifest(MANIFEST)
        manager.publish(replace(publication, callers=()), OPERATOR)
        denied = outcome_after_change(running, "GEL-AUTHZ-DENIED")
        assert denied.fault_code == "GEL-AUTHZ-DENIED", "published, but nobody may call it yet (deny by default)"

        manager.grant(CODE, "1.0", ORCHESTRATOR, OPERATOR)
        delivered = outcome_after_change(running, None)
        assert delivered.outcome == "entregado" and delivered.recipient == SNR, delivered
        arrived = running.receiver.get(entity_queue(SNR), timeout=5)
        assert arrived is not None and b"consultarCertificadoTradicion" in arrived.body

        manager.revoke(CODE, "1.0", ORCHESTRATOR, OPERATOR)
        assert outcome_after_change(running, "GEL-AUTHZ-DENIED").fault_code == "GEL-AUTHZ-DENIED"

        manager.grant(CODE, "1.0", ORCHESTRATOR, OPERATOR)
        assert outcome_after_change(running, None).outcome == "entregado"
        manager.set_status(CODE, "1.0", ServiceStatus.DEPRECATED, OPERATOR)
        notice = deprecation_notice(running)
        assert notice.startswith("GEL-AUTHZ-DEPRECATED") and "migre" in notice, notice

        manager.set_status(CODE, "1.0", ServiceStatus.RETIRED, OPERATOR)
        assert outcome_after_change(running, "GEL-AUTHZ-RETIRED").fault_code == "GEL-AUTHZ-RETIRED"
    finally:
        manager.store.close()
