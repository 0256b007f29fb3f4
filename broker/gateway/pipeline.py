"""The admission pipeline: what the gateway does to every message before routing it.

    parse (hardened) → validate (envelope + payload) → authenticate (signature, chain, CRL, sender,
    freshness, AMQP user = entidadOrigen) → authorise (catalog, deny by default) → replay
    → time-stamp (platform TSA, over the bytes as received) → record (hash chain)

Every message ends in the log: admitted with its time-stamp token, or rejected with its fault code.
Nothing is dropped silently. Routing is the gateway's (broker/gateway/gateway.py), on `Admitted`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.engine import Connection

from broker.catalog import Catalog
from broker.catalog.live import LiveCatalog
from broker.gelxml import Falla, GelFault, ParseLimits, SchemaRegistry, ValidatedMessage, check_message
from broker.gelxml.envelope import Header, MessageType, read_header
from broker.gelxml.faults import FaultCode, Location, fault
from broker.gelxml.parsing import DEFAULT_LIMITS, parse_untrusted
from broker.security.message_log import LogEntry, LogRecord, MessageLog
from broker.security.pki import LiveTrustStore, TrustStore
from broker.security.timestamp import TimeStampAuthority, TimeStampToken
from broker.security.verification import ReplayGuard, VerifiedMessage, verify_message

__all__ = ["Admitted", "Arrival", "Duplicate", "LogReplayGuard", "Pipeline", "Rejected"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A message that passed every stage: validated, authenticated, stamped and recorded."""

    message: ValidatedMessage
    verified: VerifiedMessage
    token: TimeStampToken
    record: LogRecord
    recipients: tuple[str, ...]
    """Where to route it: the envelope's recipient, or an event's subscribers (catalog fan-out)."""
    notice: str | None = None
    """The catalog's warning for a deprecated service version, delivered with the message."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A copy of a message already admitted (a sender's resend, or a worker racing on a redelivery): the
    log keeps the first; route that one again, the recipient dedupes by idMensaje."""

    record: LogRecord
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused message: the fault to send back, and the log record that keeps it."""

    falla: Falla
    record: LogRecord


@dataclass(frozen=True, slots=True)
class Arrival:
    """One delivery to admit: its bytes, the AMQP user RabbitMQ authenticated, and where it came from."""

    data: bytes
    transport_user: str | None = None
    routing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Checked:
    message: ValidatedMessage
    verified: VerifiedMessage
    digest: bytes


def _replay(message_id: str) -> Falla:
    return fault(FaultCode.DUP_REPLAY, location=Location(xpath="/mensaje/encabezado/idMensaje"),
                 message_id=message_id).falla


def _header_if_readable(data: bytes, limits: ParseLimits) -> Header | None:
    try:
        return read_header(parse_untrusted(data, limits))
    except (GelFault, ValueError, KeyError):
        return None


class LogReplayGuard:
    """Replay memory shared by every gateway worker: an idMensaje already admitted to the log is a replay."""

    def __init__(self, log: MessageLog) -> None:
        self.log = log

    def first_seen(self, message_id: str, sent_at: object) -> bool:
        return not any(r.outcome == "aceptado" for r in self.log.find(message_id))


@dataclass(frozen=True, slots=True)
class Pipeline:
    registry: SchemaRegistry
    trust: TrustStore | LiveTrustStore
    tsa: TimeStampAuthority
    log: MessageLog
    replay: ReplayGuard | None
    window: timedelta | None = timedelta(seconds=300)
    limits: ParseLimits = DEFAULT_LIMITS
    catalog: Catalog | LiveCatalog | None = None
    """A static catalog, or the live one whose published schemas also extend `registry`."""
    platform_id: str | None = None
    """The gateway's entity id: an event addressed to it is published to the service's subscribers."""

    def language(self) -> SchemaRegistry:
        """The schemas to validate against: the live catalog's (with published services) or the fixed ones."""
        return self.catalog.registry if isinstance(self.catalog, LiveCatalog) else self.registry

    def recipients_of(self, header: Header) -> tuple[str, ...]:
        if self.catalog is None:
            return (header.recipient,)
        return self.catalog.recipients(header, platform_id=self.platform_id)

    def routed_request(self, message_id: str) -> tuple[str, str, MessageType] | None:
        """(sender, recipient, type) of the message `message_id` if the platform admitted it."""
        for record in self.log.find(message_id):
            if record.outcome == "aceptado":
                return (record.sender, record.recipient, MessageType(record.message_type))
        return None

    def admit(self, data: bytes, *, transport_user: str | None = None,
              routing: dict[str, str] | None = None) -> Admitted | Duplicate | Rejected:
        """Run every stage; `transport_user` is the AMQP user RabbitMQ authenticated for this delivery."""
        return self.admit_batch([Arrival(data, transport_user, routing or {})])[0]

    def admit_batch(self, arrivals: Sequence[Arrival], *, logged: Mapping[str, Sequence[LogRecord]] | None = None,
                    on_admitted: Callable[[Connection, list[Header]], None] | None = None,
                    ) -> list[Admitted | Duplicate | Rejected]:
        """Run every stage on several deliveries: checks one by one, the replay memory read once, and every
        log record (admitted or refused) written in one transaction. Outcomes in the order of `arrivals`.
        `logged` is what the caller just read from the log for these idMensaje values (the gateway reads it for
        its redelivery check), so the replay memory is not read a second time. `on_admitted` writes, in the
        log's transaction, what follows from the headers of the messages admitted (the gateway's reply clocks)."""
        checked = [self._check(a) for a in arrivals]
        self._refuse_replays(checked, logged)
        entries: list[tuple[LogEntry, bool]] = []
        tokens: list[TimeStampToken | None] = []
        for arrival, item in zip(arrivals, checked, strict=True):
            if isinstance(item, _Checked):
                stamped = self.tsa.stamp(item.digest)
                tokens.append(stamped)
                header = item.verified.header
                entries.append((LogEntry(
                    message=arrival.data, message_id=header.message_id, sender=header.sender,
                    recipient=header.recipient, service=str(header.service), message_type=header.message_type.value,
                    outcome="aceptado", token=stamped.der, routing=arrival.routing), True))
            else:
                tokens.append(None)
                entries.append((self._rejection(arrival, item), False))
        def within(connection: Connection, results: list[tuple[LogRecord, bool]]) -> None:
            if on_admitted is not None:
                admitted = zip(checked, results, strict=True)
                on_admitted(connection, [item.verified.header for item, (_, created) in admitted
                                         if isinstance(item, _Checked) and created])

        outcomes: list[Admitted | Duplicate | Rejected] = []
        appended = self.log.append_many(entries, also=within if on_admitted is not None else None)
        for arrival, item, token, (record, created) in zip(arrivals, checked, tokens, appended, strict=True):
            if not isinstance(item, _Checked):
                outcomes.append(Rejected(falla=item, record=record))
                continue
            header = item.verified.header
            if created:
                assert token is not None
                outcomes.append(Admitted(message=item.message, verified=item.verified, token=token, record=record,
                                         recipients=self.recipients_of(header),
                                         notice=self.catalog.notice(header) if self.catalog is not None else None))
            elif record.message_sha256 == item.digest.hex():
                outcomes.append(Duplicate(record=record, recipients=self.recipients_of(header)))
            else:
                outcomes.append(self._reject(arrival.data, _replay(header.message_id), arrival.routing))
        return outcomes

    def _check(self, arrival: Arrival) -> _Checked | Falla:
        """Parse, validate, authenticate and authorise one delivery (everything before the replay memory)."""
        try:
            message = check_message(arrival.data, self.language(), self.limits)
            trust = self.trust.current() if isinstance(self.trust, LiveTrustStore) else self.trust
            verified = verify_message(message.root, trust, replay=None, window=self.window)
            header = verified.header
            if arrival.transport_user is not None and arrival.transport_user != header.sender:
                raise fault(FaultCode.AUTH_TRANSPORT_USER, location=Location(xpath="/mensaje/encabezado/entidadOrigen"),
                            transport_user=arrival.transport_user, claimed=header.sender)
            if self.catalog is not None:
                self.catalog.authorise(header, routed_request=self.routed_request, platform_id=self.platform_id)
        except GelFault as exc:
            return exc.falla
        return _Checked(message=message, verified=verified, digest=hashlib.sha256(arrival.data).digest())

    def _refuse_replays(self, checked: list[_Checked | Falla],
                        logged: Mapping[str, Sequence[LogRecord]] | None) -> None:
        """Turn a checked message whose idMensaje the replay memory already holds into a DUP_REPLAY fault."""
        if self.replay is None:
            return
        ids = [c.verified.header.message_id for c in checked if isinstance(c, _Checked)]
        if isinstance(self.replay, LogReplayGuard):
            records = logged if logged is not None and all(i in logged for i in ids) else self.log.find_many(ids)
            known = {m for m, found in records.items() if any(r.outcome == "aceptado" for r in found)}
        else:
            known = {c.verified.header.message_id for c in checked if isinstance(c, _Checked)
                     and not self.replay.first_seen(c.verified.header.message_id, c.verified.header.sent_at)}
        for index, item in enumerate(checked):
            if isinstance(item, _Checked) and item.verified.header.message_id in known:
                checked[index] = _replay(item.verified.header.message_id)

    def _rejection(self, arrival: Arrival, falla: Falla) -> LogEntry:
        header = _header_if_readable(arrival.data, self.limits)
        return LogEntry(
            message=arrival.data,
            message_id=header.message_id if header else "",
            sender=header.sender if header else "",
            recipient=header.recipient if header else "",
            service=str(header.service) if header else "",
            message_type=header.message_type.value if header else "",
            outcome="rechazado",
            fault_code=str(falla.code),
            routing=arrival.routing,
        )

    def _reject(self, data: bytes, falla: Falla, routing: dict[str, str]) -> Rejected:
        record = self.log.append(self._rejection(Arrival(data, None, routing), falla))
        return Rejected(falla=falla, record=record)
