"""Reply deadlines: a request to a service with `reply_within_seconds` in the catalog waits here for its
answer; when the time runs out the caller is told with a signed GEL-ROUTE-REPLY_TIMEOUT falla.

The table is shared by every gateway worker: a deadline is claimed by an UPDATE that only one worker can
win, so the caller hears about a timeout once. A reply arriving after its deadline is still delivered
(the caller decides what a late answer is worth); its request is then marked answered, not expired.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from broker.gelxml.envelope import Header, MessageType, ServiceRef
from broker.storage import create_tables, driver_insert, driver_marks, iso, open_engine

__all__ = ["PendingReply", "ReplyDeadlines", "ReplyState"]

_metadata = MetaData()
_pending = Table(
    "pending_replies", _metadata,
    Column("message_id", String(64), primary_key=True),
    Column("sender", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("service_code", String(128), nullable=False),
    Column("service_version", String(16), nullable=False),
    Column("within_seconds", Integer, nullable=False),
    Column("chain_id", String(64), nullable=True),
    Column("radicado", String(64), nullable=True),
    Column("deadline", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Index("ix_pending_replies_state_deadline", "state", "deadline"),
)
_COLUMNS = tuple(column.name for column in _pending.columns)
"""In table order: what `track_in`'s driver-SQL insert lists."""


class ReplyState(StrEnum):
    PENDING = "pendiente"
    ANSWERED = "respondida"
    EXPIRED = "vencida"


@dataclass(frozen=True, slots=True)
class PendingReply:
    message_id: str
    sender: str
    recipient: str
    service: ServiceRef
    within_seconds: int
    chain_id: str | None
    radicado: str | None
    deadline: dt.datetime
    state: ReplyState

    def request_header(self) -> Header:
        """The waiting request's header, as far as a falla correlated to it needs."""
        return Header(message_id=self.message_id, sent_at=self.deadline, sender=self.sender,
                      recipient=self.recipient, service=self.service, message_type=MessageType.REQUEST,
                      chain_id=self.chain_id, radicado=self.radicado)


class ReplyDeadlines:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)
        create_tables(_metadata, self._engine)

    def expect(self, request: Header, *, within_seconds: int, now: dt.datetime | None = None) -> None:
        """Start the clock for `request` (idempotent: a redelivered request keeps its first deadline)."""
        deadline = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=within_seconds)
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(_pending).values(
                    message_id=request.message_id, sender=request.sender, recipient=request.recipient,
                    service_code=request.service.code, service_version=request.service.version,
                    within_seconds=within_seconds, chain_id=request.chain_id, radicado=request.radicado,
                    deadline=iso(deadline), state=ReplyState.PENDING.value))
        except IntegrityError:
            pass

    def track(self, expected: Sequence[tuple[Header, int]], answered: Sequence[str],
              now: dt.datetime | None = None) -> None:
        """`expect` and `answered` for a batch of admitted messages, in one transaction."""
        if not expected and not answered:
            return
        moment = now or dt.datetime.now(dt.UTC)
        try:
            with self._engine.begin() as connection:
                self.track_in(connection, expected, answered, now=moment)
        except IntegrityError:  # another worker inserted one of them meanwhile: one by one, idempotently
            for header, within in expected:
                self.expect(header, within_seconds=within, now=moment)
            for request_id in answered:
                self.answered(request_id)

    @staticmethod
    def track_in(connection: Connection, expected: Sequence[tuple[Header, int]], answered: Sequence[str], *,
                 now: dt.datetime | None = None) -> None:
        """`track` inside a caller's transaction: the gateway's log append, which serialises the workers, so
        the admitted records and the reply clocks they start commit together."""
        moment = now or dt.datetime.now(dt.UTC)
        ids = [header.message_id for header, _ in expected]
        marks = partial(driver_marks, connection.dialect)
        present = {row[0] for row in connection.exec_driver_sql(
            f"SELECT message_id FROM {_pending.name} WHERE message_id IN ({marks(len(ids))})", tuple(ids),
        )} if ids else set()
        rows = [(h.message_id, h.sender, h.recipient, h.service.code, h.service.version, within, h.chain_id, h.radicado,
                 iso(moment + dt.timedelta(seconds=within)), ReplyState.PENDING.value)
                for h, within in {h.message_id: (h, w) for h, w in expected}.values()
                if h.message_id not in present]
        if rows:
            connection.exec_driver_sql(driver_insert(connection.dialect, _pending, _COLUMNS), rows)
        if answered:
            connection.exec_driver_sql(
                f"UPDATE {_pending.name} SET state = {marks(1)} "
                f"WHERE message_id IN ({marks(len(answered))}) AND state <> {marks(1)}",
                (ReplyState.ANSWERED.value, *answered, ReplyState.ANSWERED.value))

    def answered(self, request_id: str) -> bool:
        """Mark the request answered; True when it was still waiting (or had expired) and now is not."""
        with self._engine.begin() as connection:
            result = connection.execute(update(_pending).where(
                _pending.c.message_id == request_id, _pending.c.state != ReplyState.ANSWERED.value,
            ).values(state=ReplyState.ANSWERED.value))
        return bool(result.rowcount)

    def claim_expired(self, now: dt.datetime | None = None, *, limit: int = 100) -> list[PendingReply]:
        """Requests whose deadline passed, each returned to exactly one caller across all workers."""
        moment = iso(now or dt.datetime.now(dt.UTC))
        claimed: list[PendingReply] = []
        with self._engine.connect() as connection:
            rows = connection.execute(select(_pending).where(
                _pending.c.state == ReplyState.PENDING.value, _pending.c.deadline <= moment,
            ).order_by(_pending.c.deadline).limit(limit)).all()
        for row in rows:
            with self._engine.begin() as connection:
                won = connection.execute(update(_pending).where(
                    _pending.c.message_id == row.message_id, _pending.c.state == ReplyState.PENDING.value,
                ).values(state=ReplyState.EXPIRED.value)).rowcount
            if won:
                claimed.append(_pending_of(row, ReplyState.EXPIRED))
        return claimed

    def release(self, request_id: str) -> None:
        """Put a claimed deadline back (its falla could not be sent); the next sweep claims it again."""
        with self._engine.begin() as connection:
            connection.execute(update(_pending).where(
                _pending.c.message_id == request_id, _pending.c.state == ReplyState.EXPIRED.value,
            ).values(state=ReplyState.PENDING.value))

    def get(self, request_id: str) -> PendingReply | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(_pending).where(_pending.c.message_id == request_id)).first()
        return _pending_of(row, ReplyState(row.state)) if row is not None else None

    def close(self) -> None:
        self._engine.dispose()


def _pending_of(row: object, state: ReplyState) -> PendingReply:
    return PendingReply(
        message_id=row.message_id, sender=row.sender, recipient=row.recipient,  # type: ignore[attr-defined]
        service=ServiceRef(row.service_code, row.service_version),  # type: ignore[attr-defined]
        within_seconds=row.within_seconds, chain_id=row.chain_id, radicado=row.radicado,  # type: ignore[attr-defined]
        deadline=dt.datetime.fromisoformat(row.deadline), state=state,  # type: ignore[attr-defined]
    )
