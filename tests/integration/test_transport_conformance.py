"""The transport contract (broker/transport/abc.py), run against every implementation: embedded and RabbitMQ.

The RabbitMQ run uses a vhost (and, for the permission test, a user) of its own, created and deleted by this module.
Every wait is bounded, so a broken implementation fails instead of hanging.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from typing import Any, Protocol
from urllib.parse import quote, urlparse, urlunparse

import pytest

from broker.transport.abc import (
    Binding,
    Delivery,
    ExchangeSpec,
    OutgoingMessage,
    Permissions,
    PublishError,
    QueueSpec,
    Topology,
    Transport,
    TransportError,
)
from broker.transport.embedded import EmbeddedBroker, EmbeddedTransport, topic_matches
from tests.conftest import require_tool
from tests.integration.conftest import rabbitmqctl

QUORUM = {"x-queue-type": "quorum"}
WAIT = 10.0


class MakeTransport(Protocol):
    def __call__(self, permissions: Permissions | None = None) -> Transport: ...


class RabbitVhost:
    """A vhost of this module, and the users it created (deleted with it)."""

    def __init__(self, amqp_url: str) -> None:
        self.name = f"gel-conf-{uuid.uuid4().hex[:8]}"
        self.users: list[str] = []
        parsed = urlparse(amqp_url)
        self._parsed = parsed._replace(path="/" + quote(self.name, safe=""))
        self.url = urlunparse(self._parsed)

    def user_url(self, permissions: Permissions) -> str:
        user, password = f"{self.name}-u{len(self.users)}", uuid.uuid4().hex
        rabbitmqctl("add_user", user, password)
        self.users.append(user)
        rabbitmqctl("set_permissions", "-p", self.name, user, permissions.configure, permissions.write,
                    permissions.read)
        netloc = f"{user}:{password}@{self._parsed.hostname}:{self._parsed.port or 5672}"
        return urlunparse(self._parsed._replace(netloc=netloc))


@pytest.fixture(scope="module")
def rabbit_vhost(amqp_url: str) -> Iterator[RabbitVhost]:
    require_tool("rabbitmqctl")
    vhost = RabbitVhost(amqp_url)
    rabbitmqctl("add_vhost", vhost.name)
    try:
        rabbitmqctl("set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        try:
            for user in vhost.users:
                rabbitmqctl("delete_user", user, attempts=30)
        finally:
            rabbitmqctl("delete_vhost", vhost.name, attempts=30)


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def make(request: pytest.FixtureRequest) -> Iterator[MakeTransport]:
    made: list[Transport] = []
    if request.param == "rabbitmq":
        from broker.transport.rabbitmq import RabbitMQTransport

        vhost: RabbitVhost = request.getfixturevalue("rabbit_vhost")

        def build(permissions: Permissions | None) -> Transport:
            url = vhost.url if permissions is None else vhost.user_url(permissions)
            return RabbitMQTransport(url, user_label=f"gel-conf-{uuid.uuid4().hex[:8]}", reconnect_max_delay=2.0)
    else:
        broker = EmbeddedBroker()

        def build(permissions: Permissions | None) -> Transport:
            user = "guest" if permissions is None else "gel-conf-user"
            return EmbeddedTransport(user, broker=broker, permissions=permissions)

    def factory(permissions: Permissions | None = None) -> Transport:
        transport = build(permissions)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()


@pytest.fixture
def transport(make: MakeTransport) -> Transport:
    return make()


class Inbox:
    """What a handler received, with a bounded wait."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.items: list[Delivery] = []
        self.threads: list[str] = []
        self._transport = transport
        self._changed = threading.Condition()

    def __call__(self, delivery: Delivery) -> None:
        with self._changed:
            self.items.append(delivery)
            self.threads.append(threading.current_thread().name)
            self._changed.notify_all()
        if self._transport is not None:
            self._transport.ack(delivery)

    def wait(self, count: int, timeout: float = WAIT) -> list[Delivery]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.items) >= count, timeout), (
                f"{len(self.items)} of {count} deliveries after {timeout} s")
            return list(self.items)

    def ids(self) -> list[str | None]:
        with self._changed:
            return [d.message_id for d in self.items]


def _unique() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


def _topology(name: str, **arguments: Any) -> Topology:
    return Topology(exchanges=(ExchangeSpec(f"{name}.ex", "topic"),),
                    queues=(QueueSpec(f"{name}.q", {**QUORUM, **arguments}),),
                    bindings=(Binding(f"{name}.ex", f"{name}.q", "#"),))


def _dead_letter_topology(name: str, **arguments: Any) -> Topology:
    return Topology(
        exchanges=(ExchangeSpec(f"{name}.ex", "topic"), ExchangeSpec(f"{name}.dlx", "topic")),
        queues=(QueueSpec(f"{name}.q", {**QUORUM, "x-dead-letter-exchange": f"{name}.dlx", **arguments}),
                QueueSpec(f"{name}.dead", QUORUM)),
        bindings=(Binding(f"{name}.ex", f"{name}.q", "#"), Binding(f"{name}.dlx", f"{name}.dead", "#")))


def _get(transport: Transport, queue: str) -> Delivery:
    delivery = transport.get(queue, timeout=WAIT)
    assert delivery is not None, f"nothing in {queue} after {WAIT} s"
    return delivery


def _drain(transport: Transport, queue: str, count: int) -> list[str]:
    """The bodies of `count` messages, then nothing more."""
    bodies = []
    for _ in range(count):
        delivery = _get(transport, queue)
        bodies.append(delivery.body.decode())
        transport.ack(delivery)
    assert transport.get(queue, timeout=0.05) is None, f"more than {count} in {queue}"
    return sorted(bodies)


def test_round_trip_keeps_the_properties(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    transport.declare(_topology(name))
    inbox = Inbox(transport)
    consumer = transport.consume(f"{name}.q", inbox)
    message = OutgoingMessage(f"{name}.ex", "CO.GOB.899999040", b"<m/>", message_id="id-1", correlation_id="c-1",
                              user_id=transport.user, reply_to="gel.respuestas", headers={"idCadena": "k-1"},
                              content_type="application/xml")
    assert transport.publish(message).result(WAIT) is None
    delivery = inbox.wait(1)[0]
    assert (delivery.queue, delivery.exchange, delivery.routing_key, delivery.body) == (
        f"{name}.q", f"{name}.ex", "CO.GOB.899999040", b"<m/>")
    assert (delivery.message_id, delivery.correlation_id, delivery.user_id, delivery.reply_to) == (
        "id-1", "c-1", transport.user, "gel.respuestas")
    assert delivery.headers["idCadena"] == "k-1"
    assert not delivery.redelivered and delivery.delivery_count == 0
    assert inbox.threads == [f"gel-consumer-{name}.q"]
    consumer.cancel()
    assert transport.get(f"{name}.q", timeout=0.2) is None


def test_topic_fanout_and_direct_routing(transport: Transport) -> None:
    name = _unique()
    patterns = {"star": "a.*", "hash": "a.#", "all": "#", "mid": "*.b.#", "exact": "a.b"}
    transport.declare(Topology(
        exchanges=(ExchangeSpec(f"{name}.topic", "topic"), ExchangeSpec(f"{name}.fan", "fanout"),
                   ExchangeSpec(f"{name}.direct", "direct")),
        queues=tuple(QueueSpec(f"{name}.{q}") for q in [*patterns, "f1", "f2", "d"]),
        bindings=(*(Binding(f"{name}.topic", f"{name}.{q}", p) for q, p in patterns.items()),
                  Binding(f"{name}.fan", f"{name}.f1", "ignored"), Binding(f"{name}.fan", f"{name}.f2", ""),
                  Binding(f"{name}.direct", f"{name}.d", "a.b"))))
    keys = ["a", "a.b", "a.b.c", "x.b", "b", ""]
    transport.publish_all([OutgoingMessage(f"{name}.topic", k, k.encode(), mandatory=False) for k in keys])
    expected = {"star": ["a.b"], "hash": ["a", "a.b", "a.b.c"], "all": keys, "mid": ["a.b", "a.b.c", "x.b"],
                "exact": ["a.b"]}
    for queue, bodies in expected.items():
        assert _drain(transport, f"{name}.{queue}", len(bodies)) == sorted(bodies), queue

    transport.publish(OutgoingMessage(f"{name}.fan", "any.key", b"fan", headers={"h": "v"})).result(WAIT)
    first, second = _get(transport, f"{name}.f1"), _get(transport, f"{name}.f2")
    assert isinstance(first.headers, dict)
    first.headers["h"] = "changed"
    assert second.body == b"fan" and second.headers["h"] == "v"
    transport.ack(first)
    transport.ack(second)

    transport.publish_all([OutgoingMessage(f"{name}.direct", k, k.encode(), mandatory=False) for k in keys])
    assert _drain(transport, f"{name}.d", 1) == ["a.b"]


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("#", "", True), ("#", "a.b", True), ("a.#", "a", True), ("a.#", "a.b.c", True), ("a.#", "b", False),
    ("*", "", False), ("*", "a", True), ("*", "a.b", False), ("a.*.c", "a.b.c", True), ("a.*.c", "a.c", False),
    ("#.c", "c", True), ("#.c", "a.b.c", True), ("#.c", "a.c.d", False), ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True), ("#.#", "", True), ("*.#.*", "a", False), ("*.#.*", "a.b", True), ("", "", True),
    ("", "a", False), ("a..b", "a..b", True), ("a.*.b", "a..b", True),
])
def test_topic_matching_rule(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def test_two_thousand_messages_are_confirmed_and_consumed_exactly_once(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    inbox = Inbox(transport)
    transport.consume(f"{name}.q", inbox, prefetch=200)
    ids = [str(i) for i in range(2000)]
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x" * 2048, message_id=i) for i in ids])
    inbox.wait(2000, timeout=60)
    time.sleep(0.3)
    assert sorted(inbox.ids(), key=lambda i: int(i or -1)) == ids


def test_many_publish_futures_in_flight(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    futures = [transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x", message_id=str(i))) for i in range(300)]
    done, not_done = wait(futures, timeout=WAIT)
    assert not not_done
    assert all(f.exception() is None for f in done)
    assert transport.purge(f"{name}.q") == 300


def test_a_forged_user_id_fails_and_the_transport_still_publishes(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    with pytest.raises(PublishError, match="PRECONDITION_FAILED"):
        transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x", user_id="CO/GOB/899999040")).result(WAIT)
    transport.publish(OutgoingMessage(f"{name}.ex", "k", b"after", user_id=transport.user)).result(WAIT)
    delivery = _get(transport, f"{name}.q")
    assert delivery.body == b"after"
    transport.ack(delivery)
    assert transport.get(f"{name}.q", timeout=0.2) is None


def test_a_missing_exchange_fails_and_the_transport_stays_usable(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    with pytest.raises(PublishError, match="NOT_FOUND"):
        transport.publish(OutgoingMessage(f"{name}.nowhere", "k", b"x")).result(WAIT)
    with pytest.raises(PublishError):
        transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"ok"), OutgoingMessage(f"{name}.no", "k", b"x")])
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"later")])
    assert transport.purge(f"{name}.q") >= 1


def test_unroutable_fails_only_when_mandatory(transport: Transport) -> None:
    name = _unique()
    transport.declare(Topology(exchanges=(ExchangeSpec(f"{name}.ex"),)))
    with pytest.raises(PublishError, match="NO_ROUTE"):
        transport.publish(OutgoingMessage(f"{name}.ex", "nadie", b"x")).result(WAIT)
    assert transport.publish(OutgoingMessage(f"{name}.ex", "nadie", b"x", mandatory=False)).result(WAIT) is None


def test_redeclaring_with_other_arguments_fails(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    with pytest.raises(TransportError, match="PRECONDITION_FAILED"):
        transport.declare(Topology(exchanges=(ExchangeSpec(f"{name}.ex", "direct"),)))
    with pytest.raises(TransportError, match="inequivalent arg"):
        transport.declare(Topology(queues=(QueueSpec(f"{name}.q", {**QUORUM, "x-delivery-limit": 3}),)))
    with pytest.raises(TransportError, match="NOT_FOUND"):
        transport.declare(Topology(bindings=(Binding(f"{name}.nowhere", f"{name}.q"),)))
    transport.declare(_topology(name))


def test_nack_requeue_counts_deliveries_and_settling_twice_is_harmless(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x")).result(WAIT)
    first = _get(transport, f"{name}.q")
    assert not first.redelivered and first.delivery_count == 0
    transport.nack(first, requeue=True)
    transport.nack(first, requeue=True)
    second = _get(transport, f"{name}.q")
    assert second.redelivered and second.delivery_count == 1
    assert second.headers["x-delivery-count"] == 1
    assert second.delivery_tag != first.delivery_tag
    transport.nack(second, requeue=True)
    third = _get(transport, f"{name}.q")
    assert third.redelivered and third.delivery_count == 2
    transport.ack(third)
    transport.ack(third)
    transport.nack(third, requeue=False)
    assert transport.get(f"{name}.q", timeout=0.3) is None
    transport.delete_queue(f"{name}.q")
    transport.delete_queue(f"{name}.q")
    with pytest.raises(TransportError, match="NOT_FOUND"):
        transport.purge(f"{name}.q")


def test_nack_without_requeue_dead_letters_with_x_death(transport: Transport) -> None:
    name = _unique()
    transport.declare(_dead_letter_topology(name))
    transport.publish(OutgoingMessage(f"{name}.ex", "CO.GOB.1", b"x", message_id="m-1",
                                      headers={"idCadena": "k"})).result(WAIT)
    transport.nack(_get(transport, f"{name}.q"), requeue=False)
    dead = _get(transport, f"{name}.dead")
    assert (dead.exchange, dead.routing_key, dead.message_id, dead.body) == (f"{name}.dlx", "CO.GOB.1", "m-1", b"x")
    assert dead.headers["idCadena"] == "k"
    death = dead.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["exchange"], death["count"]) == (
        "rejected", f"{name}.q", f"{name}.ex", 1)
    assert list(death["routing-keys"]) == ["CO.GOB.1"]
    assert dead.headers["x-first-death-reason"] == "rejected"
    transport.ack(dead)
    assert transport.get(f"{name}.q", timeout=0.2) is None


def test_dead_letter_routing_key_replaces_the_original(transport: Transport) -> None:
    name = _unique()
    transport.declare(Topology(
        exchanges=(ExchangeSpec(f"{name}.ex", "topic"), ExchangeSpec(f"{name}.dlx", "direct")),
        queues=(QueueSpec(f"{name}.q", {"x-dead-letter-exchange": f"{name}.dlx",
                                         "x-dead-letter-routing-key": "muertos"}),
                QueueSpec(f"{name}.dead")),
        bindings=(Binding(f"{name}.ex", f"{name}.q", "#"), Binding(f"{name}.dlx", f"{name}.dead", "muertos"))))
    transport.publish(OutgoingMessage(f"{name}.ex", "orig.key", b"x")).result(WAIT)
    transport.nack(_get(transport, f"{name}.q"), requeue=False)
    dead = _get(transport, f"{name}.dead")
    assert dead.routing_key == "muertos"
    assert list(dead.headers["x-death"][0]["routing-keys"]) == ["orig.key"]
    transport.ack(dead)


def test_a_message_past_the_delivery_limit_is_dead_lettered(transport: Transport) -> None:
    name = _unique()
    transport.declare(_dead_letter_topology(name, **{"x-delivery-limit": 2}))
    transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x", message_id="m-1")).result(WAIT)
    counts = []
    for _ in range(3):
        delivery = _get(transport, f"{name}.q")
        counts.append(delivery.delivery_count)
        transport.nack(delivery, requeue=True)
    assert counts == [0, 1, 2]
    dead = _get(transport, f"{name}.dead")
    assert dead.message_id == "m-1"
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
    transport.ack(dead)
    assert transport.get(f"{name}.q", timeout=0.3) is None


def test_prefetch_holds_back_until_settled(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    inbox = Inbox()
    transport.consume(f"{name}.q", inbox, prefetch=1)
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x", message_id=m) for m in ("one", "two")])
    first = inbox.wait(1)[0]
    time.sleep(0.5)
    assert inbox.ids() == ["one"]
    transport.ack(first)
    second = inbox.wait(2)[1]
    assert second.message_id == "two"
    transport.ack(second)


def test_cancel_gives_unsettled_deliveries_to_another_consumer(make: MakeTransport) -> None:
    first_transport, second_transport = make(), make()
    name = _unique()
    first_transport.declare(_topology(name))
    held = Inbox()
    consumer = first_transport.consume(f"{name}.q", held, prefetch=10)
    first_transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x", message_id=str(i)) for i in range(3)])
    held.wait(3)
    assert consumer.queue == f"{name}.q"
    consumer.cancel()
    consumer.cancel()
    taker = Inbox(second_transport)
    second_transport.consume(f"{name}.q", taker)
    again = taker.wait(3)
    assert sorted(d.message_id or "" for d in again) == ["0", "1", "2"]
    assert all(d.redelivered and d.delivery_count == 1 for d in again)
    for delivery in held.items:
        first_transport.ack(delivery)
    time.sleep(0.2)
    assert len(taker.items) == 3


def test_competing_consumers_share_the_queue_without_duplicates(make: MakeTransport) -> None:
    transport = make()
    name = _unique()
    transport.declare(_topology(name))
    lock = threading.Lock()
    seen: list[str] = []
    per_consumer = [Inbox(transport), Inbox(transport)]

    def record(inbox: Inbox) -> Callable[[Delivery], None]:
        def handle(delivery: Delivery) -> None:
            with lock:
                seen.append(delivery.message_id or "")
            time.sleep(0.001)
            inbox(delivery)
        return handle

    for inbox in per_consumer:
        transport.consume(f"{name}.q", record(inbox), prefetch=10)
    ids = [str(i) for i in range(200)]
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x", message_id=i) for i in ids])
    deadline = time.monotonic() + WAIT
    while len(seen) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert sorted(seen, key=int) == ids
    assert all(inbox.items for inbox in per_consumer), [len(inbox.items) for inbox in per_consumer]


def test_a_failing_handler_gets_the_message_again(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    calls: list[Delivery] = []
    done = threading.Event()

    def handle(delivery: Delivery) -> None:
        calls.append(delivery)
        if len(calls) == 1:
            raise RuntimeError("boom")
        transport.ack(delivery)
        done.set()

    transport.consume(f"{name}.q", handle)
    transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x", message_id="m")).result(WAIT)
    assert done.wait(WAIT)
    assert [(d.message_id, d.redelivered, d.delivery_count) for d in calls] == [("m", False, 0), ("m", True, 1)]


def test_missing_queues_fail_to_consume_and_get(transport: Transport) -> None:
    name = _unique()
    with pytest.raises(TransportError, match="NOT_FOUND"):
        transport.consume(f"{name}.none", Inbox())
    with pytest.raises(TransportError, match="NOT_FOUND"):
        transport.get(f"{name}.none", timeout=0.2)
    transport.declare(_topology(name))
    transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x")).result(WAIT)
    assert transport.purge(f"{name}.q") == 1


def test_get_waits_at_most_its_timeout_and_purge_counts(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name))
    started = time.monotonic()
    assert transport.get(f"{name}.q", timeout=0.4) is None
    assert 0.3 <= time.monotonic() - started < 3
    assert transport.purge(f"{name}.q") == 0
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x") for _ in range(7)])
    held = _get(transport, f"{name}.q")
    assert transport.purge(f"{name}.q") == 6
    transport.nack(held, requeue=True)
    assert transport.purge(f"{name}.q") == 1


def test_a_full_reject_publish_queue_refuses_messages(transport: Transport) -> None:
    name = _unique()
    transport.declare(_topology(name, **{"x-max-length": 1, "x-overflow": "reject-publish"}))
    outcomes = [transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x")).exception(WAIT) for _ in range(3)]
    assert outcomes[0] is None
    assert isinstance(outcomes[-1], PublishError)
    assert 1 <= transport.purge(f"{name}.q") <= 2


def test_unsettled_deliveries_of_a_closed_transport_come_back(make: MakeTransport) -> None:
    closing, other = make(), make()
    name = _unique()
    other.declare(_topology(name))
    other.publish(OutgoingMessage(f"{name}.ex", "k", b"x", message_id="m")).result(WAIT)
    delivery = _get(closing, f"{name}.q")
    closing.close()
    closing.ack(delivery)
    closing.nack(delivery, requeue=False)
    again = _get(other, f"{name}.q")
    assert again.message_id == "m" and again.redelivered
    other.ack(again)


def test_permissions_refuse_with_access_refused(make: MakeTransport) -> None:
    admin = make()
    name = _unique()
    admin.declare(Topology(
        exchanges=(ExchangeSpec(f"{name}.ex"), ExchangeSpec(f"{name}.other")),
        queues=(QueueSpec(f"{name}.q"), QueueSpec(f"{name}.secret")),
        bindings=(Binding(f"{name}.ex", f"{name}.q"), Binding(f"{name}.ex", f"{name}.secret"),
                  Binding(f"{name}.other", f"{name}.q"))))
    limited = make(Permissions(configure="^$", write=rf"^{name}\.ex$", read=rf"^{name}\.q$"))
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        limited.declare(Topology(queues=(QueueSpec(f"{name}.new"),)))
    refused = limited.publish(OutgoingMessage(f"{name}.other", "k", b"x")).exception(WAIT)
    assert type(refused) is TransportError and "ACCESS_REFUSED" in str(refused)
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        limited.get(f"{name}.secret", timeout=0.2)
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        limited.consume(f"{name}.secret", Inbox())
    limited.publish(OutgoingMessage(f"{name}.ex", "k", b"allowed")).result(WAIT)
    delivery = _get(limited, f"{name}.q")
    assert delivery.body == b"allowed"
    limited.ack(delivery)
    assert admin.purge(f"{name}.secret") == 1


def test_close_is_idempotent_and_later_calls_fail(make: MakeTransport) -> None:
    transport = make()
    name = _unique()
    transport.declare(_topology(name))
    inbox = Inbox()
    transport.consume(f"{name}.q", inbox)
    with transport:
        pass
    transport.close()
    with pytest.raises(TransportError):
        transport.publish(OutgoingMessage(f"{name}.ex", "k", b"x")).result(WAIT)
    with pytest.raises(TransportError):
        transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x")])
    with pytest.raises(TransportError):
        transport.get(f"{name}.q", timeout=0.1)
    other = make()
    other.publish(OutgoingMessage(f"{name}.ex", "k", b"x")).result(WAIT)
    time.sleep(0.2)
    assert not inbox.items
    assert other.purge(f"{name}.q") == 1


def test_a_full_drop_head_queue_dead_letters_its_oldest(transport: Transport) -> None:
    name = _unique()
    transport.declare(_dead_letter_topology(name, **{"x-max-length": 2}))
    transport.publish_all([OutgoingMessage(f"{name}.ex", "k", b"x", message_id=str(i)) for i in range(3)])
    dead = _get(transport, f"{name}.dead")
    assert dead.message_id == "0" and dead.headers["x-death"][0]["reason"] == "maxlen"
    transport.ack(dead)
    assert sorted(d.message_id or "" for d in (_get(transport, f"{name}.q"), _get(transport, f"{name}.q"))) == [
        "1", "2"]


def _two_queues(name: str) -> Topology:
    """Queues `a` and `b`, routed by their own key from one exchange (as ingress routes by sender)."""
    return Topology(exchanges=(ExchangeSpec(f"{name}.ex", "topic"),),
                    queues=(QueueSpec(f"{name}.a", QUORUM), QueueSpec(f"{name}.b", QUORUM)),
                    bindings=(Binding(f"{name}.ex", f"{name}.a", "a"), Binding(f"{name}.ex", f"{name}.b", "b")))


def test_one_consumer_takes_several_queues_on_one_thread(transport: Transport) -> None:
    name = _unique()
    transport.declare(_two_queues(name))
    inbox = Inbox(transport)
    consumer = transport.consume([f"{name}.a", f"{name}.b"], inbox, prefetch=20)
    assert (consumer.queue, consumer.queues) == (f"{name}.a", (f"{name}.a", f"{name}.b"))
    transport.publish_all([OutgoingMessage(f"{name}.ex", key, key.encode(), message_id=f"{key}{i}")
                           for i in range(50) for key in ("a", "b")])
    inbox.wait(100)
    time.sleep(0.3)
    assert sorted(inbox.ids()) == sorted(f"{key}{i}" for i in range(50) for key in ("a", "b")), "each exactly once"
    assert all(d.queue == f"{name}.{d.body.decode()}" for d in inbox.items), "each delivery names its queue"
    assert set(inbox.threads) == {f"gel-consumer-{name}.a+1"}, "one handler thread for every queue"
    consumer.cancel()
    transport.publish_all([OutgoingMessage(f"{name}.ex", key, b"later") for key in ("a", "b")])
    time.sleep(0.3)
    assert len(inbox.items) == 100, "nothing after cancel"
    assert _drain(transport, f"{name}.a", 1) == ["later"] and _drain(transport, f"{name}.b", 1) == ["later"], (
        "everything delivered before the cancel was acked")


def test_prefetch_of_a_multi_queue_consumer_counts_per_queue_and_settling_works(transport: Transport) -> None:
    name = _unique()
    transport.declare(_two_queues(name))
    transport.publish_all([OutgoingMessage(f"{name}.ex", key, key.encode(), message_id=f"{key}{i}")
                           for i in range(3) for key in ("a", "b")])
    inbox = Inbox()
    consumer = transport.consume((f"{name}.a", f"{name}.b"), inbox, prefetch=1)
    inbox.wait(2)
    time.sleep(0.5)
    assert sorted(inbox.ids()) == ["a0", "b0"], "one unsettled delivery per queue, not one per consumer"
    first_a, first_b = sorted(inbox.items, key=lambda d: d.queue)
    transport.nack(first_b, requeue=True)
    transport.ack(first_a)
    settled = 2
    while settled < 7:
        for delivery in inbox.wait(settled + 1)[settled:]:
            transport.ack(delivery)
            settled += 1
    assert sorted(inbox.ids()) == ["a0", "a1", "a2", "b0", "b0", "b1", "b2"]
    again = [d for d in inbox.items if d.message_id == "b0"][1]
    assert again.redelivered and again.delivery_count == 1 and again.queue == f"{name}.b"
    transport.publish_all([OutgoingMessage(f"{name}.ex", key, b"held") for key in ("a", "b")])
    inbox.wait(9)
    consumer.cancel()
    assert _drain(transport, f"{name}.a", 1) == ["held"] and _drain(transport, f"{name}.b", 1) == ["held"], (
        "the unsettled deliveries of a cancelled consumer go back to their own queues")


def test_a_backlog_in_one_queue_does_not_hold_back_another(transport: Transport) -> None:
    """The fairness the gateway relies on: 200 waiting in `a`, 5 in `b`; `b`'s all arrive long before `a`'s
    backlog is drained, because each queue has its own prefetch window."""
    name = _unique()
    transport.declare(_two_queues(name))
    transport.publish_all([OutgoingMessage(f"{name}.ex", "a", b"a", message_id=f"a{i}") for i in range(200)])
    transport.publish_all([OutgoingMessage(f"{name}.ex", "b", b"b", message_id=f"b{i}") for i in range(5)])
    inbox = Inbox(transport)
    transport.consume([f"{name}.a", f"{name}.b"], inbox, prefetch=10)
    inbox.wait(205, timeout=30)
    order = inbox.ids()
    last_b = max(i for i, m in enumerate(order) if (m or "").startswith("b"))
    ahead = sum(1 for m in order[:last_b] if (m or "").startswith("a"))
    assert ahead < 100, f"{ahead} of a's 200 were delivered before b's 5: b waited behind a's backlog"
    assert sorted(m or "" for m in order if (m or "").startswith("b")) == [f"b{i}" for i in range(5)]


def test_one_missing_queue_fails_a_multi_queue_consume_and_leaves_the_others_alone(transport: Transport) -> None:
    name = _unique()
    transport.declare(_two_queues(name))
    transport.publish(OutgoingMessage(f"{name}.ex", "a", b"kept", message_id="kept")).result(WAIT)
    inbox = Inbox(transport)
    with pytest.raises(TransportError, match="NOT_FOUND"):
        transport.consume([f"{name}.a", f"{name}.none", f"{name}.b"], inbox)
    time.sleep(0.3)
    assert not inbox.items
    assert _drain(transport, f"{name}.a", 1) == ["kept"]
    with pytest.raises(ValueError):
        transport.consume([], inbox)
