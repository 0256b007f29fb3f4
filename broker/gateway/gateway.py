"""The gateway worker: consume every entity's ingress queue, admit, route; ack only after the routed publish is
confirmed.

    deliveries ─▶ pipeline.admit_batch ─▶ Admitted ─▶ publish to gel.deliver (routing key = recipient) ─▶ confirm ─▶ ack
                              └─▶ Rejected ─▶ signed `falla` to the sender's queue ────────────▶ confirm ─▶ ack
    transient failure (database, broker, TSA) ─▶ nack(requeue) … after `max_attempts` ─▶ gel.dlx with the reason

A message that was already admitted — redelivered because a worker or the broker died between the log
append and the ack, or published again by a sender that never saw its confirm — is routed again from the
log, not re-admitted (AS4-style duplicate elimination): the log holds it once and the recipient's
idempotent receiver drops the duplicate delivery by idMensaje. The same idMensaje with other bytes is
still a replay and refused by the pipeline. Several workers compete on the ingress queues; the
replay memory they share is the log.

A worker takes all the ingress queues (`gel.entrada.<entity>`) on one channel with one handler thread and
`prefetch` deliveries in flight per queue: an entity flooding its own queue has at most `prefetch` messages
ahead of another entity's next one. The queues are those of the registry at start: a newly registered entity
needs `gel topology apply` and a gateway restart.

Deliveries are admitted in batches of whatever is waiting (up to `batch_size`, never waiting for more): an idle
gateway handles one message at a time with no added latency, a busy one reads the replay memory once and
commits the log once per batch instead of per message.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from broker.gateway.deadlines import ReplyDeadlines
from broker.gateway.pipeline import Admitted, Arrival, Duplicate, Pipeline, Rejected
from broker.gateway.records import OperationalRecord, OperationalRecords
from broker.gelxml import Falla, GelFault, ServiceRef
from broker.gelxml.envelope import Header, MessageType, build_message, new_header, read_header, serialize
from broker.gelxml.faults import FaultCode, Stage, fault
from broker.gelxml.parsing import parse_untrusted
from broker.logs import get_logger
from broker.security.message_log import LogRecord
from broker.security.pki import Credential
from broker.security.signing import sign_element
from broker.storage import outage_waits
from broker.transport.abc import Consumer, Delivery, OutgoingMessage, PublishError, Transport, TransportError
from broker.transport.topology import (
    DEAD_LETTER_EXCHANGE,
    DELIVER_EXCHANGE,
    HEADER_NOTICE,
    HEADER_TIMESTAMP,
    entity_key,
)

__all__ = ["HEADER_NOTICE", "HEADER_TIMESTAMP", "Gateway", "Routed", "fault_message"]

HEADER_RECORD = "x-gel-registro"
HEADER_REASON = "x-gel-motivo"
HEADER_ATTEMPTS = "x-gel-intentos"
PLATFORM_SERVICE = ServiceRef("plataforma", "1.0")
ANONYMOUS = "un usuario sin identificar (falta la propiedad user_id)"
TRANSIENT = (TransportError, SQLAlchemyError, OSError, TimeoutError)

log = get_logger(component="gateway")


def fault_message(falla: Falla, *, original: Header | None, recipient: str, credential: Credential,
                  sender: str) -> bytes:
    """A signed `falla` message from the platform to `recipient`, correlated to the refused message.

    The gateway addresses it to the publisher RabbitMQ authenticated (`user_id`), not to the sender the
    refused message claims, so a forged message cannot make the platform write to its supposed author."""
    header = new_header(sender=sender, recipient=recipient, service=original.service if original else PLATFORM_SERVICE,
                        message_type=MessageType.FAULT, chain_id=original.chain_id if original else None,
                        radicado=original.radicado if original else None)
    header = replace(header, correlation_id=original.message_id if original else str(uuid.uuid4()))
    return serialize(sign_element(build_message(header, falla.to_xml()), credential))


def _header_of(data: bytes) -> Header | None:
    try:
        return read_header(parse_untrusted(data))
    except (GelFault, ValueError, KeyError):
        return None


def _known(header: Header | None) -> dict[str, Any]:
    """What a log line says about a message whose envelope could be read (idCadena, remitente)."""
    return {"chain_id": header.chain_id, "entity": header.sender} if header is not None else {}


@dataclass(frozen=True, slots=True)
class Routed:
    """What the gateway did with one delivery (for tests, operational records and the demo)."""

    outcome: str
    message_id: str
    sender: str
    recipient: str
    service: str
    fault_code: str | None
    record: int | None
    received_at: dt.datetime
    elapsed_ms: float
    size_bytes: int
    attempt: int
    chain_id: str | None = None
    stage: str = Stage.ROUTE.value
    """The pipeline stage that refused the message, or `enrutamiento` when it was routed."""


class Gateway:
    """One gateway worker over a transport. Start it; it consumes until `stop()`."""

    def __init__(self, transport: Transport, pipeline: Pipeline, credential: Credential, *, platform_id: str,
                 publishers: Mapping[str, str], prefetch: int = 64, max_attempts: int = 5,
                 records: OperationalRecords | None = None, deadlines: ReplyDeadlines | None = None,
                 sweep_seconds: float = 1.0,
                 on_routed: Callable[[Routed], None] | None = None, batch_size: int = 32) -> None:
        self.transport = transport
        self.pipeline = pipeline
        self.credential = credential
        self.platform_id = platform_id
        self.publishers = dict(publishers)
        """Ingress queue → the entity whose publishes reach it (`topology.ingress_publishers`)."""
        self.queues = tuple(self.publishers)
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.on_routed = on_routed
        self.records = records
        self.deadlines = deadlines
        self.sweep_seconds = sweep_seconds
        self._consumer: Consumer | None = None
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._bookkeeping = ThreadPoolExecutor(1, thread_name_prefix="gel-gateway-records")
        self.batch_size = batch_size
        self._unrecorded: list[OperationalRecord] = []
        self._unrecorded_lock = threading.Lock()
        self._arrivals: queue.SimpleQueue[tuple[Delivery, _Clock] | None] = queue.SimpleQueue()
        self._admitter: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._admitter = threading.Thread(target=self._admit_until_stopped, name="gel-gateway-admission", daemon=True)
        self._admitter.start()
        self._consumer = self.transport.consume(self.queues, self.handle, prefetch=self.prefetch)
        if self.deadlines is not None:
            self._sweeper = threading.Thread(target=self._sweep_until_stopped, name="gel-gateway-deadlines",
                                             daemon=True)
            self._sweeper.start()
        log.info("gateway.started", queues=len(self.queues), prefetch=self.prefetch,
                 note="una entidad nueva en el registro necesita gel topology apply y reiniciar la pasarela")

    def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = None
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
            self._sweeper = None
        if self._admitter is not None:
            self._arrivals.put(None)
            self._admitter.join(timeout=30)
            self._admitter = None
        finished, self._bookkeeping = self._bookkeeping, ThreadPoolExecutor(1, thread_name_prefix="gel-gateway-records")
        finished.shutdown(wait=True)  # a confirm still in flight books its message on the new executor

    # -- reply deadlines -----------------------------------------------------------------------
    def _reply_clocks(self, headers: Sequence[Header]) -> tuple[list[tuple[Header, int]], list[str]]:
        """Which admitted requests start a reply clock (their service has a deadline), which replies stop one."""
        expected: list[tuple[Header, int]] = []
        answered: list[str] = []
        for header in headers:
            if header.message_type is MessageType.REQUEST and self.pipeline.catalog is not None:
                entry = self.pipeline.catalog.get(header.service.code, header.service.version)
                if entry is not None and entry.reply_within_seconds:
                    expected.append((header, entry.reply_within_seconds))
            elif header.message_type in (MessageType.RESPONSE, MessageType.FAULT) and header.correlation_id:
                answered.append(header.correlation_id)
        return expected, answered

    def _track_replies_in(self, connection: Connection, headers: list[Header]) -> None:
        assert self.deadlines is not None
        self.deadlines.track_in(connection, *self._reply_clocks(headers))

    def _sweep_until_stopped(self) -> None:
        while not self._stopping.wait(self.sweep_seconds):
            try:
                self.sweep()
            except TRANSIENT as exc:
                log.warning("gateway.sweep_failed", reason=str(exc))

    def sweep(self, now: dt.datetime | None = None) -> int:
        """Tell every caller whose request ran out of time, with a signed GEL-ROUTE-REPLY_TIMEOUT falla."""
        assert self.deadlines is not None
        expired = self.deadlines.claim_expired(now)
        for pending in expired:
            falla = fault(FaultCode.ROUTE_REPLY_TIMEOUT, recipient=pending.recipient, message_id=pending.message_id,
                          seconds=pending.within_seconds).falla
            body = fault_message(falla, original=pending.request_header(), recipient=pending.sender,
                                 credential=self.credential, sender=self.platform_id)
            try:
                self.transport.publish(OutgoingMessage(
                    exchange=DELIVER_EXCHANGE, routing_key=entity_key(pending.sender), body=body,
                    message_id=read_header(parse_untrusted(body)).message_id, correlation_id=pending.message_id,
                )).result(timeout=30)
            except (*TRANSIENT, PublishError):
                self.deadlines.release(pending.message_id)
                raise
            log.warning("gateway.reply_timeout", message_id=pending.message_id, chain_id=pending.chain_id,
                        entity=pending.sender, recipient=pending.recipient, caller=pending.sender,
                        seconds=pending.within_seconds)
            if self.records is not None:
                now_utc = dt.datetime.now(dt.UTC)
                self.records.add(OperationalRecord(
                    message_id=pending.message_id, hop="plazo_respuesta", sender=pending.recipient,
                    recipient=pending.sender, service=str(pending.service), received_at=pending.deadline,
                    completed_at=now_utc, duration_ms=0.0, size_bytes=len(body), outcome="sin_respuesta",
                    fault_code=str(falla.code)))
        return len(expired)

    # -- deliveries, in batches ---------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        """The transport's handler: queue the delivery for the admission thread."""
        self._arrivals.put((delivery, _Clock(time.perf_counter(), dt.datetime.now(dt.UTC))))

    def _admit_until_stopped(self) -> None:
        while (first := self._arrivals.get()) is not None:
            batch = [first]
            stop = False
            while len(batch) < self.batch_size:
                try:
                    more = self._arrivals.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self.handle_batch(batch)
            if stop:
                return

    def handle_batch(self, batch: Sequence[tuple[Delivery, _Clock]]) -> None:
        """Admit and route several deliveries. While the message log's database is down the batch waits and is
        tried again (an outage is nobody's message's fault, so it spends none of their attempts); a transient
        failure while the database answers sends each delivery back for another attempt."""
        waits, outage = outage_waits(), False
        while True:
            try:
                self._process(batch)
                return
            except TRANSIENT as exc:
                reason = f"{type(exc).__name__}: {exc}"
                answers = not self._stopping.is_set() and self.pipeline.log.answers()
                if answers and outage:
                    outage = False  # the database is back: try the batch again at once
                    continue
                if answers and len(batch) > 1 and not isinstance(exc, TransportError):
                    self._one_by_one(batch)  # the database answers: maybe one message's data fails the batch
                    return
                if answers or self._stopping.is_set():
                    for delivery, _ in batch:
                        self._retry(delivery, reason)
                    return
                outage, delay = True, next(waits)
                log.warning("gateway.store_unavailable", count=len(batch), retry_in_s=delay, reason=reason[:200])
                self._stopping.wait(delay)
            except Exception as exc:
                if len(batch) > 1:
                    self._one_by_one(batch)
                else:
                    self._park(batch, exc)
                return

    def _one_by_one(self, batch: Sequence[tuple[Delivery, _Clock]]) -> None:
        """Handle each delivery of a failed batch alone, so a failure costs only the message that causes it (one
        that was admitted before the failure is found in the log and routed again, not admitted twice)."""
        for item in batch:
            self.handle_batch([item])

    def _park(self, batch: Sequence[tuple[Delivery, _Clock]], exc: Exception) -> None:
        """A bug must not lose a message: park each with its reason."""
        for delivery, _ in batch:
            log.exception("gateway.unexpected", message_id=delivery.message_id, **_known(_header_of(delivery.body)))
            self._dead_letter(delivery, f"error interno {type(exc).__name__}: {exc}")

    def _process(self, batch: Sequence[tuple[Delivery, _Clock]]) -> None:
        """The redelivery check looks the log up by the AMQP message_id (our senders set it to the idMensaje) and
        trusts only an accepted record with the same bytes from the same authenticated sender, so a lying
        property just makes the message look fresh; nothing is parsed for it."""
        known = self.pipeline.log.find_many(delivery.message_id for delivery, _ in batch if delivery.message_id)
        fresh: list[tuple[Delivery, _Clock]] = []
        for delivery, started in batch:
            previous = self._already_admitted(delivery, known.get(delivery.message_id or "", []))
            header = _header_of(delivery.body) if previous is not None else None
            if previous is not None and header is not None:
                self._route(delivery, previous, self.pipeline.recipients_of(header), started, outcome="reenviado",
                            chain_id=header.chain_id)
            else:
                fresh.append((delivery, started))
        shared = self.deadlines is not None and self.deadlines.url == self.pipeline.log.url
        outcomes = self.pipeline.admit_batch([Arrival(
            delivery.body, delivery.user_id or ANONYMOUS,
            {"cola": delivery.queue, "usuarioAmqp": delivery.user_id or "", "intento": str(delivery.delivery_count)})
            for delivery, _ in fresh], logged=known, on_admitted=self._track_replies_in if shared else None)
        if self.deadlines is not None and not shared:
            self.deadlines.track(*self._reply_clocks([o.verified.header for o in outcomes if isinstance(o, Admitted)]))
        for (delivery, started), outcome in zip(fresh, outcomes, strict=True):
            self._dispatch(delivery, outcome, started)

    def _dispatch(self, delivery: Delivery, outcome: Admitted | Duplicate | Rejected, started: _Clock) -> None:
        if isinstance(outcome, Admitted):
            header = outcome.verified.header
            if outcome.notice is not None:
                log.warning("gateway.deprecated_service", message_id=header.message_id, chain_id=header.chain_id,
                            entity=header.sender, recipient=header.recipient, service=str(header.service))
            self._route(delivery, outcome.record, outcome.recipients, started,
                        correlation_id=header.correlation_id, chain_id=header.chain_id, notice=outcome.notice)
        elif isinstance(outcome, Duplicate):
            copy = _header_of(delivery.body)
            self._route(delivery, outcome.record, outcome.recipients, started, outcome="reenviado",
                        chain_id=copy.chain_id if copy else None)
        else:
            self._refuse(delivery, outcome, started, _header_of(delivery.body))

    @staticmethod
    def _already_admitted(delivery: Delivery, records: Sequence[LogRecord]) -> LogRecord | None:
        """The log record of this exact message if its sender, on its own connection, already got it admitted."""
        if not records:
            return None
        digest = hashlib.sha256(delivery.body).hexdigest()
        for record in records:
            if record.outcome == "aceptado" and record.message_sha256 == digest and record.sender == delivery.user_id:
                return record
        return None

    def _route(self, delivery: Delivery, record: LogRecord, recipients: tuple[str, ...], started: _Clock, *,
               correlation_id: str | None = None, outcome: str = "entregado", chain_id: str | None = None,
               notice: str | None = None) -> None:
        """Publish the sender's exact bytes to each recipient's queue (several for an event's subscribers)."""
        headers: dict[str, Any] = {HEADER_RECORD: record.seq}
        if notice is not None:
            headers[HEADER_NOTICE] = notice
        if record.token is not None:
            headers[HEADER_TIMESTAMP] = base64.b64encode(record.token).decode("ascii")
        futures = [self.transport.publish(OutgoingMessage(
            exchange=DELIVER_EXCHANGE, routing_key=entity_key(recipient), body=delivery.body,
            message_id=record.message_id, correlation_id=correlation_id, headers=headers,
        )) for recipient in recipients]
        self._settle_when_confirmed(futures, delivery, [started.routed(
            outcome, delivery, message_id=record.message_id, sender=record.sender, recipient=recipient,
            service=record.service, fault_code=None, record=record.seq, chain_id=chain_id)
            for recipient in recipients], started)

    def _refuse(self, delivery: Delivery, rejected: Rejected, started: _Clock, original: Header | None) -> None:
        """The falla goes to the publisher RabbitMQ authenticated (`user_id`) or, without one, to the entity whose
        ingress queue the message came from; never to the sender the message claims to be."""
        recipient = delivery.user_id or self.publishers.get(delivery.queue, "")
        if not recipient:
            self._dead_letter(delivery, f"{rejected.falla.code}: mensaje ilegible sin remitente identificable",
                              stage=rejected.falla.stage.value)
            return
        body = fault_message(rejected.falla, original=original, recipient=recipient, credential=self.credential,
                             sender=self.platform_id)
        future = self.transport.publish(OutgoingMessage(
            exchange=DELIVER_EXCHANGE, routing_key=entity_key(recipient), body=body,
            message_id=read_header(parse_untrusted(body)).message_id,
            correlation_id=original.message_id if original else None,
            headers={HEADER_RECORD: rejected.record.seq},
        ))
        self._settle_when_confirmed([future], delivery, [started.routed(
            "rechazado", delivery, message_id=original.message_id if original else "",
            sender=original.sender if original else recipient, recipient=self.platform_id,
            service=str(original.service) if original else "", fault_code=str(rejected.falla.code),
            record=rejected.record.seq, chain_id=original.chain_id if original else None,
            stage=rejected.falla.stage.value)], started)

    def _settle_when_confirmed(self, futures: list[Future[None]], delivery: Delivery, routed: list[Routed],
                               started: _Clock) -> None:
        """Ack the ingress delivery once every publish it caused is confirmed; retry it if any failed."""
        remaining = [len(futures)]
        lock = threading.Lock()

        def settle(_done: Future[None]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                self._retry(delivery, f"publicación no confirmada: {errors[0]}")
                return
            self.transport.ack(delivery)
            elapsed = started.elapsed_ms()
            confirmed = [replace(item, elapsed_ms=elapsed) for item in routed]
            self._bookkeeping.submit(self._after_routed, confirmed)

        if not futures:
            self._dead_letter(delivery, "el mensaje admitido no tiene destinatarios")
            return
        for future in futures:
            future.add_done_callback(settle)

    def _after_routed(self, routed: list[Routed]) -> None:
        """Logging, operational records and the hook, off the transport's IO thread. Records wait in
        `_unrecorded` and whichever bookkeeping task runs first writes all that are waiting in one commit."""
        completed = dt.datetime.now(dt.UTC)
        with self._unrecorded_lock:
            self._unrecorded.extend(OperationalRecord(
                message_id=item.message_id, hop="pasarela", sender=item.sender, recipient=item.recipient,
                service=item.service, received_at=item.received_at, completed_at=completed,
                duration_ms=item.elapsed_ms, size_bytes=item.size_bytes, outcome=item.outcome,
                fault_code=item.fault_code, log_seq=item.record, attempt=item.attempt) for item in routed)
        for item in routed:
            log.info("gateway.routed", message_id=item.message_id, chain_id=item.chain_id, entity=item.sender,
                     recipient=item.recipient, service=item.service, stage=item.stage, outcome=item.outcome,
                     fault=item.fault_code, record=item.record, ms=item.elapsed_ms)
        self._keep_records()
        if self.on_routed is not None:
            for item in routed:
                self.on_routed(item)

    def _keep_records(self) -> None:
        with self._unrecorded_lock:
            waiting, self._unrecorded = self._unrecorded, []
        if self.records is None or not waiting:
            return
        try:
            self.records.add_many(waiting)
        except Exception:  # monitoring must never block delivery; the message log holds the evidence
            log.exception("gateway.record_failed", message_id=waiting[0].message_id, count=len(waiting))

    # -- failures ------------------------------------------------------------------------------
    def _retry(self, delivery: Delivery, reason: str) -> None:
        attempts = delivery.delivery_count + 1
        if attempts >= self.max_attempts:
            self._dead_letter(delivery, f"{reason} (tras {attempts} intentos)")
            return
        log.warning("gateway.retry", message_id=delivery.message_id, **_known(_header_of(delivery.body)),
                    attempt=attempts, reason=reason)
        self.transport.nack(delivery, requeue=True)

    def _dead_letter(self, delivery: Delivery, reason: str, *, stage: str | None = None) -> None:
        log.error("gateway.dead_letter", message_id=delivery.message_id, **_known(_header_of(delivery.body)),
                  **({"stage": stage} if stage else {}), reason=reason)
        future = self.transport.publish(OutgoingMessage(
            exchange=DEAD_LETTER_EXCHANGE, routing_key=delivery.queue, body=delivery.body,
            message_id=delivery.message_id, correlation_id=delivery.correlation_id,
            headers={**dict(delivery.headers), HEADER_REASON: reason, HEADER_ATTEMPTS: delivery.delivery_count + 1},
        ))

        def settle(done: Future[None]) -> None:
            if done.exception() is None:
                self.transport.ack(delivery)
            else:
                self.transport.nack(delivery, requeue=False)  # the queue's own dead-lettering keeps it

        future.add_done_callback(settle)


@dataclass(frozen=True, slots=True)
class _Clock:
    started: float
    received_at: dt.datetime

    def elapsed_ms(self) -> float:
        """From receipt on ingress to now (the broker's confirm of the routed publish)."""
        return round((time.perf_counter() - self.started) * 1000, 2)

    def routed(self, outcome: str, delivery: Delivery, *, message_id: str, sender: str, recipient: str,
               service: str, fault_code: str | None, record: int | None, chain_id: str | None,
               stage: str = Stage.ROUTE.value) -> Routed:
        return Routed(
            outcome=outcome, message_id=message_id, sender=sender, recipient=recipient, service=service,
            fault_code=fault_code, record=record, received_at=self.received_at,
            elapsed_ms=0.0, size_bytes=len(delivery.body),
            attempt=delivery.delivery_count, chain_id=chain_id, stage=stage,
        )
