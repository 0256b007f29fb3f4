"""What only RabbitMQTransport has to show, against a real broker in a vhost of its own (created and deleted here):
reconnection, dead channels, the broker's own error text, pipelined confirms. The contract itself (routing,
confirms, settling, dead-lettering, …) is checked for every transport in test_transport_conformance.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlparse, urlunparse

import pytest

from broker.transport.abc import (
    Binding,
    Delivery,
    ExchangeSpec,
    OutgoingMessage,
    QueueSpec,
    Topology,
    TransportError,
)
from broker.transport.rabbitmq import RabbitMQTransport
from tests.conftest import require_tool
from tests.integration.conftest import rabbitmqctl

pytestmark = pytest.mark.rabbitmq

QUORUM = {"x-queue-type": "quorum"}


@pytest.fixture(scope="module")
def vhost_url(amqp_url: str) -> Iterator[str]:
    require_tool("rabbitmqctl")
    vhost = f"gel-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        parsed = urlparse(amqp_url)
        yield urlunparse(parsed._replace(path="/" + quote(vhost, safe="")))
    finally:
        rabbitmqctl("delete_vhost", vhost, attempts=30)


@pytest.fixture
def make_transport(vhost_url: str) -> Iterator[Callable[[], RabbitMQTransport]]:
    made: list[RabbitMQTransport] = []

    def make() -> RabbitMQTransport:
        transport = RabbitMQTransport(vhost_url, user_label=f"gel-test-{uuid.uuid4().hex[:8]}",
                                      reconnect_max_delay=2.0)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def transport(make_transport: Callable[[], RabbitMQTransport]) -> RabbitMQTransport:
    return make_transport()


def _topology(name: str) -> Topology:
    return Topology(exchanges=(ExchangeSpec(f"{name}.ex", "topic"),),
                    queues=(QueueSpec(f"{name}.q", QUORUM),),
                    bindings=(Binding(f"{name}.ex", f"{name}.q", "#"),))


def _unique() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _kill_connection(vhost_url: str, label: str) -> None:
    vhost = urlparse(vhost_url).path.lstrip("/")
    vhost = vhost.replace("%2F", "/").replace("%2f", "/")
    listing = rabbitmqctl("list_connections", "-p", vhost, "--no-table-headers", "pid", "client_properties")
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if label in line]
    assert pids, f"connection {label} not found in:\n{listing}"
    for pid in pids:
        rabbitmqctl("close_connection", pid, "test")


def test_mismatched_queue_arguments_raise_with_the_broker_text(transport: RabbitMQTransport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    with pytest.raises(TransportError, match="inequivalent arg"):
        transport.declare(Topology(queues=(QueueSpec(f"{name}.q", {"x-queue-type": "classic"}),)))
    transport.declare(_topology(name))


def test_a_killed_connection_reconnects_and_the_consumer_resumes(
        transport: RabbitMQTransport, vhost_url: str) -> None:
    name = _unique()
    transport.declare(_topology(name))
    received: list[Delivery] = []
    held = threading.Event()

    def handle(delivery: Delivery) -> None:
        received.append(delivery)
        if delivery.message_id == "held" and not held.is_set():
            held.set()  # left unacked across the connection loss: it must come back
            return
        transport.ack(delivery)

    transport.consume(f"{name}.q", handle, prefetch=10)
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x", message_id=m) for m in ("held", "a1")])
    assert _wait_for(lambda: {d.message_id for d in received} >= {"held", "a1"})

    _kill_connection(vhost_url, transport.label)
    during = transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x", message_id="during"))
    try:
        during.result(15)
        during_ok = True
    except TransportError:
        during_ok = False  # failed fast instead of hanging: the caller republishes

    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x", message_id=m) for m in ("b1", "b2")])
    assert _wait_for(lambda: {"b1", "b2"} <= {d.message_id for d in received})
    redelivered = [d for d in received if d.message_id == "held" and d.redelivered]
    assert redelivered, "the unacked delivery was not redelivered after reconnecting"
    assert redelivered[0].delivery_count >= 1
    if during_ok:
        assert _wait_for(lambda: "during" in {d.message_id for d in received})
    time.sleep(0.3)
    assert transport.get(f"{name}.q", timeout=0.3) is None


def test_settling_a_delivery_of_a_dead_channel_is_a_no_op(transport: RabbitMQTransport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    received: list[Delivery] = []
    consumer = transport.consume(f"{name}.q", received.append)
    transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x", message_id="one")).result(10)
    assert _wait_for(lambda: len(received) == 1)
    consumer.cancel()
    transport.ack(received[0])  # channel gone: RabbitMQ redelivers it
    again = transport.get(f"{name}.q")
    assert again is not None and again.message_id == "one" and again.redelivered
    transport.ack(again)


def test_publish_rate_with_confirms_in_flight(transport: RabbitMQTransport,
                                             record_property: Callable[[str, object], None]) -> None:
    """Not a benchmark: a guard that confirms really are pipelined (well above one round trip per message)."""
    name = _unique()
    transport.declare(_topology(name))
    messages = [OutgoingMessage(f"{name}.ex", "k", b"x" * 2048, message_id=str(i)) for i in range(2000)]
    started = time.perf_counter()
    transport.publish_all(messages)
    pipelined = len(messages) / (time.perf_counter() - started)
    started = time.perf_counter()
    for message in messages[:200]:
        transport.publish(message).result(10)
    blocking = 200 / (time.perf_counter() - started)
    record_property("publish_all_msgs_per_s", round(pipelined))
    record_property("one_by_one_msgs_per_s", round(blocking))
    assert pipelined > blocking
    assert transport.purge(f"{name}.q") == 2200


def test_a_queue_deleted_under_a_multi_queue_consumer_is_left_out_and_the_others_keep_flowing(
        make_transport: Callable[[], RabbitMQTransport]) -> None:
    transport, admin = make_transport(), make_transport()
    name = _unique()
    transport.declare(Topology(exchanges=(ExchangeSpec(f"{name}.ex", "topic"),),
                               queues=(QueueSpec(f"{name}.a", QUORUM), QueueSpec(f"{name}.b", QUORUM)),
                               bindings=(Binding(f"{name}.ex", f"{name}.a", "a"),
                                         Binding(f"{name}.ex", f"{name}.b", "b"))))
    received: list[Delivery] = []

    def handle(delivery: Delivery) -> None:
        received.append(delivery)
        transport.ack(delivery)

    consumer = transport.consume([f"{name}.a", f"{name}.b"], handle, prefetch=10)

    def send(key: str, message_id: str) -> None:
        transport.publish(OutgoingMessage(f"{name}.ex", key, b"x", message_id=message_id, mandatory=False)).result(10)

    send("a", "a1")
    send("b", "b1")
    assert _wait_for(lambda: {d.message_id for d in received} == {"a1", "b1"})
    admin.delete_queue(f"{name}.b")  # RabbitMQ cancels that queue's consumer
    send("a", "a2")
    assert _wait_for(lambda: "a2" in {d.message_id for d in received}), "the other queue stopped flowing"
    assert _wait_for(lambda: consumer.queues == (f"{name}.a",), timeout=30), "the deleted queue was not left out"
    send("a", "a3")
    assert _wait_for(lambda: "a3" in {d.message_id for d in received})
    assert sorted(d.message_id or "" for d in received) == ["a1", "a2", "a3", "b1"]
