"""Fair sharing of ingress on real RabbitMQ: one entity flooding the platform does not starve the others.

Each entity has its own ingress queue (`gel.entrada.<entity>`), the gateway takes them all on one channel with a
prefetch window per queue, a topic permission keeps each entity to its own routing key (so to its own queue),
and each queue is bounded with `reject-publish` (the flooder's publishes beyond it are nacked, stay in its
outbox and go later).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from adapters.sdk.runtime import Adapter
from adapters.sdk.store import AdapterStore
from broker.gateway.gateway import Routed
from broker.gateway.runtime import build_gateway
from broker.gelxml.envelope import ServiceRef, read_header, reissue
from broker.gelxml.parsing import parse_untrusted
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.settings import Settings
from broker.transport.abc import OutgoingMessage, PublishError, TransportError
from broker.transport.provisioning import Credentials
from broker.transport.rabbitmq import RabbitMQTransport
from broker.transport.topology import INGRESS_EXCHANGE, entity_key, entity_queue, ingress_queue
from tests.conftest import ENTITIES_FILE, ROOT, SAMPLES
from tests.integration.adapter_kit import sample_payload
from tests.integration.conftest import rabbitmqctl

pytestmark = pytest.mark.rabbitmq

GATEWAY = "CO/PLAT/900000001"
FLOODER = "CO/PLAT/900000002"  # the orchestrator: verificarIdentidad → Registraduría
REGISTRADURIA = "CO/GOB/899999040"
QUIET = "CO/IPS/860015536"  # a hospital: verificarDerechos → ADRES
ADRES = "CO/GOB/901037916"
FLOOD = 3000
FEW = 20

Connect = Callable[[str], RabbitMQTransport]


def _signed(pki: DevPKI, sample: str, sender: str, count: int) -> list[OutgoingMessage]:
    template = parse_untrusted((SAMPLES / "valid" / sample).read_bytes())
    credential = pki.credential(sender)
    bodies = [sign_message(reissue(template), credential) for _ in range(count)]
    return [OutgoingMessage(INGRESS_EXCHANGE, entity_key(sender), body, user_id=sender,
                            message_id=read_header(parse_untrusted(body)).message_id) for body in bodies]


def _ready(url: str, queue: str) -> int:
    """Messages ready in `queue`, from a passive declare (`rabbitmqctl list_queues` shows quorum queues' figures
    only as of their last metrics tick)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def test_a_flooding_entity_does_not_hold_back_another(
        connect: Connect, rabbitmq_platform: tuple[str, Credentials], pki: DevPKI, tmp_path: Path) -> None:
    base_url, credentials = rabbitmq_platform
    flood = _signed(pki, "verificarIdentidad-solicitud.xml", FLOODER, FLOOD)
    few = _signed(pki, "verificarDerechos-solicitud.xml", QUIET, FEW)
    quiet_ids = {m.message_id for m in few}
    settings = Settings(certs_dir=pki.directory, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE)
    routed_at: dict[str, float] = {}
    flooder_routed: list[int] = [0]
    flooder_routed_when_quiet: list[int] = []
    changed = threading.Condition()

    def on_routed(item: Routed) -> None:
        with changed:
            routed_at[item.message_id] = time.monotonic()
            if item.message_id in quiet_ids:
                assert item.outcome == "entregado" and item.recipient == ADRES, item
                flooder_routed_when_quiet.append(flooder_routed[0])
            else:
                flooder_routed[0] += 1
            changed.notify_all()

    parts = build_gateway(settings, connect(GATEWAY), on_routed=on_routed)
    for queue in (*parts.gateway.queues, entity_queue(REGISTRADURIA), entity_queue(ADRES)):
        parts.gateway.transport.purge(queue)
    parts.gateway.start()
    try:
        connect(FLOODER).publish_all(flood, timeout=60)
        sent_at = time.monotonic()
        connect(QUIET).publish_all(few)
        with changed:
            assert changed.wait_for(lambda: quiet_ids <= routed_at.keys(), timeout=60), (
                f"{len(quiet_ids & routed_at.keys())} of {FEW} quiet messages routed in 60 s")
            ahead = max(flooder_routed_when_quiet)
        backlog = _ready(credentials.url(base_url, GATEWAY), ingress_queue(FLOODER))
    finally:
        parts.gateway.stop()
        parts.gateway.transport.purge(ingress_queue(FLOODER))
        parts.gateway.transport.purge(entity_queue(REGISTRADURIA))
        parts.close()
    latencies = sorted(routed_at[m] - sent_at for m in quiet_ids)
    report = (f"quiet entity: {FEW} messages routed in p50 {statistics.median(latencies):.2f} s, "
              f"max {latencies[-1]:.2f} s after sending, with {ahead} of the flooder's {FLOOD} routed by then "
              f"and {backlog} still waiting in {ingress_queue(FLOODER)}")
    print("\n" + report)
    assert ahead <= FLOOD // 2 and backlog >= FLOOD // 3, f"the quiet entity waited behind the flood: {report}"
    receiver = connect(ADRES)
    arrived = set()
    while len(arrived) < FEW and (delivery := receiver.get(entity_queue(ADRES), timeout=5)) is not None:
        arrived.add(delivery.message_id)
        receiver.ack(delivery)
    assert arrived == quiet_ids, "every quiet message reached its recipient's queue"


def test_an_entity_cannot_publish_into_another_entitys_ingress_queue(connect: Connect, pki: DevPKI) -> None:
    gateway, flooder = connect(GATEWAY), connect(FLOODER)
    gateway.purge(ingress_queue(QUIET))
    [forged] = _signed(pki, "verificarIdentidad-solicitud.xml", FLOODER, 1)
    with pytest.raises(TransportError, match="ACCESS_REFUSED") as refused:
        flooder.publish(OutgoingMessage(INGRESS_EXCHANGE, entity_key(QUIET), forged.body, user_id=FLOODER,
                                        message_id=forged.message_id)).result(timeout=10)
    assert "gel.ingress" in str(refused.value) or "topic" in str(refused.value), refused.value
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        flooder.publish(OutgoingMessage(INGRESS_EXCHANGE, "#", forged.body, user_id=FLOODER)).result(timeout=10)
    assert gateway.get(ingress_queue(QUIET), timeout=0.5) is None, "nothing reached the other entity's queue"
    flooder.publish_all([forged])
    own = gateway.get(ingress_queue(FLOODER), timeout=5)
    assert own is not None and own.message_id == forged.message_id, "its own routing key still works"
    gateway.ack(own)


@pytest.fixture
def small_bound(rabbitmq_platform: tuple[str, Credentials]) -> Iterator[int]:
    """A policy of this vhost that bounds the quiet entity's ingress queue at 5 (RabbitMQ applies the lower of
    a policy's `max-length` and the queue's `x-max-length`)."""
    vhost = rabbitmq_platform[1].vhost
    pattern = "^" + ingress_queue(QUIET).replace(".", r"\.") + "$"
    rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "--priority", "10", "gel-prueba-cota", pattern,
                '{"max-length": 5, "overflow": "reject-publish"}')
    deadline = time.monotonic() + 30
    while f"{ingress_queue(QUIET)}\tgel-prueba-cota" not in rabbitmqctl("list_queues", "-p", vhost, "name", "policy"):
        assert time.monotonic() < deadline, "RabbitMQ did not apply the policy"
        time.sleep(0.2)
    try:
        yield 5
    finally:
        rabbitmqctl("clear_policy", "-p", vhost, "gel-prueba-cota", attempts=10)


def test_past_its_bound_an_entity_s_publishes_are_nacked_and_stay_in_its_outbox(
        connect: Connect, pki: DevPKI, tmp_path: Path, small_bound: int) -> None:
    """A quorum queue tells its publishers it is full once it is past the bound (so a burst already in flight
    may overshoot a little); from then on their publishes are nacked until the queue has room again."""
    gateway = connect(GATEWAY)
    gateway.purge(ingress_queue(QUIET))
    store = AdapterStore(f"sqlite:///{tmp_path / 'hospital.db'}")
    adapter = Adapter(QUIET, connect(QUIET), pki.credential(QUIET), pki.trust_store(), store, {})
    payload = sample_payload("verificarDerechos-solicitud.xml")
    sent: list[str] = []

    def call() -> None:
        sent.append(adapter.call(ServiceRef("verificarDerechos", "1.0"), ADRES, payload))

    try:
        with pytest.raises(PublishError, match=r"basic\.nack"):
            for _ in range(10 * small_bound):
                call()
                adapter.flush()
        taken = len(sent) - 1
        assert small_bound <= taken <= small_bound + 2, f"{taken} taken with a bound of {small_bound}"
        for _ in range(3):
            call()
        with pytest.raises(PublishError, match=r"basic\.nack"):
            adapter.flush()
        assert [row.message_id for row in store.unpublished()] == sent[taken:], (
            "the refused rows stay in the outbox, in order")
        drained = 0
        for _ in range(20):
            drained += gateway.purge(ingress_queue(QUIET))  # the gateway taking them, at test speed
            if not store.unpublished():
                break
            with contextlib.suppress(PublishError):
                adapter.flush()
            time.sleep(0.1)
        assert not store.unpublished(), "once there is room again, every row goes"
        assert drained >= len(sent), "and RabbitMQ took every one of them"
    finally:
        gateway.purge(ingress_queue(QUIET))
        store.close()
