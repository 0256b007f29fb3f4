"""Operational records (X-Road style): one row per message hop with times, size, outcome and fault code.

Unlike the message log these rows hold no message content and are not chained: they are for monitoring
(who is slow, what fails, how much traffic) and are queried by the monitoring API.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    select,
)

from broker.storage import create_tables, driver_insert, iso, open_engine

__all__ = ["OperationalRecord", "OperationalRecords", "operational_records"]

_metadata = MetaData()
_records = Table(
    "operational_records", _metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("hop", String(32), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("service", String(128), nullable=False),
    Column("received_at", String(32), nullable=False),
    Column("completed_at", String(32), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("fault_code", String(64), nullable=True),
    Column("log_seq", BigInteger, nullable=True),
    Column("attempt", Integer, nullable=False),
    Index("ix_operational_records_message_id", "message_id"),
    Index("ix_operational_records_completed_at", "completed_at"),
)

operational_records = _records
_WRITTEN = tuple(column.name for column in _records.columns if column.name != "id")
"""In table order: what `add_many`'s driver-SQL insert lists."""


@dataclass(frozen=True, slots=True)
class OperationalRecord:
    message_id: str
    hop: str
    sender: str
    recipient: str
    service: str
    received_at: dt.datetime
    completed_at: dt.datetime
    duration_ms: float
    size_bytes: int
    outcome: str
    fault_code: str | None = None
    log_seq: int | None = None
    attempt: int = 0


class OperationalRecords:
    def __init__(self, url: str) -> None:
        self._engine = open_engine(url, durable=False)
        create_tables(_metadata, self._engine)
        self._insert = driver_insert(self._engine.dialect, _records, _WRITTEN)

    def add(self, record: OperationalRecord) -> None:
        self.add_many([record])

    def add_many(self, records: Sequence[OperationalRecord]) -> None:
        """Write several records in one transaction."""
        if not records:
            return
        with self._engine.begin() as connection:
            connection.exec_driver_sql(self._insert, [(
                r.message_id, r.hop, r.sender, r.recipient, r.service, iso(r.received_at), iso(r.completed_at),
                r.duration_ms, r.size_bytes, r.outcome, r.fault_code, r.log_seq, r.attempt,
            ) for r in records])

    def for_message(self, message_id: str) -> list[OperationalRecord]:
        return self._select(select(_records).where(_records.c.message_id == message_id).order_by(_records.c.id))

    def since(self, moment: dt.datetime, *, limit: int = 1000) -> list[OperationalRecord]:
        query = (select(_records).where(_records.c.completed_at >= iso(moment))
                 .order_by(_records.c.id).limit(limit))
        return self._select(query)

    def _select(self, query: Select[Any]) -> list[OperationalRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            OperationalRecord(
                message_id=r.message_id, hop=r.hop, sender=r.sender, recipient=r.recipient, service=r.service,
                received_at=dt.datetime.fromisoformat(r.received_at),
                completed_at=dt.datetime.fromisoformat(r.completed_at), duration_ms=r.duration_ms,
                size_bytes=r.size_bytes, outcome=r.outcome, fault_code=r.fault_code, log_seq=r.log_seq,
                attempt=r.attempt,
            )
            for r in rows
        ]

    def close(self) -> None:
        self._engine.dispose()
