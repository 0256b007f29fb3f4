"""The embedded transport: an in-process broker with RabbitMQ's semantics, for the quick start only.

`EmbeddedBroker` holds exchanges, queues and bindings in memory behind one lock; every `EmbeddedTransport` of the
process shares `default_broker()` unless it is given its own, so a gateway and its adapters running together see the
same queues. It imitates what the contract promises (`broker.transport.abc`): topic/direct/fanout routing, confirms
(futures resolved at once), `mandatory`, the `user_id` check, prefetch (per queue of a consumer, handed out
round-robin across its queues), requeue with `x-delivery-count`,
`x-delivery-limit`, dead-lettering with `x-death`, `x-max-length` with `x-overflow`, and optionally RabbitMQ-style
permissions (`ACCESS_REFUSED`). Nothing is persisted: every message is lost when the process ends.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from broker.logs import get_logger
from broker.transport.abc import (
    Delivery,
    OutgoingMessage,
    Permissions,
    PublishError,
    Topology,
    TransportError,
)
from broker.transport.worker import HandlerThread, consumer_label, queue_names

__all__ = ["EmbeddedBroker", "EmbeddedTransport", "default_broker", "topic_matches"]

_BUILTIN_EXCHANGES = {"": "direct", "amq.direct": "direct", "amq.topic": "topic", "amq.fanout": "fanout"}
_Access = Literal["configure", "write", "read"]


def _allows(permissions: Permissions | None, access: _Access, name: str) -> bool:
    if permissions is None:
        return True
    pattern: str = getattr(permissions, access)
    return pattern != "" and re.search(pattern, name) is not None


@dataclass(frozen=True, slots=True)
class _Message:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    correlation_id: str | None
    user_id: str | None
    reply_to: str | None
    headers: Mapping[str, Any]
    content_type: str
    delivery_count: int = 0
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class _Exchange:
    name: str
    type: str
    durable: bool = True


@dataclass(eq=False)
class _Queue:
    name: str
    arguments: dict[str, Any]
    durable: bool
    ready: deque[_Message] = field(default_factory=deque)
    consumers: list[_EmbeddedConsumer] = field(default_factory=list)
    cursor: int = 0


@dataclass(eq=False)
class _Token:
    """What a `Delivery.token` points at: the consumer (or the transport's `get`) holding it unsettled.
    `prefetch` bounds the unsettled deliveries of each queue, as RabbitMQ's per-consumer QoS does."""

    transport: EmbeddedTransport
    prefetch: int = 0
    unsettled: dict[int, tuple[_Queue, _Message]] = field(default_factory=dict)
    held: dict[int, int] = field(default_factory=dict)
    """Unsettled deliveries per queue (by `id` of the `_Queue`)."""

    def has_room(self, queue: _Queue) -> bool:
        return self.prefetch <= 0 or self.held.get(id(queue), 0) < self.prefetch

    def hold(self, tag: int, queue: _Queue, message: _Message) -> None:
        self.unsettled[tag] = (queue, message)
        self.held[id(queue)] = self.held.get(id(queue), 0) + 1

    def take(self, tag: int) -> tuple[_Queue, _Message] | None:
        held = self.unsettled.pop(tag, None)
        if held is not None:
            left = self.held.get(id(held[0]), 1) - 1
            if left > 0:
                self.held[id(held[0])] = left
            else:
                self.held.pop(id(held[0]), None)
        return held

    def take_all(self) -> dict[int, tuple[_Queue, _Message]]:
        held, self.unsettled, self.held = self.unsettled, {}, {}
        return held


def _words(key: str) -> list[str]:
    return key.split(".") if key else []


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ's topic rule: dot-separated words, `*` is exactly one word, `#` zero or more."""
    pattern_words, key_words = _words(pattern), _words(routing_key)

    def closure(states: set[int]) -> set[int]:
        pending, seen = list(states), set()
        while pending:
            i = pending.pop()
            if i not in seen:
                seen.add(i)
                if i < len(pattern_words) and pattern_words[i] == "#":
                    pending.append(i + 1)
        return seen

    states = closure({0})
    for word in key_words:
        following = set()
        for i in states:
            if i < len(pattern_words):
                if pattern_words[i] == "#":
                    following.add(i)
                elif pattern_words[i] in ("*", word):
                    following.add(i + 1)
        states = closure(following)
        if not states:
            return False
    return len(pattern_words) in states


class EmbeddedBroker:
    """Exchanges, queues and bindings of one process, guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._log = get_logger(transport="embedded")
        self.reset()

    def reset(self) -> None:
        """Forget everything; deliveries still held become harmless to settle."""
        with self._lock:
            self._exchanges = {name: _Exchange(name, kind) for name, kind in _BUILTIN_EXCHANGES.items()}
            self._queues: dict[str, _Queue] = {}
            self._bindings: dict[str, list[tuple[str, str]]] = {}
            self._changed.notify_all()

    def _declare(self, topology: Topology) -> None:
        with self._lock:
            for ex in topology.exchanges:
                current = self._exchanges.get(ex.name)
                if current is None:
                    self._exchanges[ex.name] = _Exchange(ex.name, ex.type, ex.durable)
                elif current.type != ex.type or current.durable != ex.durable:
                    arg, received, now = (("type", ex.type, current.type) if current.type != ex.type
                                          else ("durable", ex.durable, current.durable))
                    raise TransportError(
                        f"declarar la topología: PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange "
                        f"'{ex.name}': received {received!r} but current is {now!r}")
            for spec in topology.queues:
                arguments = dict(spec.arguments)
                existing = self._queues.get(spec.name)
                if existing is None:
                    self._queues[spec.name] = _Queue(spec.name, arguments, spec.durable)
                elif existing.arguments != arguments or existing.durable != spec.durable:
                    arg = next((k for k in sorted({*arguments, *existing.arguments})
                                if arguments.get(k) != existing.arguments.get(k)), "durable")
                    raise TransportError(
                        f"declarar la topología: PRECONDITION_FAILED - inequivalent arg '{arg}' for queue "
                        f"'{spec.name}': received {arguments.get(arg)!r} but current is "
                        f"{existing.arguments.get(arg)!r}")
            for binding in topology.bindings:
                if binding.exchange not in self._exchanges:
                    raise TransportError(f"declarar la topología: NOT_FOUND - no exchange '{binding.exchange}'")
                self._queue(binding.queue, "declarar la topología")
                bound = self._bindings.setdefault(binding.exchange, [])
                if (binding.queue, binding.routing_key) not in bound:
                    bound.append((binding.queue, binding.routing_key))

    def _queue(self, name: str, what: str) -> _Queue:
        found = self._queues.get(name)
        if found is None:
            raise TransportError(f"{what}: NOT_FOUND - no queue '{name}'")
        return found

    def _targets(self, exchange: _Exchange, routing_key: str) -> list[_Queue]:
        if exchange.name == "":
            names = [routing_key]
        else:
            names = [queue for queue, key in self._bindings.get(exchange.name, ())
                     if exchange.type == "fanout"
                     or (exchange.type == "direct" and key == routing_key)
                     or (exchange.type == "topic" and topic_matches(key, routing_key))]
        return [self._queues[name] for name in dict.fromkeys(names) if name in self._queues]

    def _route(self, message: _Message, *, mandatory: bool) -> PublishError | None:
        """Enqueue on every matching queue; the error the publisher gets, if any."""
        exchange = self._exchanges.get(message.exchange)
        if exchange is None:
            return PublishError(f"publicación rechazada: NOT_FOUND - no exchange '{message.exchange}'")
        targets = self._targets(exchange, message.routing_key)
        if not targets and mandatory:
            return PublishError(f"mensaje no enrutable: ninguna cola recibe {message.exchange!r}/"
                                f"{message.routing_key!r} (312 NO_ROUTE)")
        refused = []
        for target in targets:
            limit = target.arguments.get("x-max-length")
            if limit is not None and len(target.ready) >= int(limit):
                if target.arguments.get("x-overflow") == "reject-publish":
                    refused.append(target.name)
                    continue
                self._dead_letter(target, target.ready.popleft(), "maxlen")
            target.ready.append(message)
            self._dispatch(target)
        self._changed.notify_all()
        if refused:
            return PublishError(f"mensaje rechazado (basic.nack): cola llena {', '.join(refused)}")
        return None

    def _dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        exchange = queue.arguments.get("x-dead-letter-exchange")
        if exchange is None:
            return
        headers = dict(message.headers)
        deaths = [dict(d) for d in headers.get("x-death", [])]
        same = next((d for d in deaths if d.get("queue") == queue.name and d.get("reason") == reason), None)
        if same is not None:
            if reason != "rejected":
                self._log.warning("embebido_ciclo_de_mensajes_muertos", cola=queue.name, motivo=reason)
                return
            deaths.remove(same)
            same["count"] = int(same.get("count", 0)) + 1
            same["time"] = datetime.now(UTC).replace(microsecond=0)
        else:
            same = {"count": 1, "reason": reason, "queue": queue.name, "time": datetime.now(UTC).replace(microsecond=0),
                    "exchange": message.exchange, "routing-keys": [message.routing_key]}
        headers["x-death"] = [same, *deaths]
        headers.setdefault("x-first-death-exchange", message.exchange)
        headers.setdefault("x-first-death-queue", queue.name)
        headers.setdefault("x-first-death-reason", reason)
        routing_key = queue.arguments.get("x-dead-letter-routing-key", message.routing_key)
        dead = replace(message, exchange=exchange, routing_key=routing_key, headers=headers, delivery_count=0,
                       redelivered=False)
        if self._route(dead, mandatory=False) is not None:
            self._log.warning("embebido_mensaje_muerto_descartado", cola=queue.name, intercambio=exchange)

    def _dispatch(self, queue: _Queue, *, limit: int | None = None) -> int:
        """Hand ready messages to the queue's consumers that have room, round-robin; how many were handed."""
        handed = 0
        while queue.ready and queue.consumers and (limit is None or handed < limit):
            count = len(queue.consumers)
            chosen = next((queue.consumers[(queue.cursor + i) % count] for i in range(count)
                           if queue.consumers[(queue.cursor + i) % count].token.has_room(queue)), None)
            if chosen is None:
                break
            queue.cursor = (queue.consumers.index(chosen) + 1) % count
            chosen.submit(self._hand_out(queue, queue.ready.popleft(), chosen.token))
            handed += 1
        return handed

    def _dispatch_round_robin(self, queues: Sequence[_Queue]) -> None:
        """One message from each queue in turn while any has one to give: a new consumer of several queues
        gets their backlogs interleaved, not one queue's whole backlog first."""
        active = list(queues)
        while active:
            active = [queue for queue in active if self._dispatch(queue, limit=1)]

    def _hand_out(self, queue: _Queue, message: _Message, token: _Token) -> Delivery:
        tag = next(token.transport._tags)
        token.hold(tag, queue, message)
        headers = copy.deepcopy(dict(message.headers))
        if message.delivery_count:
            headers["x-delivery-count"] = message.delivery_count
        return Delivery(
            queue=queue.name, exchange=message.exchange, routing_key=message.routing_key, body=message.body,
            message_id=message.message_id, correlation_id=message.correlation_id, user_id=message.user_id,
            reply_to=message.reply_to, headers=headers, redelivered=message.redelivered,
            delivery_count=message.delivery_count, delivery_tag=tag, token=token)

    def _settle(self, token: _Token, tag: int, requeue: bool | None) -> None:
        with self._lock:
            held = token.take(tag)
            if held is None:
                return
            queue, message = held
            if self._queues.get(queue.name) is not queue:
                return
            if requeue:
                self._give_back(queue, [message])
            elif requeue is False:
                self._dead_letter(queue, message, "rejected")
            self._dispatch(queue)

    def _give_back(self, queue: _Queue, messages: Sequence[_Message]) -> None:
        """Return messages to the head of their queue in order, each counted as delivered once more."""
        limit = queue.arguments.get("x-delivery-limit")
        for message in reversed(messages):
            returned = replace(message, delivery_count=message.delivery_count + 1, redelivered=True)
            if limit is not None and returned.delivery_count > int(limit):
                self._dead_letter(queue, returned, "delivery_limit")
            else:
                queue.ready.appendleft(returned)
        self._changed.notify_all()

    def _release(self, token: _Token) -> None:
        with self._lock:
            held = token.take_all()
            by_queue: dict[int, tuple[_Queue, list[_Message]]] = {}
            for _, (queue, message) in sorted(held.items()):
                by_queue.setdefault(id(queue), (queue, []))[1].append(message)
            for queue, messages in by_queue.values():
                if self._queues.get(queue.name) is queue:
                    self._give_back(queue, messages)
                    self._dispatch(queue)

    def _add_consumer(self, consumer: _EmbeddedConsumer) -> None:
        with self._lock:
            queues = [self._queue(name, f"consumir de {name}") for name in consumer.queues]
            for queue in queues:
                queue.consumers.append(consumer)
            self._dispatch_round_robin(queues)

    def _remove_consumer(self, consumer: _EmbeddedConsumer) -> None:
        with self._lock:
            for queue in self._queues.values():
                if consumer in queue.consumers:
                    queue.consumers.remove(consumer)
            self._release(consumer.token)

    def _pull(self, name: str, token: _Token, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                queue = self._queue(name, f"leer de {name}")
                if queue.ready:
                    return self._hand_out(queue, queue.ready.popleft(), token)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def _purge(self, name: str) -> int:
        with self._lock:
            queue = self._queue(name, f"vaciar la cola {name}")
            count = len(queue.ready)
            queue.ready.clear()
            return count

    def _delete_queue(self, name: str) -> None:
        with self._lock:
            if self._queues.pop(name, None) is None:
                return
            for exchange, bound in self._bindings.items():
                self._bindings[exchange] = [(queue, key) for queue, key in bound if queue != name]
            self._changed.notify_all()


_DEFAULT = EmbeddedBroker()


def default_broker() -> EmbeddedBroker:
    """The broker every `EmbeddedTransport` of this process shares unless given another."""
    return _DEFAULT


class _EmbeddedConsumer:
    """A consumer of one or more queues: its handler and the worker thread that calls it in delivery order."""

    def __init__(self, transport: EmbeddedTransport, queues: tuple[str, ...], handler: Callable[[Delivery], None],
                 prefetch: int) -> None:
        self.queues = queues
        self.queue = queues[0]
        self.handler = handler
        self.token = _Token(transport, prefetch)
        self.cancelled = False
        self._transport = transport
        self._worker = HandlerThread(
            consumer_label(queues), handler, log=transport._log, requeue=lambda d: transport.nack(d, requeue=True),
            current=lambda d: not self.cancelled and d.delivery_tag in self.token.unsettled)

    def cancel(self) -> None:
        """Stop receiving; unsettled deliveries go back to the queue."""
        self._transport._cancel_consumer(self)

    def submit(self, delivery: Delivery) -> None:
        self._worker.submit(delivery)

    def stop_worker(self, timeout: float = 10.0) -> None:
        self._worker.stop(timeout)


class EmbeddedTransport:
    """The `Transport` contract in process (see `broker.transport.abc`), authenticated as `user`."""

    def __init__(self, user: str = "guest", *, broker: EmbeddedBroker | None = None,
                 permissions: Permissions | None = None) -> None:
        self.user = user
        self.broker = broker if broker is not None else default_broker()
        self.permissions = permissions
        self._tags = itertools.count(1)
        self._pull_token = _Token(self)
        self._consumers: list[_EmbeddedConsumer] = []
        self._closed = False
        self._close_lock = threading.Lock()
        self._log = get_logger(transport="embedded", usuario=user)

    def declare(self, topology: Topology) -> None:
        self._ensure_open()
        what = "declarar la topología"
        for ex in topology.exchanges:
            self._check("configure", "exchange", ex.name, what)
        for spec in topology.queues:
            self._check("configure", "queue", spec.name, what)
        for binding in topology.bindings:
            self._check("write", "queue", binding.queue, what)
            self._check("read", "exchange", binding.exchange, what)
        self.broker._declare(topology)

    def publish(self, message: OutgoingMessage) -> Future[None]:
        future: Future[None] = Future()
        error: TransportError | None
        if self._closed:
            error = TransportError("el transporte embebido está cerrado")
        elif not _allows(self.permissions, "write", message.exchange or "amq.default"):
            error = TransportError(f"publicación rechazada: {self._refusal('exchange', message.exchange)}")
        elif message.user_id is not None and message.user_id != self.user:
            error = PublishError(f"publicación rechazada: PRECONDITION_FAILED - user_id property set to "
                                 f"'{message.user_id}' but authenticated user was '{self.user}'")
        else:
            stored = _Message(message.exchange, message.routing_key, message.body, message.message_id,
                              message.correlation_id, message.user_id, message.reply_to,
                              copy.deepcopy(dict(message.headers)), message.content_type)
            with self.broker._lock:
                error = self.broker._route(stored, mandatory=message.mandatory)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return future

    def publish_all(self, messages: Sequence[OutgoingMessage], *, timeout: float = 30.0) -> None:
        if not messages:
            return
        if self._closed:
            raise TransportError("el transporte embebido está cerrado")
        errors = [e for e in (self.publish(m).exception() for m in messages) if e is not None]
        if len(errors) > 1 and isinstance(errors[0], TransportError):
            raise type(errors[0])(f"{errors[0]} (y {len(errors) - 1} mensajes más fallaron)") from errors[0]
        if errors:
            raise errors[0]

    def consume(self, queue: str | Sequence[str], handler: Callable[[Delivery], None], *,
                prefetch: int = 100) -> _EmbeddedConsumer:
        queues = queue_names(queue)
        self._ensure_open()
        for name in queues:
            self._check("read", "queue", name, f"consumir de {name}")
        consumer = _EmbeddedConsumer(self, queues, handler, prefetch)
        try:
            self.broker._add_consumer(consumer)
        except TransportError:
            consumer.cancelled = True
            consumer.stop_worker()
            raise
        self._consumers.append(consumer)
        return consumer

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, None)

    def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        self._settle(delivery, requeue)

    def get(self, queue: str, *, timeout: float = 5.0) -> Delivery | None:
        self._ensure_open()
        self._check("read", "queue", queue, f"leer de {queue}")
        return self.broker._pull(queue, self._pull_token, timeout)

    def purge(self, queue: str) -> int:
        self._ensure_open()
        self._check("read", "queue", queue, f"vaciar la cola {queue}")
        return self.broker._purge(queue)

    def delete_queue(self, queue: str) -> None:
        self._ensure_open()
        self._check("configure", "queue", queue, f"eliminar la cola {queue}")
        self.broker._delete_queue(queue)

    def close(self) -> None:
        """Cancel consumers and give back every unsettled delivery; later calls fail with `TransportError`."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        for consumer in list(self._consumers):
            self._cancel_consumer(consumer)
        self.broker._release(self._pull_token)
        self._log.info("embebido_cerrado")

    def __enter__(self) -> EmbeddedTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _settle(self, delivery: Delivery, requeue: bool | None) -> None:
        token = delivery.token
        if isinstance(token, _Token) and token.transport is self:
            self.broker._settle(token, delivery.delivery_tag, requeue)

    def _cancel_consumer(self, consumer: _EmbeddedConsumer) -> None:
        if consumer.cancelled:
            return
        consumer.cancelled = True
        self.broker._remove_consumer(consumer)
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)
        consumer.stop_worker()

    def _ensure_open(self) -> None:
        if self._closed:
            raise TransportError("el transporte embebido está cerrado")

    def _refusal(self, kind: str, name: str) -> str:
        return f"ACCESS_REFUSED - access to {kind} '{name or 'amq.default'}' refused for user '{self.user}'"

    def _check(self, access: _Access, kind: str, name: str, what: str) -> None:
        if not _allows(self.permissions, access, name):
            raise TransportError(f"{what}: {self._refusal(kind, name)}")
