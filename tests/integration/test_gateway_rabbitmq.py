"""What only real RabbitMQ can show: its own refusal of what an entity's user may not do, and a broker
restart in the middle of a stream that loses nothing and hands the application no duplicate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.gateway.gateway import Routed
from broker.gateway.runtime import GatewayParts, build_gateway
from broker.gelxml.envelope import read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings
from broker.transport.abc import (
    Delivery,
    OutgoingMessage,
    PublishError,
    QueueSpec,
    Topology,
    TransportError,
)
from broker.transport.rabbitmq import RabbitMQTransport
from broker.transport.topology import DELIVER_EXCHANGE, INGRESS_EXCHANGE, entity_key, entity_queue, ingress_queue
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES
from tests.integration.conftest import rabbitmqctl

pytestmark = pytest.mark.rabbitmq

GATEWAY = "CO/PLAT/900000001"
ORCHESTRATOR = "CO/PLAT/900000002"
REGISTRADURIA = "CO/GOB/899999040"
COLSUBSIDIO = "CO/CCF/860007336"
STREAM = 2000


def test_an_entity_cannot_read_another_entitys_queue(connect) -> None:  # type: ignore[no-untyped-def]
    colsubsidio = connect(COLSUBSIDIO)
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        colsubsidio.get(entity_queue(REGISTRADURIA), timeout=1)
    assert colsubsidio.get(entity_queue(COLSUBSIDIO), timeout=0.2) is None, "its own queue stays readable"


def test_an_entity_cannot_bypass_the_gateway_or_reshape_the_topology(connect) -> None:  # type: ignore[no-untyped-def]
    colsubsidio = connect(COLSUBSIDIO)
    straight = OutgoingMessage(DELIVER_EXCHANGE, entity_key(REGISTRADURIA), b"<mensaje/>", user_id=COLSUBSIDIO)
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        colsubsidio.publish(straight).result(timeout=10)
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        colsubsidio.declare(Topology(queues=(QueueSpec("gel.entidad.mia"),)))
    with pytest.raises(PublishError, match="PRECONDITION_FAILED"):
        colsubsidio.publish(OutgoingMessage(INGRESS_EXCHANGE, entity_key(COLSUBSIDIO), b"<mensaje/>",
                                            user_id=ORCHESTRATOR)).result(timeout=10)
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        colsubsidio.publish(OutgoingMessage(INGRESS_EXCHANGE, "nadie", b"<mensaje/>", user_id=COLSUBSIDIO,
                                            mandatory=False)).result(timeout=10)
    colsubsidio.publish_all([OutgoingMessage(INGRESS_EXCHANGE, entity_key(COLSUBSIDIO), b"<mensaje/>",
                                             user_id=COLSUBSIDIO)])
    assert connect(GATEWAY).purge(ingress_queue(COLSUBSIDIO)) == 1, "its own routing key reaches its ingress queue"


def _stream(pki: DevPKI, count: int) -> list[bytes]:
    template = parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-solicitud.xml").read_bytes())
    credential = pki.credential(ORCHESTRATOR)
    return [sign_message(reissue(template), credential) for _ in range(count)]


def _publish_until_confirmed(sender: RabbitMQTransport, messages: list[OutgoingMessage], deadline: float,
                             pace: Callable[[int], None]) -> int:
    """Publish in batches; a batch whose confirms were lost (the broker went away) is published again."""
    resent = 0
    for start in range(0, len(messages), 50):
        pace(start)
        batch = messages[start:start + 50]
        while True:
            try:
                sender.publish_all(batch, timeout=10)
                break
            except TransportError:
                assert time.monotonic() < deadline, "RabbitMQ did not come back"
                resent += len(batch)
                time.sleep(0.2)
    return resent


def test_a_broker_restart_mid_stream_loses_nothing_and_duplicates_nothing(
        connect, pki: DevPKI, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bodies = _stream(pki, STREAM)
    ids = [read_header(parse_untrusted(b)).message_id for b in bodies]
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    routed: list[Routed] = []
    lock = threading.Lock()

    def on_routed(item: Routed) -> None:
        with lock:
            routed.append(item)

    workers: list[GatewayParts] = [build_gateway(settings, connect(GATEWAY), on_routed=on_routed, prefetch=32)
                                   for _ in range(2)]
    for queue in (*workers[0].gateway.queues, entity_queue(REGISTRADURIA)):
        workers[0].gateway.transport.purge(queue)  # what earlier tests in this vhost left behind
    wire: list[str] = []
    application: list[str] = []
    receiver = connect(REGISTRADURIA)

    def receive(delivery: Delivery) -> None:
        """At-least-once delivery below, an idempotent receiver keyed by idMensaje above (as adapters do)."""
        message_id = delivery.message_id or ""
        with lock:
            if message_id not in wire:
                application.append(message_id)
            wire.append(message_id)
        receiver.ack(delivery)

    receiver.consume(entity_queue(REGISTRADURIA), receive, prefetch=100)
    for worker in workers:
        worker.gateway.start()
    restarted = threading.Event()

    def restart_when_flowing() -> None:
        while len(routed) < STREAM // 5:
            time.sleep(0.05)
        rabbitmqctl("stop_app")
        time.sleep(1)
        rabbitmqctl("start_app")
        restarted.set()

    restarter = threading.Thread(target=restart_when_flowing, daemon=True)
    restarter.start()
    deadline = time.monotonic() + 240

    def pace(published: int) -> None:
        """Keep the sender at most a few hundred messages ahead, so the restart falls inside its stream."""
        while published - len(routed) > 800 and time.monotonic() < deadline:
            time.sleep(0.02)

    resent = _publish_until_confirmed(connect(ORCHESTRATOR), [
        OutgoingMessage(INGRESS_EXCHANGE, entity_key(ORCHESTRATOR), body, message_id=message_id, user_id=ORCHESTRATOR)
        for body, message_id in zip(bodies, ids, strict=True)], deadline, pace)
    restarter.join(timeout=120)
    assert restarted.is_set(), "the broker was not restarted during the stream"
    while time.monotonic() < deadline and len(application) < STREAM:
        time.sleep(0.1)
    time.sleep(1)  # anything still in flight would show up as an extra delivery

    for worker in workers:
        worker.gateway.stop()
    with lock:
        delivered = list(application)
        duplicates_on_the_wire = len(wire) - len(set(wire))
    assert set(delivered) == set(ids), f"lost {len(set(ids) - set(delivered))} of {STREAM}"
    log = workers[0].log
    accepted = [r for r in log.records() if r.outcome == "aceptado"]
    assert len(accepted) == STREAM and {r.message_id for r in accepted} == set(ids), "each logged exactly once"
    refused = [r for r in log.records() if r.outcome == "rechazado"]
    assert refused == [], [(r.message_id, r.fault_code) for r in refused]
    assert log.verify().ok
    print(f"\n{STREAM} mensajes, {resent} republicados por el emisor, {duplicates_on_the_wire} entregas duplicadas "
          "descartadas por idMensaje en el receptor")
    for worker in workers:
        worker.close()
