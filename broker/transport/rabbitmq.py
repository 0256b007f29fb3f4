"""The RabbitMQ transport: one pika `SelectConnection` driven by a dedicated IO thread.

Every public method may be called from any thread: work is marshalled onto the IO loop with
`add_callback_threadsafe`, and callers wait on a `Future` only where the contract says they must. Publishing uses
one confirm-mode channel whose confirms stay in flight; each consumer has its own channel (manual acks) with one
`basic.consume` per queue (per-consumer prefetch) and its own worker thread that calls the handler in delivery
order. A dropped connection is re-established with exponential backoff, and the consumers with it; publishes that
were unconfirmed at the drop fail with `TransportError` (the caller republishes, receivers are idempotent by
idMensaje).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote, urlparse

import pika
from pika import spec
from pika.adapters.select_connection import IOLoop
from pika.exceptions import ChannelClosed, ChannelClosedByBroker, ConnectionClosed

from broker.logs import get_logger
from broker.transport.abc import (
    Delivery,
    OutgoingMessage,
    PublishError,
    Topology,
    TransportError,
)
from broker.transport.worker import HandlerThread, consumer_label, queue_names

__all__ = ["RabbitMQTransport"]

_ACCESS_REFUSED = 403
_NOT_FOUND = 404
_RECONNECT_WAIT = 5.0
"""How long a publish or a blocking call waits for a lost connection to come back before failing."""
_OP_TIMEOUT = 30.0
_CLOSE_CONFIRM_WAIT = 10.0
_INITIAL_DELAY = 0.5


_Step = Callable[[Any, Callable[[Any], None]], None]
"""One RPC on a channel: `step(channel, done)` calls `done(frame)` when the broker answers."""


def _rpc(method: str, channel: Any, done: Callable[[Any], None], **arguments: Any) -> None:
    getattr(channel, method)(callback=done, **arguments)


def _settle(future: Future[Any], error: BaseException | None = None, result: Any = None) -> None:
    if future.done():
        return
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:  # cancelled or settled by another path meanwhile
        pass


def _describe(reason: BaseException) -> tuple[int, str]:
    if isinstance(reason, ChannelClosed | ConnectionClosed):
        return reason.reply_code, reason.reply_text
    return 0, repr(reason)


def _channel_error(reason: BaseException, what: str, *, publish: bool) -> TransportError:
    """Map a channel's close reason to the contract's exceptions, keeping the broker's reply text."""
    code, text = _describe(reason)
    message = f"{what}: RabbitMQ cerró el canal ({code} {text})"
    if publish and isinstance(reason, ChannelClosedByBroker) and code != _ACCESS_REFUSED:
        return PublishError(message)
    return TransportError(message)


@dataclass(eq=False)
class _ChannelRef:
    """What a `Delivery.token` points at: the channel it came on and its still-unsettled delivery tags; on a
    consumer's channel also which queue each consumer tag reads and which `basic.consume` awaits its answer."""

    channel: Any
    unsettled: set[int] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)
    subscribing: str | None = None

    def alive(self) -> bool:
        return bool(self.channel.is_open)


@dataclass(eq=False, slots=True)
class _Pending:
    future: Future[None]
    exchange: str
    routing_key: str
    message_id: str | None
    body: bytes
    returned: bool = False


@dataclass(eq=False)
class _PublishChannel:
    channel: Any
    pending: dict[int, _Pending] = field(default_factory=dict)
    """Unconfirmed publishes by delivery tag, in publishing order."""
    sequence: int = 0
    ready: bool = False


class _RabbitConsumer:
    """A consumer of one or more queues: its handler, its worker thread, and the channel currently carrying
    it (if any)."""

    def __init__(self, transport: RabbitMQTransport, queues: tuple[str, ...], handler: Callable[[Delivery], None],
                 prefetch: int) -> None:
        self.queues = queues
        self.queue = queues[0]
        self.handler = handler
        self.prefetch = prefetch
        self.ref: _ChannelRef | None = None
        self.cancelled = False
        self.started: Future[None] = Future()
        self.early: list[Delivery] | None = []
        """Deliveries of the queues already subscribed while the others still are: handed over only once
        every queue is consumed, so a `consume` that fails never calls the handler."""
        self._transport = transport
        self._worker = HandlerThread(
            consumer_label(queues), handler, log=transport._log, requeue=lambda d: transport.nack(d, requeue=True),
            current=lambda d: d.token.alive())  # a dead channel's deliveries come again on the new one

    @property
    def label(self) -> str:
        return consumer_label(self.queues)

    def cancel(self) -> None:
        """Stop receiving; unsettled deliveries go back to the queue."""
        self._transport._cancel_consumer(self)

    def submit(self, delivery: Delivery) -> None:
        if self.early is not None:
            self.early.append(delivery)
        else:
            self._worker.submit(delivery)

    def release_early(self) -> None:
        early, self.early = self.early or [], None
        for delivery in early:
            self._worker.submit(delivery)

    def stop_worker(self, timeout: float = 10.0) -> None:
        self._worker.stop(timeout)


class RabbitMQTransport:
    """The `Transport` contract over RabbitMQ (see `broker.transport.abc`)."""

    def __init__(self, url: str, *, user_label: str | None = None, heartbeat: int = 30,
                 reconnect_max_delay: float = 10.0) -> None:
        parsed = urlparse(url)
        self.user: str = unquote(parsed.username or "guest")
        self.label = user_label or f"gel:{self.user}"
        """The AMQP `connection_name` (client property), as `rabbitmqctl list_connections` shows it."""
        self._parameters = pika.URLParameters(url)
        self._parameters.heartbeat = heartbeat
        self._parameters.connection_attempts = 1
        self._parameters.client_properties = {"connection_name": self.label}
        self._max_delay = max(reconnect_max_delay, _INITIAL_DELAY)
        self._log = get_logger(transport="rabbitmq", conexion=self.label, host=parsed.hostname)

        self._ioloop = IOLoop()
        self._connection: Any = None
        self._publisher: _PublishChannel | None = None
        self._backlog: list[tuple[OutgoingMessage, Future[None], float]] = []
        self._backlog_timer: Any = None
        self._reconnect_timer: Any = None
        self._delay = _INITIAL_DELAY
        self._consumers: list[_RabbitConsumer] = []
        self._get_ref: _ChannelRef | None = None
        self._get_waiter: Future[Delivery | None] | None = None
        self._get_queue = ""
        self._get_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False
        self._closing = False
        self._ever_connected = False
        self._connected = threading.Event()
        self._first_attempt: Future[None] = Future()

        self._thread = threading.Thread(target=self._run_loop, name=f"gel-amqp-io-{self.label}", daemon=True)
        self._ioloop.add_callback_threadsafe(self._connect)
        self._thread.start()
        try:
            self._first_attempt.result(timeout=_OP_TIMEOUT)
        except BaseException as exc:
            self._ioloop.add_callback_threadsafe(self._stop_loop)
            self._thread.join(5)
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"no fue posible conectar con RabbitMQ: {exc!r}") from exc

    # ------------------------------------------------------------------ public API

    def declare(self, topology: Topology) -> None:
        """Create exchanges, queues and bindings (idempotent); mismatched arguments raise `TransportError`."""
        steps: list[_Step] = []
        for ex in topology.exchanges:
            steps.append(partial(_rpc, "exchange_declare", exchange=ex.name, exchange_type=ex.type,
                                 durable=ex.durable))
        for q in topology.queues:
            steps.append(partial(_rpc, "queue_declare", queue=q.name, durable=q.durable,
                                 arguments=dict(q.arguments)))
        for b in topology.bindings:
            steps.append(partial(_rpc, "queue_bind", queue=b.queue, exchange=b.exchange, routing_key=b.routing_key))
        if steps:
            self._on_temporary_channel(steps, "declarar la topología")

    def publish(self, message: OutgoingMessage) -> Future[None]:
        future: Future[None] = Future()
        if self._closed:
            future.set_exception(TransportError("el transporte RabbitMQ está cerrado"))
            return future
        self._call(lambda: self._publish_now([(message, future)]))
        return future

    def publish_all(self, messages: Sequence[OutgoingMessage], *, timeout: float = 30.0) -> None:
        if not messages:
            return
        if self._closed:
            raise TransportError("el transporte RabbitMQ está cerrado")
        self._refuse_io_thread()
        batch: list[tuple[OutgoingMessage, Future[None]]] = [(m, Future()) for m in messages]
        self._call(lambda: self._publish_now(batch))
        futures = [f for _, f in batch]
        _, not_done = wait(futures, timeout=timeout)
        if not_done:
            raise TransportError(f"{len(not_done)} de {len(futures)} mensajes sin confirmar tras {timeout} s")
        for future in futures:
            error = future.exception()
            if error is not None:
                failed = sum(1 for f in futures if f.exception() is not None)
                if failed > 1 and isinstance(error, TransportError):
                    raise type(error)(f"{error} (y {failed - 1} mensajes más fallaron)") from error
                raise error

    def consume(self, queue: str | Sequence[str], handler: Callable[[Delivery], None], *,
                prefetch: int = 100) -> _RabbitConsumer:
        queues = queue_names(queue)
        self._ensure_usable()
        consumer = _RabbitConsumer(self, queues, handler, prefetch)
        self._call(lambda: self._add_consumer(consumer))
        try:
            consumer.started.result(timeout=_OP_TIMEOUT)
        except BaseException as exc:
            consumer.cancelled = True
            self._call(lambda: self._drop_consumer(consumer))
            consumer.stop_worker()
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"no fue posible consumir de {consumer.label}: {exc!r}") from exc
        return consumer

    def ack(self, delivery: Delivery) -> None:
        self._call(lambda: self._settle_delivery(delivery, None))

    def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        self._call(lambda: self._settle_delivery(delivery, requeue))

    def get(self, queue: str, *, timeout: float = 5.0) -> Delivery | None:
        deadline = time.monotonic() + timeout
        with self._get_lock:
            while True:
                self._ensure_usable()
                result: Future[Delivery | None] = Future()
                self._call(partial(self._basic_get, queue, result))
                delivery = self._wait(result, _OP_TIMEOUT, f"leer de {queue}")
                if delivery is not None:
                    return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                time.sleep(min(0.05, remaining))

    def purge(self, queue: str) -> int:
        frame = self._on_temporary_channel(
            [partial(_rpc, "queue_purge", queue=queue)], f"vaciar la cola {queue}")
        return int(frame.method.message_count)

    def delete_queue(self, queue: str) -> None:
        self._on_temporary_channel(
            [partial(_rpc, "queue_delete", queue=queue)], f"eliminar la cola {queue}")

    def close(self) -> None:
        """Cancel consumers, wait (bounded) for in-flight confirms, close the connection, join the IO thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        for consumer in list(self._consumers):
            with contextlib.suppress(TransportError):
                self._cancel_consumer(consumer)
        if threading.current_thread() is not self._thread:
            in_flight: Future[list[Future[None]]] = Future()
            self._call(lambda: _settle(in_flight, result=self._in_flight()))
            with contextlib.suppress(Exception):
                wait(in_flight.result(timeout=5), timeout=_CLOSE_CONFIRM_WAIT)
        self._call(self._shutdown)
        if threading.current_thread() is not self._thread:
            self._thread.join(15)
            if not self._thread.is_alive():
                self._ioloop.close()
        self._log.info("rabbitmq_cerrado")

    def __enter__(self) -> RabbitMQTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ caller-side helpers

    def _call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the IO thread; an exception is logged, never allowed to kill the loop."""

        def guarded() -> None:
            try:
                fn()
            except Exception:
                self._log.exception("rabbitmq_callback_fallo")

        self._ioloop.add_callback_threadsafe(guarded)

    def _refuse_io_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("llamada bloqueante desde el hilo de E/S de RabbitMQ (use publish/ack/nack)")

    def _ensure_usable(self) -> None:
        if self._closed:
            raise TransportError("el transporte RabbitMQ está cerrado")
        self._refuse_io_thread()
        if not self._connected.wait(_RECONNECT_WAIT):
            raise TransportError(f"sin conexión con RabbitMQ tras esperar {_RECONNECT_WAIT} s")

    def _wait(self, future: Future[Any], timeout: float, what: str) -> Any:
        try:
            return future.result(timeout=timeout)
        except TimeoutError as exc:
            raise TransportError(f"{what}: RabbitMQ no respondió en {timeout} s") from exc

    def _on_temporary_channel(self, steps: list[_Step], what: str) -> Any:
        """Run RPCs one after another on a fresh channel, then close it; a broker error closes it first."""
        self._ensure_usable()
        result: Future[Any] = Future()

        def start() -> None:
            connection = self._connection
            if connection is None or not connection.is_open:
                _settle(result, TransportError(f"{what}: sin conexión con RabbitMQ"))
                return
            remaining = iter(steps)

            def on_close(_channel: Any, reason: BaseException) -> None:
                _settle(result, _channel_error(reason, what, publish=False))

            def step(channel: Any, frame: Any) -> None:
                step_fn = next(remaining, None)
                if step_fn is None:
                    _settle(result, result=frame)
                    channel.close()
                    return
                step_fn(channel, lambda f: step(channel, f))

            def on_open(channel: Any) -> None:
                channel.add_on_close_callback(on_close)
                step(channel, None)

            try:
                connection.channel(on_open_callback=on_open)
            except Exception as exc:
                _settle(result, TransportError(f"{what}: {exc!r}"))

        self._call(start)
        return self._wait(result, _OP_TIMEOUT, what)

    # ------------------------------------------------------------------ IO thread: connection

    def _run_loop(self) -> None:
        try:
            self._ioloop.start()
        except Exception:
            self._log.exception("rabbitmq_bucle_fallo")
            _settle(self._first_attempt, TransportError("el bucle de E/S de RabbitMQ falló"))

    def _stop_loop(self) -> None:
        self._ioloop.stop()

    def _connect(self) -> None:
        self._reconnect_timer = None
        if self._closing:
            return
        try:
            self._connection = pika.SelectConnection(
                self._parameters, on_open_callback=self._on_open, on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed, custom_ioloop=self._ioloop)
        except Exception as exc:
            self._on_open_error(None, exc)

    def _on_open(self, connection: Any) -> None:
        self._delay = _INITIAL_DELAY
        event = "rabbitmq_reconectado" if self._ever_connected else "rabbitmq_conectado"
        self._log.info(event, usuario=self.user)
        self._open_publisher()
        for consumer in self._consumers:
            if not consumer.cancelled:
                self._open_consumer(consumer)

    def _on_open_error(self, _connection: Any, error: BaseException) -> None:
        self._connection = None
        if self._closing:
            self._ioloop.stop()
            return
        if not self._ever_connected:
            _settle(self._first_attempt, TransportError(f"no fue posible conectar con RabbitMQ: {error!r}"))
            self._ioloop.stop()
            return
        self._log.info("rabbitmq_reconexion_fallida", error=repr(error))
        self._schedule_reconnect()

    def _on_closed(self, connection: Any, reason: BaseException) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._connected.clear()
        self._fail_publisher(TransportError(f"conexión con RabbitMQ perdida antes de la confirmación: {reason!r}"))
        self._get_ref = None
        if self._get_waiter is not None:
            _settle(self._get_waiter, TransportError(f"conexión con RabbitMQ perdida: {reason!r}"))
            self._get_waiter = None
        for consumer in self._consumers:
            consumer.ref = None
        if self._closing or not self._ever_connected:
            self._fail_backlog(TransportError("el transporte RabbitMQ está cerrado"))
            _settle(self._first_attempt, TransportError(f"conexión con RabbitMQ cerrada: {reason!r}"))
            self._ioloop.stop()
            return
        self._log.info("rabbitmq_desconectado", motivo=repr(reason))
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._closing or self._reconnect_timer is not None:
            return
        delay = self._delay * random.uniform(0.75, 1.25)
        self._delay = min(self._delay * 2, self._max_delay)
        self._log.info("rabbitmq_reconectando", en_segundos=round(delay, 2))
        self._reconnect_timer = self._ioloop.call_later(delay, self._connect)

    def _shutdown(self) -> None:
        self._closing = True
        if self._reconnect_timer is not None:
            self._ioloop.remove_timeout(self._reconnect_timer)
            self._reconnect_timer = None
        self._fail_backlog(TransportError("el transporte RabbitMQ está cerrado"))
        connection = self._connection
        if connection is not None and (connection.is_open or connection.is_opening):
            try:
                connection.close()
                return
            except Exception:
                self._log.exception("rabbitmq_cierre_fallo")
        self._fail_publisher(TransportError("el transporte RabbitMQ está cerrado"))
        self._ioloop.stop()

    # ------------------------------------------------------------------ IO thread: publishing

    def _open_publisher(self) -> None:
        connection = self._connection
        if connection is None or not connection.is_open or self._closing:
            return

        def on_open(channel: Any) -> None:
            state = _PublishChannel(channel)
            self._publisher = state
            channel.add_on_close_callback(lambda ch, reason: self._on_publisher_closed(state, reason))
            channel.add_on_return_callback(lambda ch, method, props, body: self._on_return(state, method, body,
                                                                                           props))
            channel.confirm_delivery(lambda frame: self._on_confirm(state, frame),
                                     callback=lambda _frame: self._on_publisher_ready(state))

        connection.channel(on_open_callback=on_open)

    def _on_publisher_ready(self, state: _PublishChannel) -> None:
        if state is not self._publisher:
            return
        state.ready = True
        first = not self._ever_connected
        self._ever_connected = True
        self._connected.set()
        if first:
            _settle(self._first_attempt)
        backlog, self._backlog = self._backlog, []
        self._publish_now([(message, future) for message, future, _ in backlog])

    def _on_publisher_closed(self, state: _PublishChannel, reason: BaseException) -> None:
        if state is not self._publisher:
            return
        self._publisher = None
        error = _channel_error(reason, "publicación rechazada", publish=True)
        if isinstance(reason, ChannelClosedByBroker):
            self._log.warning("rabbitmq_canal_publicacion_cerrado", codigo=reason.reply_code,
                              texto=reason.reply_text, en_vuelo=len(state.pending))
        for pending in state.pending.values():
            _settle(pending.future, error)
        state.pending.clear()
        if not self._closing and self._connection is not None and self._connection.is_open:
            self._open_publisher()

    def _fail_publisher(self, error: TransportError) -> None:
        state, self._publisher = self._publisher, None
        if state is not None:
            for pending in state.pending.values():
                _settle(pending.future, error)
            state.pending.clear()

    def _publish_now(self, batch: Sequence[tuple[OutgoingMessage, Future[None]]]) -> None:
        state = self._publisher
        if self._closing:
            for _, future in batch:
                _settle(future, TransportError("el transporte RabbitMQ está cerrado"))
            return
        if state is None or not state.ready or not state.channel.is_open:
            deadline = time.monotonic() + _RECONNECT_WAIT
            self._backlog.extend((m, f, deadline) for m, f in batch)
            self._arm_backlog_timer()
            return
        channel = state.channel
        for message, future in batch:
            if future.done():
                continue
            properties = pika.BasicProperties(
                content_type=message.content_type, delivery_mode=2, message_id=message.message_id,
                correlation_id=message.correlation_id, user_id=message.user_id, reply_to=message.reply_to,
                headers=dict(message.headers) or None)
            try:
                channel.basic_publish(message.exchange, message.routing_key, message.body, properties,
                                      mandatory=message.mandatory)
            except Exception as exc:
                _settle(future, TransportError(f"no fue posible publicar: {exc!r}"))
                continue
            state.sequence += 1
            state.pending[state.sequence] = _Pending(future, message.exchange, message.routing_key,
                                                     message.message_id, message.body)

    def _on_confirm(self, state: _PublishChannel, frame: Any) -> None:
        method = frame.method
        nacked = isinstance(method, spec.Basic.Nack)
        if method.multiple:
            settled = []
            while state.pending:
                tag = next(iter(state.pending))
                if tag > method.delivery_tag:
                    break
                settled.append(state.pending.pop(tag))
        else:
            one = state.pending.pop(method.delivery_tag, None)
            settled = [one] if one is not None else []
        for pending in settled:
            if nacked:
                _settle(pending.future, PublishError("RabbitMQ rechazó el mensaje (basic.nack)"))
            elif not pending.returned:
                _settle(pending.future)

    def _on_return(self, state: _PublishChannel, method: Any, body: bytes, properties: Any) -> None:
        """A mandatory message no queue took; it is the oldest not-yet-returned pending publish that matches."""
        for pending in state.pending.values():
            if (not pending.returned and pending.exchange == method.exchange
                    and pending.routing_key == method.routing_key and pending.message_id == properties.message_id
                    and pending.body == body):
                pending.returned = True
                _settle(pending.future, PublishError(
                    f"mensaje no enrutable: ninguna cola recibe {method.exchange!r}/{method.routing_key!r} "
                    f"({method.reply_code} {method.reply_text})"))
                return
        self._log.warning("rabbitmq_devolucion_sin_publicacion", intercambio=method.exchange,
                          clave=method.routing_key)

    def _arm_backlog_timer(self) -> None:
        if self._backlog_timer is None and self._backlog:
            self._backlog_timer = self._ioloop.call_later(0.25, self._expire_backlog)

    def _expire_backlog(self) -> None:
        self._backlog_timer = None
        now = time.monotonic()
        keep = []
        for message, future, deadline in self._backlog:
            if deadline <= now:
                _settle(future, TransportError(f"sin conexión con RabbitMQ tras esperar {_RECONNECT_WAIT} s"))
            elif not future.done():
                keep.append((message, future, deadline))
        self._backlog = keep
        self._arm_backlog_timer()

    def _fail_backlog(self, error: TransportError) -> None:
        backlog, self._backlog = self._backlog, []
        for _, future, _ in backlog:
            _settle(future, error)

    def _in_flight(self) -> list[Future[None]]:
        futures = [f for _, f, _ in self._backlog]
        if self._publisher is not None:
            futures.extend(p.future for p in self._publisher.pending.values())
        return futures

    # ------------------------------------------------------------------ IO thread: consuming

    def _add_consumer(self, consumer: _RabbitConsumer) -> None:
        self._consumers.append(consumer)
        if self._connection is None or not self._connection.is_open:
            _settle(consumer.started, TransportError("sin conexión con RabbitMQ"))
            return
        self._open_consumer(consumer)

    def _drop_consumer(self, consumer: _RabbitConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        ref, consumer.ref = consumer.ref, None
        if ref is not None and ref.channel.is_open:
            ref.channel.close()

    def _open_consumer(self, consumer: _RabbitConsumer) -> None:
        connection = self._connection
        if connection is None or not connection.is_open or consumer.cancelled or self._closing:
            return

        def on_open(channel: Any) -> None:
            ref = _ChannelRef(channel)
            consumer.ref = ref
            channel.add_on_close_callback(lambda ch, reason: self._on_consumer_closed(consumer, ref, reason))
            channel.add_on_cancel_callback(lambda frame: self._on_broker_cancel(consumer, ref, frame))
            channel.basic_qos(prefetch_count=consumer.prefetch, callback=lambda _f: self._subscribe(
                consumer, ref, iter(consumer.queues), lambda: self._on_consuming(consumer)))

        try:
            connection.channel(on_open_callback=on_open)
        except Exception as exc:
            _settle(consumer.started, TransportError(f"consumir de {consumer.label}: {exc!r}"))

    def _subscribe(self, consumer: _RabbitConsumer, ref: _ChannelRef, queues: Iterator[str],
                   done: Callable[[], None]) -> None:
        """`basic.consume` each queue in turn on the consumer's channel (one at a time, so a broker refusal
        names the queue it was about), then `done`."""
        if consumer.ref is not ref or not ref.channel.is_open:
            return
        queue = next(queues, None)
        if queue is None:
            done()
            return
        ref.subscribing = queue

        def on_ok(frame: Any) -> None:
            ref.subscribing = None
            ref.tags[frame.method.consumer_tag] = queue
            self._subscribe(consumer, ref, queues, done)

        ref.channel.basic_consume(
            queue, lambda ch, method, props, body: self._on_message(consumer, ref, queue, method, props, body),
            auto_ack=False, callback=on_ok)

    def _on_consuming(self, consumer: _RabbitConsumer) -> None:
        if not consumer.started.done():
            consumer.release_early()
            _settle(consumer.started)
        else:
            self._log.info("rabbitmq_consumidor_restablecido", cola=consumer.label, colas=len(consumer.queues))

    def _on_consumer_closed(self, consumer: _RabbitConsumer, ref: _ChannelRef, reason: BaseException) -> None:
        if consumer.ref is ref:
            consumer.ref = None
        if not consumer.started.done():
            _settle(consumer.started, _channel_error(reason, f"consumir de {ref.subscribing or consumer.label}",
                                                     publish=False))
            return
        if isinstance(reason, ChannelClosedByBroker) and not consumer.cancelled and not self._closing:
            self._log.warning("rabbitmq_canal_consumidor_cerrado", cola=ref.subscribing or consumer.label,
                              codigo=reason.reply_code, texto=reason.reply_text)
            gone = ref.subscribing
            if reason.reply_code == _NOT_FOUND and gone is not None and len(consumer.queues) > 1:
                consumer.queues = tuple(q for q in consumer.queues if q != gone)
                self._log.error("rabbitmq_cola_omitida", cola=gone, quedan=len(consumer.queues))
            self._ioloop.call_later(min(2.0, self._max_delay), lambda: self._reopen_consumer(consumer))

    def _on_broker_cancel(self, consumer: _RabbitConsumer, ref: _ChannelRef, frame: Any) -> None:
        """RabbitMQ cancelled one queue's consumer (the queue was deleted, or its node went away): consume
        it again later on the same channel; the other queues keep flowing meanwhile."""
        queue = ref.tags.pop(frame.method.consumer_tag, consumer.label)
        self._log.warning("rabbitmq_consumidor_cancelado_por_broker", cola=queue)
        if not consumer.cancelled and not self._closing:
            self._ioloop.call_later(self._max_delay, lambda: self._resubscribe(consumer, ref, queue))

    def _resubscribe(self, consumer: _RabbitConsumer, ref: _ChannelRef, queue: str) -> None:
        if consumer.cancelled or self._closing or consumer.ref is not ref or queue not in consumer.queues:
            return
        if ref.subscribing is not None:  # another queue's basic.consume is still waiting for its answer
            self._ioloop.call_later(0.1, lambda: self._resubscribe(consumer, ref, queue))
            return
        self._subscribe(consumer, ref, iter((queue,)), lambda: self._log.info(
            "rabbitmq_consumidor_restablecido", cola=queue, colas=len(consumer.queues)))

    def _reopen_consumer(self, consumer: _RabbitConsumer) -> None:
        if consumer.ref is None and consumer in self._consumers:
            self._open_consumer(consumer)

    def _on_message(self, consumer: _RabbitConsumer, ref: _ChannelRef, queue: str, method: Any, properties: Any,
                    body: bytes) -> None:
        ref.unsettled.add(method.delivery_tag)
        consumer.submit(self._delivery(queue, ref, method, properties, body))

    def _cancel_consumer(self, consumer: _RabbitConsumer) -> None:
        if consumer.cancelled:
            return
        consumer.cancelled = True
        done: Future[None] = Future()

        def cancel() -> None:
            self._drop_consumer(consumer)
            _settle(done)

        self._call(cancel)
        if threading.current_thread() is not self._thread:
            with contextlib.suppress(TimeoutError):
                done.result(timeout=10)
        consumer.stop_worker()

    @staticmethod
    def _delivery(queue: str, ref: _ChannelRef, method: Any, properties: Any, body: bytes) -> Delivery:
        headers = dict(properties.headers or {})
        try:
            count = int(headers.get("x-delivery-count", 0))
        except (TypeError, ValueError):
            count = 0
        return Delivery(
            queue=queue, exchange=method.exchange, routing_key=method.routing_key, body=body,
            message_id=properties.message_id, correlation_id=properties.correlation_id,
            user_id=properties.user_id, reply_to=properties.reply_to, headers=headers,
            redelivered=bool(method.redelivered), delivery_count=count, delivery_tag=method.delivery_tag,
            token=ref)

    def _settle_delivery(self, delivery: Delivery, requeue: bool | None) -> None:
        ref = delivery.token
        if not isinstance(ref, _ChannelRef) or delivery.delivery_tag not in ref.unsettled:
            return  # already settled, or from another transport
        ref.unsettled.discard(delivery.delivery_tag)
        if not ref.channel.is_open:
            return  # its channel died: RabbitMQ redelivers it
        if requeue is None:
            ref.channel.basic_ack(delivery.delivery_tag)
        else:
            ref.channel.basic_nack(delivery.delivery_tag, requeue=requeue)

    # ------------------------------------------------------------------ IO thread: basic.get

    def _basic_get(self, queue: str, result: Future[Delivery | None]) -> None:
        try:
            self._start_get(queue, result)
        except Exception as exc:
            _settle(result, TransportError(f"leer de {queue}: {exc!r}"))

    def _start_get(self, queue: str, result: Future[Delivery | None]) -> None:
        ref = self._get_ref
        if ref is not None and ref.channel.is_open:
            self._get_on(ref, queue, result)
            return
        connection = self._connection
        if connection is None or not connection.is_open:
            _settle(result, TransportError("sin conexión con RabbitMQ"))
            return

        def on_open(channel: Any) -> None:
            new = _ChannelRef(channel)
            self._get_ref = new
            channel.add_on_close_callback(lambda ch, reason: self._on_get_closed(new, reason))
            channel.add_callback(lambda _frame: self._on_get_empty(new), [spec.Basic.GetEmpty], one_shot=False)
            self._get_on(new, queue, result)

        connection.channel(on_open_callback=on_open)

    def _get_on(self, ref: _ChannelRef, queue: str, result: Future[Delivery | None]) -> None:
        self._get_waiter = result
        self._get_queue = queue

        def on_ok(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
            ref.unsettled.add(method.delivery_tag)
            self._get_waiter = None
            _settle(result, result=self._delivery(queue, ref, method, properties, body))

        ref.channel.basic_get(queue, on_ok, auto_ack=False)

    def _on_get_empty(self, ref: _ChannelRef) -> None:
        waiter, self._get_waiter = self._get_waiter, None
        if waiter is not None:
            _settle(waiter, result=None)

    def _on_get_closed(self, ref: _ChannelRef, reason: BaseException) -> None:
        if self._get_ref is ref:
            self._get_ref = None
        waiter, self._get_waiter = self._get_waiter, None
        if waiter is not None:
            _settle(waiter, _channel_error(reason, f"leer de {self._get_queue}", publish=False))
