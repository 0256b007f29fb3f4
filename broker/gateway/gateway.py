"""The gateway worker: consume `gel.ingress`, admit, route; ack only after the routed publish is confirmed.

    delivery ─▶ pipeline.admit ─▶ Admitted ─▶ publish to gel.deliver (routing key = recipient) ─▶ confirm ─▶ ack
                              └─▶ Rejected ─▶ signed `falla` to the sender's queue ────────────▶ confirm ─▶ ack
    transient failure (database, broker, TSA) ─▶ nack(requeue) … after `max_attempts` ─▶ gel.dlx with the reason

A message that was already admitted — redelivered because a worker or the broker died between the log
append and the ack, or published again by a sender that never saw its confirm — is routed again from the
log, not re-admitted (AS4-style duplicate elimination): the log holds it once and the recipient's
idempotent receiver drops the duplicate delivery by idMensaje. The same idMensaje with other bytes is
still a replay and refused by the pipeline. Several workers compete on the ingress queue; the
replay memory they share is the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from broker.gateway.pipeline import Admitted, Duplicate, Pipeline, Rejected
from broker.gateway.records import OperationalRecord, OperationalRecords
from broker.gelxml import Falla, GelFault, ServiceRef
from broker.gelxml.envelope import Header, MessageType, build_message, new_header, read_header, serialize
from broker.gelxml.parsing import parse_untrusted
from broker.logs import get_logger
from broker.security.message_log import LogRecord
from broker.security.pki import Credential
from broker.security.signing import sign_element
from broker.transport.abc import Consumer, Delivery, OutgoingMessage, Transport, TransportError
from broker.transport.topology import DEAD_LETTER_EXCHANGE, DELIVER_EXCHANGE, INGRESS_QUEUE, entity_key

__all__ = ["HEADER_TIMESTAMP", "Gateway", "Routed", "fault_message"]

HEADER_TIMESTAMP = "x-gel-sello"
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


class Gateway:
    """One gateway worker over a transport. Start it; it consumes until `stop()`."""

    def __init__(self, transport: Transport, pipeline: Pipeline, credential: Credential, *, platform_id: str,
                 prefetch: int = 64, max_attempts: int = 5, records: OperationalRecords | None = None,
                 on_routed: Callable[[Routed], None] | None = None) -> None:
        self.transport = transport
        self.pipeline = pipeline
        self.credential = credential
        self.platform_id = platform_id
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.on_routed = on_routed
        self.records = records
        self._consumer: Consumer | None = None

    def start(self) -> None:
        self._consumer = self.transport.consume(INGRESS_QUEUE, self.handle, prefetch=self.prefetch)
        log.info("gateway.started", queue=INGRESS_QUEUE, prefetch=self.prefetch)

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = None

    # -- one delivery --------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        started = _Clock(time.perf_counter(), dt.datetime.now(dt.UTC))
        try:
            self._process(delivery, started)
        except TRANSIENT as exc:
            self._retry(delivery, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not lose the message: park it with its reason
            log.exception("gateway.unexpected", message_id=delivery.message_id)
            self._dead_letter(delivery, f"error interno {type(exc).__name__}: {exc}")

    def _process(self, delivery: Delivery, started: _Clock) -> None:
        previous = self._already_admitted(delivery)
        if previous is not None:
            self._route(delivery, previous.sender, previous.recipient, previous.service, previous.message_id,
                        previous.token, previous.seq, started, outcome="reenviado")
            return
        routing = {"cola": delivery.queue, "usuarioAmqp": delivery.user_id or "",
                   "intento": str(delivery.delivery_count)}
        outcome = self.pipeline.admit(delivery.body, transport_user=delivery.user_id or ANONYMOUS, routing=routing)
        if isinstance(outcome, Admitted):
            header = outcome.verified.header
            self._route(delivery, header.sender, header.recipient, str(header.service), header.message_id,
                        outcome.token.der, outcome.record.seq, started, correlation_id=header.correlation_id)
        elif isinstance(outcome, Duplicate):
            kept = outcome.record
            self._route(delivery, kept.sender, kept.recipient, kept.service, kept.message_id, kept.token, kept.seq,
                        started, outcome="reenviado")
        else:
            self._refuse(delivery, outcome, started)

    def _already_admitted(self, delivery: Delivery) -> LogRecord | None:
        """The log record of this exact message if its sender, on its own connection, already got it admitted."""
        digest = hashlib.sha256(delivery.body).hexdigest()
        header = _header_of(delivery.body)
        message_id = header.message_id if header else delivery.message_id
        if not message_id:
            return None
        for record in self.pipeline.log.find(message_id):
            if record.outcome == "aceptado" and record.message_sha256 == digest and record.sender == delivery.user_id:
                return record
        return None

    def _route(self, delivery: Delivery, sender: str, recipient: str, service: str, message_id: str,
               token: bytes | None, seq: int, started: _Clock, *, correlation_id: str | None = None,
               outcome: str = "entregado") -> None:
        headers: dict[str, Any] = {HEADER_RECORD: seq}
        if token is not None:
            headers[HEADER_TIMESTAMP] = base64.b64encode(token).decode("ascii")
        future = self.transport.publish(OutgoingMessage(
            exchange=DELIVER_EXCHANGE, routing_key=entity_key(recipient), body=delivery.body,
            message_id=message_id, correlation_id=correlation_id, headers=headers,
        ))
        self._settle_when_confirmed(future, delivery, started.routed(
            outcome, delivery, message_id=message_id, sender=sender, recipient=recipient, service=service,
            fault_code=None, record=seq))

    def _refuse(self, delivery: Delivery, rejected: Rejected, started: _Clock) -> None:
        original = _header_of(delivery.body)
        recipient = delivery.user_id or (original.sender if original else "")
        if not recipient:
            self._dead_letter(delivery, f"{rejected.falla.code}: mensaje ilegible sin remitente identificable")
            return
        body = fault_message(rejected.falla, original=original, recipient=recipient, credential=self.credential,
                             sender=self.platform_id)
        future = self.transport.publish(OutgoingMessage(
            exchange=DELIVER_EXCHANGE, routing_key=entity_key(recipient), body=body,
            message_id=read_header(parse_untrusted(body)).message_id,
            correlation_id=original.message_id if original else None,
            headers={HEADER_RECORD: rejected.record.seq},
        ))
        self._settle_when_confirmed(future, delivery, started.routed(
            "rechazado", delivery, message_id=original.message_id if original else "",
            sender=original.sender if original else recipient, recipient=self.platform_id,
            service=str(original.service) if original else "", fault_code=str(rejected.falla.code),
            record=rejected.record.seq))

    def _settle_when_confirmed(self, future: Future[None], delivery: Delivery, routed: Routed) -> None:
        def settle(done: Future[None]) -> None:
            error = done.exception()
            if error is None:
                self.transport.ack(delivery)
                log.info("gateway.routed", message_id=routed.message_id, recipient=routed.recipient,
                         outcome=routed.outcome, fault=routed.fault_code, record=routed.record, ms=routed.elapsed_ms)
                if self.records is not None:
                    self._keep_record(routed)
                if self.on_routed is not None:
                    self.on_routed(routed)
            else:
                self._retry(delivery, f"publicación no confirmada: {error}")

        future.add_done_callback(settle)

    def _keep_record(self, routed: Routed) -> None:
        assert self.records is not None
        try:
            self.records.add(OperationalRecord(
                message_id=routed.message_id, hop="pasarela", sender=routed.sender, recipient=routed.recipient,
                service=routed.service, received_at=routed.received_at,
                completed_at=dt.datetime.now(dt.UTC), duration_ms=routed.elapsed_ms, size_bytes=routed.size_bytes,
                outcome=routed.outcome, fault_code=routed.fault_code, log_seq=routed.record, attempt=routed.attempt,
            ))
        except Exception:  # monitoring must never block delivery; the message log holds the evidence
            log.exception("gateway.record_failed", message_id=routed.message_id)

    # -- failures ------------------------------------------------------------------------------
    def _retry(self, delivery: Delivery, reason: str) -> None:
        attempts = delivery.delivery_count + 1
        if attempts >= self.max_attempts:
            self._dead_letter(delivery, f"{reason} (tras {attempts} intentos)")
            return
        log.warning("gateway.retry", message_id=delivery.message_id, attempt=attempts, reason=reason)
        self.transport.nack(delivery, requeue=True)

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.error("gateway.dead_letter", message_id=delivery.message_id, reason=reason)
        future = self.transport.publish(OutgoingMessage(
            exchange=DEAD_LETTER_EXCHANGE, routing_key=INGRESS_QUEUE, body=delivery.body,
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

    def routed(self, outcome: str, delivery: Delivery, *, message_id: str, sender: str, recipient: str,
               service: str, fault_code: str | None, record: int | None) -> Routed:
        return Routed(
            outcome=outcome, message_id=message_id, sender=sender, recipient=recipient, service=service,
            fault_code=fault_code, record=record, received_at=self.received_at,
            elapsed_ms=round((time.perf_counter() - self.started) * 1000, 2), size_bytes=len(delivery.body),
            attempt=delivery.delivery_count,
        )
