"""Firing the hostile corpus at a running platform and reading what it did, on either transport.

Publishing goes through `LocalPlatform.send` whenever the body has a readable envelope; bytes without one
(garbage, oversize), which `send` cannot read, go over the same entity connection to the ingress exchange
with the publisher's own routing key (`entity_key`), as `send` publishes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import pytest

from broker.gateway.gateway import HEADER_RECORD, Routed
from broker.gateway.local import LocalPlatform
from broker.gelxml import GelFault, MessageType
from broker.gelxml.envelope import Header, read_header
from broker.gelxml.parsing import parse_untrusted
from broker.security.message_log import LogRecord
from broker.security.verification import verify_message
from broker.transport.abc import Delivery, OutgoingMessage, PublishError, Transport
from broker.transport.topology import DEAD_LETTER_QUEUE, INGRESS_EXCHANGE, entity_key
from tests.security.attacks import (
    ADRES,
    ATTACKER,
    ORCHESTRATOR,
    REGISTRADURIA,
    VICTIM,
    Attack,
    Kit,
    Shot,
    bystander_message,
)

__all__ = ["WATCHED", "Range", "digest", "fault_code_of", "fire_burst", "header_of"]

WATCHED = (ATTACKER, ADRES, VICTIM, REGISTRADURIA)
"""The queues a test reads: the attacker's (its fallas), the attacked, the victim's, the bystander's recipient."""


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def header_of(body: bytes) -> Header | None:
    try:
        return read_header(parse_untrusted(body))
    except (GelFault, ValueError, KeyError):
        return None


def fault_code_of(delivery: Delivery) -> str:
    return parse_untrusted(delivery.body).findtext("{*}cuerpo/{*}falla/{*}codFalla") or ""


@dataclass
class Range:
    """A running platform, the kit the attacks are built from, and the platform's own id."""

    local: LocalPlatform
    kit: Kit
    gateway_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.gateway_id = self.local.parts.gateway.platform_id

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, shot: Shot) -> None:
        """Publish one shot and wait for the broker's confirm (raises `PublishError` when refused)."""
        if header_of(shot.body) is not None:
            self.local.send(shot.publisher, shot.body, user_id=shot.user_id, anonymous=shot.user_id is None)
            return
        self.local.transport(shot.publisher).publish_all([OutgoingMessage(
            exchange=INGRESS_EXCHANGE, routing_key=entity_key(shot.publisher), body=shot.body, user_id=shot.user_id)])

    def admit(self, shot: Shot) -> None:
        """Publish a legitimate message and wait until its recipient has it."""
        header = header_of(shot.body)
        assert header is not None
        self.publish(shot)
        delivery = self.local.receive(header.recipient, timeout=20)
        assert delivery is not None and delivery.body == shot.body, f"{header.message_id} was not delivered"

    def bystander(self) -> bytes:
        """Send one legitimate message from another entity; return its bytes."""
        body = bystander_message(self.kit)
        self.local.send(ORCHESTRATOR, body)
        return body

    # -- observing ----------------------------------------------------------------------------
    def receive(self, entity: str, timeout: float = 20.0) -> Delivery | None:
        return self.local.receive(entity, timeout=timeout)

    def collect(self, entity: str, count: int, timeout: float = 30.0) -> list[Delivery]:
        """Up to `count` deliveries from `entity`'s queue, waiting at most `timeout` seconds in all."""
        got: list[Delivery] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            delivery = self.local.receive(entity, timeout=0.5)
            if delivery is not None:
                got.append(delivery)
        return got

    def drain(self, *entities: str) -> list[Delivery]:
        got: list[Delivery] = []
        for entity in entities:
            while (delivery := self.local.receive(entity, timeout=0.01)) is not None:
                got.append(delivery)
        return got

    def quiet(self, timeout: float = 0.02) -> list[str]:
        """The entities an attack must never reach that nevertheless got something (should be none). Called
        once the attack's fate is known (its falla or dead letter seen), so a short look is enough."""
        return [entity for entity in (ADRES, VICTIM, REGISTRADURIA)
                if self.local.receive(entity, timeout=timeout) is not None]

    def dead_letters(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        transport = self.local.transport(self.gateway_id)
        parked: list[Delivery] = []
        deadline = time.monotonic() + timeout
        while len(parked) < count and time.monotonic() < deadline:
            delivery = transport.get(DEAD_LETTER_QUEUE, timeout=0.2)
            if delivery is not None:
                transport.ack(delivery)
                parked.append(delivery)
        return parked

    def drain_dead_letters(self) -> None:
        transport = self.local.transport(self.gateway_id)
        for delivery in self.drain_queue(transport, DEAD_LETTER_QUEUE):
            transport.ack(delivery)

    @staticmethod
    def drain_queue(transport: Transport, queue: str) -> list[Delivery]:
        """Every delivery waiting in `queue`, unsettled."""
        got: list[Delivery] = []
        while (delivery := transport.get(queue, timeout=0.05)) is not None:
            got.append(delivery)
        return got

    def record_of(self, falla: Delivery) -> LogRecord:
        """The log record a falla points at (x-gel-registro)."""
        return self.local.parts.log.get(int(falla.headers[HEADER_RECORD]))

    def check_falla(self, delivery: Delivery, refused: bytes) -> LogRecord:
        """The falla is the gateway's, signed, of type falla, correlated to the refused message when it had a
        readable idMensaje, and points (x-gel-registro) at the log record of exactly the refused bytes."""
        verified = verify_message(delivery.body, self.kit.pki.trust_store(), window=None)
        assert verified.signer == self.gateway_id
        assert verified.header.message_type is MessageType.FAULT
        record = self.record_of(delivery)
        assert record.message_sha256 == digest(refused), "the falla names the record of the refused bytes"
        assert record.outcome == "rechazado" and record.fault_code == fault_code_of(delivery)
        header = header_of(refused)
        if header is not None and header.message_id:
            assert verified.header.correlation_id == header.message_id == record.message_id
        return record

    def last_seq(self) -> int:
        """The seq of the newest message log record (0 when the log is empty)."""
        head = self.local.parts.log.head()
        return head[0] if head is not None else 0

    def records_after(self, seq: int) -> list[LogRecord]:
        return list(self.local.parts.log.records(start=seq + 1))

    def routed_after(self, seq: int, timeout: float = 20.0) -> Routed:
        """The gateway's report of the first delivery it logged after record `seq` (only one in flight)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in list(self.local.routed) if r.record is not None and r.record > seq]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"the gateway reported nothing after record {seq}")


def fire_burst(shooting: Range, attacks: list[Attack]) -> None:
    """Fire `attacks` back to back, each followed by a legitimate message from another entity; then check
    every legitimate message arrived, every falla carries its attack's code and points at its bytes, nothing
    was parked, and nothing reached the attacked recipients or the victim."""
    shots = [(attack, attack.build(shooting.kit)) for attack in attacks]
    for _, shot in shots:
        for before in shot.before:
            shooting.admit(before)
    by_digest = {digest(shot.body): (attack, shot) for attack, shot in shots}
    assert len(by_digest) == len(shots), "every attack is a distinct message"

    legitimate: set[str] = set()
    for attack, shot in shots:
        if attack.observed == "transporte":
            with pytest.raises(PublishError):
                shooting.publish(shot)
        else:
            shooting.publish(shot)
        legitimate.add(digest(shooting.bystander()))

    arrived = {digest(d.body) for d in shooting.collect(REGISTRADURIA, len(legitimate), timeout=60)}
    assert arrived == legitimate, f"{len(legitimate - arrived)} legitimate messages did not arrive"

    expected = {attack.name: str(attack.code) for attack, _ in shots if attack.observed == "falla"}
    answered: dict[str, str] = {}
    for falla in shooting.collect(ATTACKER, len(expected), timeout=60):
        attack, shot = by_digest[shooting.record_of(falla).message_sha256]
        shooting.check_falla(falla, shot.body)
        answered[attack.name] = fault_code_of(falla)
    assert answered == expected

    parked = shooting.dead_letters(1, timeout=0.5)
    assert parked == [], f"parked instead of answered: {[by_digest[digest(p.body)][0].name for p in parked]}"
    assert shooting.quiet(timeout=0.3) == []
