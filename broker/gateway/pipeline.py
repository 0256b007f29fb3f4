"""The admission pipeline: what the gateway does to every message before routing it.

    parse (hardened) → validate (envelope + payload) → authenticate (signature, chain, CRL, sender)
    → freshness and replay → time-stamp (platform TSA, over the bytes as received) → record (hash chain)

Every message ends in the log: admitted with its time-stamp token, or rejected with its fault code.
Nothing is dropped silently. Authorisation against the catalog and routing over RabbitMQ are the next
stages (they compose on `Admitted`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from broker.gelxml import Falla, GelFault, ParseLimits, SchemaRegistry, ValidatedMessage, check_message
from broker.gelxml.envelope import Header, read_header
from broker.gelxml.parsing import DEFAULT_LIMITS, parse_untrusted
from broker.security.message_log import LogEntry, LogRecord, MessageLog
from broker.security.pki import TrustStore
from broker.security.timestamp import TimeStampAuthority, TimeStampToken
from broker.security.verification import ReplayGuard, VerifiedMessage, verify_message

__all__ = ["Admitted", "Pipeline", "Rejected"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A message that passed every stage: validated, authenticated, stamped and recorded."""

    message: ValidatedMessage
    verified: VerifiedMessage
    token: TimeStampToken
    record: LogRecord


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused message: the fault to send back, and the log record that keeps it."""

    falla: Falla
    record: LogRecord


def _header_if_readable(data: bytes, limits: ParseLimits) -> Header | None:
    try:
        return read_header(parse_untrusted(data, limits))
    except (GelFault, ValueError, KeyError):
        return None


@dataclass(frozen=True, slots=True)
class Pipeline:
    registry: SchemaRegistry
    trust: TrustStore
    tsa: TimeStampAuthority
    log: MessageLog
    replay: ReplayGuard | None
    window: timedelta | None = timedelta(seconds=300)
    limits: ParseLimits = DEFAULT_LIMITS

    def admit(self, data: bytes, *, routing: dict[str, str] | None = None) -> Admitted | Rejected:
        try:
            message = check_message(data, self.registry, self.limits)
            verified = verify_message(message.root, self.trust, replay=self.replay, window=self.window)
        except GelFault as exc:
            return self._reject(data, exc.falla, routing or {})
        token = self.tsa.stamp(hashlib.sha256(data).digest())
        header = verified.header
        record = self.log.append(LogEntry(
            message=data, message_id=header.message_id, sender=header.sender, recipient=header.recipient,
            service=str(header.service), message_type=header.message_type.value, outcome="aceptado",
            token=token.der, routing=routing or {},
        ))
        return Admitted(message=message, verified=verified, token=token, record=record)

    def _reject(self, data: bytes, falla: Falla, routing: dict[str, str]) -> Rejected:
        header = _header_if_readable(data, self.limits)
        record = self.log.append(LogEntry(
            message=data,
            message_id=header.message_id if header else "",
            sender=header.sender if header else "",
            recipient=header.recipient if header else "",
            service=str(header.service) if header else "",
            message_type=header.message_type.value if header else "",
            outcome="rechazado",
            fault_code=str(falla.code),
            routing=routing,
        ))
        return Rejected(falla=falla, record=record)
