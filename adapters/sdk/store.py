"""The adapter's own durable memory: an inbox that makes receipt idempotent and an outbox that makes
publishing transactional.

- **Inbox** (keyed by idMensaje): a message already handled is not handled again after a redelivery or a
  restart; a request that was being handled when the process died is handled again (nothing was
  published for it, because publishing only happens from the outbox, after the commit).
- **Outbox**: every message the adapter sends (replies, receipts, faults, its own requests) is written,
  signed, in the same transaction that records the work done; a relay publishes the rows and marks them
  published after RabbitMQ's confirm. A crash after the commit re-publishes the same signed bytes, which
  the platform and the recipient recognise as a duplicate by idMensaje.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from broker.storage import answers, create_tables, iso, open_engine

__all__ = ["AdapterStore", "InboxState", "Outgoing", "OutgoingRow"]

_metadata = MetaData()
_inbox = Table(
    "adapter_inbox", _metadata,
    Column("message_id", String(64), primary_key=True),
    Column("message_type", String(16), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("service", String(128), nullable=False),
    Column("received_at", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("fault_code", String(64), nullable=True),
)
_outbox = Table(
    "adapter_outbox", _metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("recipient", String(64), nullable=False),
    Column("message_type", String(16), nullable=False),
    Column("answers", String(64), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("published_at", String(32), nullable=True),
    Index("ix_adapter_outbox_unpublished", "published_at", "id"),
)


class InboxState(StrEnum):
    HANDLING = "procesando"
    DONE = "atendido"
    FAILED = "fallido"


@dataclass(frozen=True, slots=True)
class OutgoingRow:
    """A signed message waiting in (or published from) the outbox."""

    id: int
    message_id: str
    recipient: str
    message_type: str
    answers: str | None
    body: bytes
    published: bool


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What to put in the outbox: signed bytes and where they go."""

    message_id: str
    recipient: str
    message_type: str
    body: bytes
    answers: str | None = None


class AdapterStore:
    """SQLite (default, one file per adapter) or PostgreSQL, through one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)
        create_tables(_metadata, self._engine)

    # -- inbox ---------------------------------------------------------------------------------
    def receive(self, *, message_id: str, message_type: str, sender: str, service: str) -> InboxState | None:
        """Note that `message_id` arrived; its previous state if it had (None: first time seen)."""
        with self._engine.begin() as connection:
            row = connection.execute(select(_inbox.c.state).where(_inbox.c.message_id == message_id)).first()
            if row is not None:
                connection.execute(update(_inbox).where(_inbox.c.message_id == message_id)
                                   .values(attempts=_inbox.c.attempts + 1))
                return InboxState(row.state)
            try:
                connection.execute(insert(_inbox).values(
                    message_id=message_id, message_type=message_type, sender=sender, service=service,
                    received_at=iso(dt.datetime.now(dt.UTC)), state=InboxState.HANDLING.value, attempts=1))
            except IntegrityError:
                return InboxState.HANDLING
        return None

    def complete(self, message_id: str, outgoing: Sequence[Outgoing], *, fault_code: str | None = None) -> None:
        """Record the outcome and queue what it sends, in one transaction."""
        state = InboxState.FAILED if fault_code else InboxState.DONE
        now = iso(dt.datetime.now(dt.UTC))
        with self._engine.begin() as connection:
            connection.execute(update(_inbox).where(_inbox.c.message_id == message_id)
                               .values(state=state.value, fault_code=fault_code))
            for item in outgoing:
                connection.execute(insert(_outbox).values(
                    message_id=item.message_id, recipient=item.recipient, message_type=item.message_type,
                    answers=item.answers, body=item.body, created_at=now))

    def state(self, message_id: str) -> InboxState | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(_inbox.c.state).where(_inbox.c.message_id == message_id)).first()
        return InboxState(row.state) if row is not None else None

    def answers(self) -> bool:
        """Whether the store's database takes a query now."""
        return answers(self._engine)

    # -- outbox --------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The store's engine, for components that commit their own state with the outbox (the orchestrator)."""
        return self._engine

    def enqueue(self, outgoing: Sequence[Outgoing], *, connection: Connection | None = None) -> None:
        """Queue messages that answer nothing received (the adapter's own requests and events); inside the
        caller's transaction when `connection` is given."""
        if connection is None:
            with self._engine.begin() as own:
                self.enqueue(outgoing, connection=own)
            return
        now = iso(dt.datetime.now(dt.UTC))
        for item in outgoing:
            connection.execute(insert(_outbox).values(
                message_id=item.message_id, recipient=item.recipient, message_type=item.message_type,
                answers=item.answers, body=item.body, created_at=now))

    def unpublished(self, limit: int = 100) -> list[OutgoingRow]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(_outbox).where(_outbox.c.published_at.is_(None))
                                      .order_by(_outbox.c.id).limit(limit)).all()
        return [_row_of(r) for r in rows]

    def published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._engine.begin() as connection:
            connection.execute(update(_outbox).where(_outbox.c.id.in_(list(ids)))
                               .values(published_at=iso(dt.datetime.now(dt.UTC))))

    def sent(self, *, answers: str | None = None, message_id: str | None = None) -> list[OutgoingRow]:
        """Outbox rows answering a received message, or one sent message by its idMensaje."""
        query = select(_outbox).order_by(_outbox.c.id)
        if answers is not None:
            query = query.where(_outbox.c.answers == answers)
        if message_id is not None:
            query = query.where(_outbox.c.message_id == message_id)
        with self._engine.connect() as connection:
            return [_row_of(r) for r in connection.execute(query).all()]

    def close(self) -> None:
        self._engine.dispose()


def _row_of(row: object) -> OutgoingRow:
    return OutgoingRow(
        id=row.id, message_id=row.message_id, recipient=row.recipient,  # type: ignore[attr-defined]
        message_type=row.message_type, answers=row.answers, body=bytes(row.body),  # type: ignore[attr-defined]
        published=row.published_at is not None,  # type: ignore[attr-defined]
    )
