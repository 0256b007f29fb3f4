"""The adapter runtime: one entity on the bus.

    its queue ──▶ verify (signature, platform time stamp) ──▶ inbox (seen before? then only ack)
      solicitud ──▶ handler (legacy call, retried with backoff while the system is down)
                    ──▶ reply or coded falla (+ acuse) signed, written to the outbox with the inbox
                        outcome in one transaction ──▶ ack
      respuesta / falla / acuse / evento ──▶ the application's callback, once per idMensaje ──▶ ack
    outbox relay ──▶ publish to gel.ingress (user_id and routing key = entity) ──▶ confirm ──▶ mark published
                      nacked (its ingress queue is full) or unconfirmed ──▶ stays in the outbox, retried

Exactly-once effects over at-least-once delivery: the inbox drops redeliveries, the outbox publishes only
what was committed, and a re-published row carries the same signed bytes and idMensaje.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import wait
from dataclasses import dataclass, replace

from lxml import etree
from sqlalchemy.exc import SQLAlchemyError

from adapters.sdk.connectors.base import Connector, ConnectorError
from adapters.sdk.store import AdapterStore, InboxState, Outgoing
from broker.gelxml import GelFault
from broker.gelxml.envelope import (
    Header,
    MessageType,
    ServiceRef,
    build_message,
    new_header,
    payload_of,
    read_header,
    reply_header,
    serialize,
)
from broker.gelxml.faults import FaultCode, fault
from broker.logs import get_logger
from broker.security.pki import Credential, LiveTrustStore, TrustStore
from broker.security.receipts import build_receipt
from broker.security.signing import sign_element
from broker.security.timestamp import verify_token
from broker.security.verification import VerifiedMessage, verify_message
from broker.storage import during_outage, outage_waits
from broker.transport.abc import Consumer, Delivery, OutgoingMessage, Transport, TransportError
from broker.transport.topology import HEADER_NOTICE, HEADER_TIMESTAMP, INGRESS_EXCHANGE, entity_key, entity_queue

__all__ = ["Adapter", "Handler", "HandlerContext", "Incoming", "RetryPolicy"]



@dataclass(frozen=True, slots=True)
class Incoming:
    """A verified message addressed to this entity."""

    header: Header
    payload: etree._Element | None
    body: bytes
    signer: str


@dataclass
class HandlerContext:
    """What a handler may use besides the request: its entity's connector, and `emit` for messages that must
    leave with the answer (an event announcing a decision) — they are signed and committed to the outbox in
    the same transaction as the answer, so a decision and its announcement never part."""

    entity: str
    connector: Connector | None
    _adapter: Adapter
    _emitted: list[Outgoing]

    def emit(self, service: ServiceRef, recipient: str, payload: etree._Element, *,
             message_type: MessageType = MessageType.EVENT, chain_id: str | None = None,
             radicado: str | None = None) -> str:
        outgoing = self._adapter.sign(service, recipient, payload, message_type=message_type, chain_id=chain_id,
                                      radicado=radicado)
        self._emitted.append(outgoing)
        return outgoing.message_id


Handler = Callable[..., etree._Element]
"""Answers a request — `handler(request)` or `handler(request, context)` with a `HandlerContext` — by returning
the response payload (`salida<Service>`), or raising `GelFault` (a coded falla for the caller) or
`ConnectorError` (the legacy system failed; retried while retryable)."""


def _wants_context(handler: Handler) -> bool:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.name == "context" for p in parameters)

Callback = Callable[[Incoming], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff while the legacy system is down: attempts, first wait, cap (seconds)."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 10.0

    def waits(self) -> list[float]:
        return [min(self.initial * 2 ** n, self.maximum) for n in range(max(self.attempts - 1, 0))]


class Adapter:
    """One entity on the bus: answers the services it provides and calls others, durably."""

    def __init__(self, entity: str, transport: Transport, credential: Credential, trust: TrustStore | LiveTrustStore,
                 store: AdapterStore, handlers: Mapping[tuple[str, str], Handler], *,
                 retry: RetryPolicy = RetryPolicy(), receipts: bool = True, prefetch: int = 16,
                 on_message: Callback | None = None, relay_interval: float = 1.0,
                 connector: Connector | None = None) -> None:
        self.entity = entity
        self.transport = transport
        self.credential = credential
        self.trust = trust
        self.store = store
        self.handlers = dict(handlers)
        self._with_context = {key for key, handler in self.handlers.items() if _wants_context(handler)}
        self.retry = retry
        self.receipts = receipts
        self.prefetch = prefetch
        self.on_message = on_message
        self.relay_interval = relay_interval
        self.connector = connector
        self.log = get_logger(component="adapter", entidad=entity)
        self._consumer: Consumer | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._relay: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._relay = threading.Thread(target=self._relay_loop, name=f"gel-adapter-outbox-{self.entity}",
                                       daemon=True)
        self._relay.start()
        self._consumer = self.transport.consume(entity_queue(self.entity), self.handle, prefetch=self.prefetch)
        self.log.info("adapter.started", services=sorted(f"{c} v{v}" for c, v in self.handlers))

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = None
        if self._relay is not None:
            self._relay.join(timeout=15)
            self._relay = None

    # -- calling other entities ----------------------------------------------------------------
    def call(self, service: ServiceRef, recipient: str, payload: etree._Element, *, chain_id: str | None = None,
             radicado: str | None = None, user: str | None = None,
             message_type: MessageType = MessageType.REQUEST) -> str:
        """Send a request (or an event) through the outbox; returns its idMensaje. The answer arrives at
        `on_message` correlated by `idCorrelacion`."""
        outgoing = self.sign(service, recipient, payload, message_type=message_type, chain_id=chain_id,
                             radicado=radicado, user=user)
        self.store.enqueue([outgoing])
        self._wake.set()
        return outgoing.message_id

    def sign(self, service: ServiceRef, recipient: str, payload: etree._Element, *, message_type: MessageType,
             chain_id: str | None = None, radicado: str | None = None, user: str | None = None,
             message_id: str | None = None) -> Outgoing:
        """A new message from this entity, signed, for the outbox (`message_id` when the caller chose it)."""
        header = new_header(sender=self.entity, recipient=recipient, service=service, message_type=message_type,
                            chain_id=chain_id, radicado=radicado, user=user)
        if message_id is not None:
            header = replace(header, message_id=message_id)
        body = serialize(sign_element(build_message(header, payload), self.credential))
        return Outgoing(header.message_id, recipient, message_type.value, body)

    def wake(self) -> None:
        """Publish what was committed to the outbox without waiting for the relay's next round."""
        self._wake.set()

    # -- receiving -----------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        """Verify, deduplicate, answer and settle one delivery. While the store's database is down the delivery
        waits and is tried again: sent back at once, it would spend its few delivery attempts in milliseconds
        and be dead-lettered for an outage that was nobody's fault."""
        waits = outage_waits()
        while True:
            try:
                self._handle(delivery)
                return
            except SQLAlchemyError as exc:
                if self._stopping.is_set() or not during_outage(exc, self.store.answers):
                    raise
                delay = next(waits)
                self.log.warning("adapter.store_unavailable", message_id=delivery.message_id, retry_in_s=delay,
                                 reason=f"{type(exc).__name__}: {exc}"[:200])
                if self._stopping.wait(delay):
                    raise

    def _handle(self, delivery: Delivery) -> None:
        try:
            incoming = self._verify(delivery)
        except GelFault as exc:
            self.log.error("adapter.unverifiable", message_id=delivery.message_id, code=str(exc.falla.code),
                           reason=exc.falla.message)
            self.transport.nack(delivery, requeue=False)  # parked on the dead-letter queue, with x-death
            return
        header = incoming.header
        if delivery.headers.get(HEADER_NOTICE):
            self.log.warning("adapter.deprecated_service", message_id=header.message_id, service=str(header.service),
                             aviso=str(delivery.headers[HEADER_NOTICE]))
        seen = self.store.receive(message_id=header.message_id, message_type=header.message_type.value,
                                  sender=header.sender, service=str(header.service))
        if seen in (InboxState.DONE, InboxState.FAILED):
            self.log.info("adapter.duplicate", message_id=header.message_id)
            self._wake.set()  # its answer may still be waiting in the outbox
            self.transport.ack(delivery)
            return
        if header.message_type is MessageType.REQUEST:
            outgoing, fault_code = self._answer(incoming)
        else:
            if self.on_message is not None:
                self.on_message(incoming)
            outgoing, fault_code = ([self._receipt(incoming)] if self._wants_receipt(header) else []), None
        self.store.complete(header.message_id, outgoing, fault_code=fault_code)
        self.transport.ack(delivery)
        if outgoing:
            self._wake.set()

    def _verify(self, delivery: Delivery) -> Incoming:
        trust = self.trust.current() if isinstance(self.trust, LiveTrustStore) else self.trust
        verified: VerifiedMessage = verify_message(delivery.body, trust, window=None)
        token = delivery.headers.get(HEADER_TIMESTAMP)
        if token:
            verify_token(base64.b64decode(token), digest=hashlib.sha256(delivery.body).digest(), trust=trust)
        return Incoming(header=verified.header, payload=payload_of(verified.root), body=delivery.body,
                        signer=verified.signer)

    def _answer(self, request: Incoming) -> tuple[list[Outgoing], str | None]:
        header = request.header
        outgoing = [self._receipt(request)] if self.receipts else []
        emitted: list[Outgoing] = []
        try:
            payload = self._run_handler(request, HandlerContext(self.entity, self.connector, self, emitted))
        except (GelFault, ConnectorError) as exc:
            falla = exc.falla
            self.log.warning("adapter.fault", message_id=header.message_id, code=str(falla.code))
            outgoing.append(self._reply(request, MessageType.FAULT, falla.to_xml()))
            return outgoing, str(falla.code)
        outgoing.append(self._reply(request, MessageType.RESPONSE, payload))
        return outgoing + emitted, None

    def _run_handler(self, request: Incoming, context: HandlerContext) -> etree._Element:
        header = request.header
        key = (header.service.code, header.service.version)
        handler = self.handlers.get(key)
        if handler is None:
            raise fault(FaultCode.ADAPTER_NO_HANDLER, entity=self.entity, service=header.service.code,
                        version=header.service.version)
        waits = self.retry.waits()
        while True:
            try:
                context._emitted.clear()
                return handler(request, context) if key in self._with_context else handler(request)
            except ConnectorError as exc:
                if not exc.retryable or not waits:
                    raise
                wait = waits.pop(0)
                self.log.warning("adapter.legacy_retry", message_id=header.message_id, code=str(exc.falla.code),
                                 wait_s=wait)
                if self._stopping.wait(wait):
                    raise
            except GelFault:
                raise
            except Exception as exc:
                if during_outage(exc, self.store.answers):
                    raise  # the adapter's own database is down: the delivery waits, no falla is sent
                self.log.exception("adapter.handler_bug", message_id=header.message_id)
                raise fault(FaultCode.ADAPTER_HANDLER_FAILED, entity=self.entity,
                            detail=type(exc).__name__) from exc

    def _reply(self, request: Incoming, message_type: MessageType, payload: etree._Element) -> Outgoing:
        header = replace(reply_header(request.header, request.body, message_type), sender=self.entity)
        body = serialize(sign_element(build_message(header, payload), self.credential))
        return Outgoing(header.message_id, request.header.sender, message_type.value, body,
                        answers=request.header.message_id)

    def _wants_receipt(self, header: Header) -> bool:
        """Events addressed to this entity are acknowledged; a fan-out event (addressed to the platform) is not."""
        return self.receipts and header.message_type is MessageType.EVENT and header.recipient == self.entity

    def _receipt(self, incoming: Incoming) -> Outgoing:
        body = build_receipt(incoming.body, self.credential, header=incoming.header)
        receipt = read_header(etree.fromstring(body))
        return Outgoing(receipt.message_id, incoming.header.sender, MessageType.RECEIPT.value, body,
                        answers=incoming.header.message_id)

    # -- outbox relay --------------------------------------------------------------------------
    def _relay_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.relay_interval)
            self._wake.clear()
            try:
                self.flush()
            except TransportError as exc:
                self.log.warning("adapter.relay_retry", reason=str(exc))
                self._stopping.wait(min(self.relay_interval, 2.0))
            except Exception as exc:
                if during_outage(exc, self.store.answers):
                    self.log.warning("adapter.store_unavailable", reason=f"{type(exc).__name__}: {exc}"[:200])
                else:
                    self.log.exception("adapter.relay_failed")
                self._stopping.wait(self.relay_interval)

    def flush(self, timeout: float = 30.0) -> int:
        """Publish every unpublished outbox row (in order) and mark them once RabbitMQ confirms.

        A row RabbitMQ refused (its ingress queue is full: `reject-publish`) or did not confirm stays in the
        outbox for the relay's next round, and so do the rows after it, so the order holds; the confirmed rows
        before it are marked, so a sender held back by the bound still moves forward as room appears."""
        total = 0
        while rows := self.store.unpublished():
            futures = [self.transport.publish(OutgoingMessage(
                exchange=INGRESS_EXCHANGE, routing_key=entity_key(self.entity), body=row.body,
                message_id=row.message_id, correlation_id=row.answers, user_id=self.entity,
            )) for row in rows]
            wait(futures, timeout=timeout)
            confirmed = 0
            for future in futures:
                if not future.done() or future.exception() is not None:
                    break
                confirmed += 1
            if confirmed:
                self.store.published([row.id for row in rows[:confirmed]])
                total += confirmed
            if confirmed < len(rows):
                stuck = futures[confirmed]
                error = stuck.exception() if stuck.done() else None
                raise error if error is not None else TransportError(
                    f"{len(rows) - confirmed} mensajes sin confirmar tras {timeout} s")
        return total

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once the outbox is empty (tests and orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while self.store.unpublished(limit=1):
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.05)
        return True
