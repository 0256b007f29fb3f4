"""The transport contract: every interface in one place (as aio-pika's abc.py).

Two implementations honour it and pass one conformance suite (tests/integration/test_transport_conformance.py):
`RabbitMQTransport` (pika; production and integration tests) and `EmbeddedTransport` (in-process; the quick
start only). The semantics are RabbitMQ's, so the embedded one is a faithful stand-in, not a different design:

- exchanges (`direct`, `topic`, `fanout`) route to queues through bindings; publishing to a missing exchange
  or, with `mandatory`, to no queue at all fails the publish;
- `publish` returns a future resolved when the broker has taken responsibility for the message (publisher
  confirm); many publishes may be in flight at once;
- deliveries must be settled: `ack`, or `nack(requeue=True)` (redelivered later, `redelivered=True`), or
  `nack(requeue=False)` (dead-lettered through the queue's `x-dead-letter-exchange`, with an `x-death`
  header naming the reason); unsettled deliveries of a closed consumer or connection are redelivered;
- a queue's `x-delivery-limit` dead-letters a message delivered more times than that (quorum-queue rule);
  `delivery_count` counts previous deliveries (RabbitMQ's `x-delivery-count`);
- `user_id`, when set on a message, must equal the transport's authenticated user, or the publish fails
  (RabbitMQ checks it; the embedded transport imitates it).

Handlers run on a thread owned by the transport, one per consumer, in delivery order; they may settle the
delivery later from any thread (for example when the publish it caused is confirmed).

One consumer may take several queues (the gateway takes every entity's ingress queue): one channel, one
handler thread, and `prefetch` unsettled deliveries per queue (RabbitMQ's per-consumer QoS; quorum queues have
no global QoS), so a long backlog in one queue never holds back the next message of another. A queue deleted
under a multi-queue consumer is left out (and logged) so the others keep flowing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Binding",
    "Consumer",
    "Delivery",
    "ExchangeSpec",
    "OutgoingMessage",
    "Permissions",
    "PublishError",
    "QueueSpec",
    "Topology",
    "Transport",
    "TransportError",
]

ExchangeType = Literal["direct", "topic", "fanout"]


class TransportError(Exception):
    """The broker is unreachable or the operation could not complete; usually transient (retry)."""


class PublishError(TransportError):
    """The broker refused a message: nacked, unroutable with `mandatory`, no such exchange, or a `user_id`
    that is not the connection's user."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """RabbitMQ's three permission regexes of a user on a vhost (searched, not anchored; empty allows nothing)."""

    configure: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: ExchangeType = "topic"
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue. `arguments` are RabbitMQ's (`x-queue-type`, `x-dead-letter-exchange`, `x-delivery-limit`, …)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    durable: bool = True


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str = "#"


@dataclass(frozen=True, slots=True)
class Topology:
    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[Binding, ...] = ()


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """What to publish. Messages are persistent; `message_id` is the envelope's idMensaje."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_type: str = "application/xml"
    mandatory: bool = True


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to a consumer; settle it with `Transport.ack` / `Transport.nack`."""

    queue: str
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    correlation_id: str | None
    user_id: str | None
    reply_to: str | None
    headers: Mapping[str, Any]
    redelivered: bool
    delivery_count: int
    delivery_tag: int
    token: Any = field(default=None, compare=False, repr=False)
    """Implementation detail identifying the channel/consumer the delivery came from."""


@runtime_checkable
class Consumer(Protocol):
    queue: str
    """The first (or only) queue."""
    queues: tuple[str, ...]

    def cancel(self) -> None:
        """Stop receiving; unsettled deliveries go back to the queue."""
        ...


@runtime_checkable
class Transport(Protocol):
    user: str

    def declare(self, topology: Topology) -> None:
        """Create exchanges, queues and bindings (idempotent)."""
        ...

    def publish(self, message: OutgoingMessage) -> Future[None]:
        """Start publishing; the future resolves on the broker's confirm or fails with `PublishError`."""
        ...

    def publish_all(self, messages: Sequence[OutgoingMessage], *, timeout: float = 30.0) -> None:
        """Publish many with all confirms in flight at once; return when every one is confirmed."""
        ...

    def consume(self, queue: str | Sequence[str], handler: Callable[[Delivery], None], *,
                prefetch: int = 100) -> Consumer:
        """Deliver from one queue, or from several on one channel and one handler thread (`prefetch` per
        queue); a missing queue fails the call with `TransportError`."""
        ...

    def ack(self, delivery: Delivery) -> None:
        ...

    def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        ...

    def get(self, queue: str, *, timeout: float = 5.0) -> Delivery | None:
        """Pull one message (tests and tools); None when none arrives within `timeout`."""
        ...

    def purge(self, queue: str) -> int:
        ...

    def delete_queue(self, queue: str) -> None:
        ...

    def close(self) -> None:
        """Stop consumers, wait for in-flight confirms, close the connection."""
        ...
