"""The orchestrator's durable memory: definitions as started, instances with their state, history, timers,
human tasks and the message ↔ step correlation. Shares its database (and transactions) with the
orchestrator's outbox, so a state change and the messages it sends commit together."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from broker.storage import create_tables, iso

__all__ = ["InstanceRow", "OrchestratorStore", "TaskRow", "TimerRow"]

_metadata = MetaData()
_id = BigInteger().with_variant(Integer, "sqlite")
definitions = Table(
    "chain_definitions", _metadata,
    Column("digest", String(64), primary_key=True),
    Column("chain", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("stored_at", String(32), nullable=False),
)
instances = Table(
    "chain_instances", _metadata,
    Column("id", String(64), primary_key=True),
    Column("chain", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("radicado", String(32), nullable=False, unique=True),
    Column("start_key", String(128), nullable=True, unique=True),
    Column("started_by", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("outcome", String(64), nullable=True),
    Column("summary", Text, nullable=True),
    Column("late", Boolean, nullable=False, default=False),
    Column("holders", String(512), nullable=False, default=""),
    Column("steps", String(512), nullable=False, default=""),
    Column("due_at", String(32), nullable=True),
    Column("started_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("ended_at", String(32), nullable=True),
    Column("revision", Integer, nullable=False, default=0),
    Column("state", Text, nullable=False),
    Index("ix_chain_instances_status", "chain", "status"),
)
events = Table(
    "chain_events", _metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("instance", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step", String(64), nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_chain_events_instance", "instance", "id"),
)
timers = Table(
    "chain_timers", _metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("instance", String(64), nullable=False),
    Column("token", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ref", String(128), nullable=False),
    Column("due_at", String(32), nullable=False),
    Column("fired_at", String(32), nullable=True),
    Index("ix_chain_timers_due", "fired_at", "due_at"),
)
tasks = Table(
    "chain_tasks", _metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("instance", String(64), nullable=False),
    Column("token", String(32), nullable=False),
    Column("ref", String(128), nullable=False),
    Column("step", String(64), nullable=False),
    Column("title", String(256), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("fields", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("due_at", String(32), nullable=True),
    Column("completed_at", String(32), nullable=True),
    Column("completed_by", String(128), nullable=True),
    Column("values", Text, nullable=True),
    Index("ix_chain_tasks_open", "status", "entity"),
)
messages = Table(
    "chain_messages", _metadata,
    Column("message_id", String(64), primary_key=True),
    Column("instance", String(64), nullable=False),
    Column("step", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("sent_at", String(32), nullable=False),
    Column("answered_at", String(32), nullable=True),
)
counters = Table(
    "chain_counters", _metadata,
    Column("series", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    id: str
    chain: str
    version: int
    digest: str
    radicado: str
    status: str
    outcome: str | None
    summary: str | None
    late: bool
    holders: tuple[str, ...]
    steps: tuple[str, ...]
    due_at: str | None
    started_at: str
    updated_at: str
    ended_at: str | None
    revision: int
    state: dict[str, Any]
    started_by: str | None


@dataclass(frozen=True, slots=True)
class TimerRow:
    id: int
    instance: str
    token: str
    kind: str
    ref: str
    due_at: str


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: int
    instance: str
    token: str
    ref: str
    step: str
    title: str
    entity: str
    fields: tuple[str, ...]
    status: str
    created_at: str
    due_at: str | None
    completed_by: str | None


def _instance(row: Any) -> InstanceRow:
    return InstanceRow(
        id=row.id, chain=row.chain, version=row.version, digest=row.digest, radicado=row.radicado,
        status=row.status, outcome=row.outcome, summary=row.summary, late=bool(row.late),
        holders=tuple(h for h in row.holders.split(",") if h), steps=tuple(s for s in row.steps.split(",") if s),
        due_at=row.due_at, started_at=row.started_at, updated_at=row.updated_at, ended_at=row.ended_at,
        revision=row.revision, state=json.loads(row.state), started_by=row.started_by,
    )


def _task(row: Any) -> TaskRow:
    return TaskRow(id=row.id, instance=row.instance, token=row.token, ref=row.ref, step=row.step, title=row.title,
                   entity=row.entity, fields=tuple(json.loads(row.fields)), status=row.status,
                   created_at=row.created_at, due_at=row.due_at, completed_by=row.completed_by)


class OrchestratorStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(_metadata, engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    # -- definitions ------------------------------------------------------------------------------------
    def remember_definition(self, connection: Connection, digest: str, chain: str, version: int,
                            text: str) -> str | None:
        """Store a definition's text once; the digest of a different text already stored under the same
        chain and version, if any (a change without a new version number)."""
        rows = connection.execute(select(definitions.c.digest).where(
            and_(definitions.c.chain == chain, definitions.c.version == version))).all()
        if any(r.digest == digest for r in rows):
            return None
        if rows:
            return str(rows[0].digest)
        connection.execute(insert(definitions).values(digest=digest, chain=chain, version=version, text=text,
                                                      stored_at=iso(dt.datetime.now(dt.UTC))))
        return None

    def definition_text(self, digest: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(select(definitions.c.text).where(definitions.c.digest == digest)).scalar()

    # -- instances --------------------------------------------------------------------------------------
    def next_number(self, connection: Connection, series: str) -> int:
        updated = connection.execute(update(counters).where(counters.c.series == series)
                                     .values(value=counters.c.value + 1)).rowcount
        if not updated:
            connection.execute(insert(counters).values(series=series, value=1))
        return int(connection.execute(select(counters.c.value).where(counters.c.series == series)).scalar_one())

    def insert_instance(self, connection: Connection, **values: Any) -> None:
        connection.execute(insert(instances).values(**values))

    def by_start_key(self, connection: Connection, key: str) -> InstanceRow | None:
        row = connection.execute(select(instances).where(instances.c.start_key == key)).first()
        return _instance(row) if row is not None else None

    def load(self, connection: Connection, instance_id: str) -> InstanceRow | None:
        row = connection.execute(select(instances).where(instances.c.id == instance_id)).first()
        return _instance(row) if row is not None else None

    def get(self, key: str) -> InstanceRow | None:
        """An instance by id or radicado."""
        with self.engine.connect() as connection:
            row = connection.execute(select(instances).where(
                (instances.c.id == key) | (instances.c.radicado == key))).first()
        return _instance(row) if row is not None else None

    def save(self, connection: Connection, previous: InstanceRow, **values: Any) -> bool:
        """Write a transition's result unless another process moved the instance meanwhile."""
        result = connection.execute(update(instances).where(
            and_(instances.c.id == previous.id, instances.c.revision == previous.revision))
            .values(revision=previous.revision + 1, **values))
        return bool(result.rowcount)

    def search(self, *, chain: str | None = None, status: str | None = None, late: bool | None = None,
             holder: str | None = None, limit: int = 100) -> list[InstanceRow]:
        query = select(instances).order_by(instances.c.started_at.desc()).limit(limit)
        if chain:
            query = query.where(instances.c.chain == chain)
        if status:
            query = query.where(instances.c.status == status)
        if late is not None:
            query = query.where(instances.c.late == late)
        if holder:
            query = query.where(instances.c.holders.contains(holder))
        with self.engine.connect() as connection:
            return [_instance(r) for r in connection.execute(query).all()]

    def counts(self) -> dict[tuple[str, str], int]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(instances.c.chain, instances.c.status, func.count())
                                      .group_by(instances.c.chain, instances.c.status)).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- history ----------------------------------------------------------------------------------------
    def add_event(self, connection: Connection, instance: str, at: dt.datetime, kind: str, step: str | None,
                  detail: dict[str, Any]) -> None:
        connection.execute(insert(events).values(instance=instance, at=iso(at), kind=kind, step=step,
                                                 detail=json.dumps(detail, ensure_ascii=False, default=str)))

    def history(self, instance: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(events).where(events.c.instance == instance)
                                      .order_by(events.c.id)).all()
        return [{"at": r.at, "kind": r.kind, "step": r.step, **json.loads(r.detail)} for r in rows]

    # -- messages ---------------------------------------------------------------------------------------
    def add_message(self, connection: Connection, message_id: str, instance: str, step: str, recipient: str,
                    at: dt.datetime) -> None:
        connection.execute(insert(messages).values(message_id=message_id, instance=instance, step=step,
                                                   recipient=recipient, sent_at=iso(at)))

    def instance_of_message(self, message_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(select(messages.c.instance).where(messages.c.message_id == message_id)).scalar()

    def mark_answered(self, connection: Connection, message_id: str, at: dt.datetime) -> None:
        connection.execute(update(messages).where(and_(messages.c.message_id == message_id,
                                                       messages.c.answered_at.is_(None)))
                           .values(answered_at=iso(at)))

    # -- timers -----------------------------------------------------------------------------------------
    def add_timer(self, connection: Connection, instance: str, token: str, kind: str, ref: str,
                  due: dt.datetime) -> None:
        connection.execute(insert(timers).values(instance=instance, token=token, kind=kind, ref=ref, due_at=iso(due)))

    def due_timers(self, now: dt.datetime, limit: int = 200) -> list[TimerRow]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(timers).where(and_(timers.c.fired_at.is_(None),
                                                                timers.c.due_at <= iso(now)))
                                      .order_by(timers.c.due_at, timers.c.id).limit(limit)).all()
        return [TimerRow(r.id, r.instance, r.token, r.kind, r.ref, r.due_at) for r in rows]

    def claim_timer(self, connection: Connection, timer_id: int, now: dt.datetime) -> bool:
        return bool(connection.execute(update(timers).where(and_(timers.c.id == timer_id, timers.c.fired_at.is_(None)))
                                       .values(fired_at=iso(now))).rowcount)

    def drop_timers(self, connection: Connection, instance: str, now: dt.datetime) -> None:
        connection.execute(update(timers).where(and_(timers.c.instance == instance, timers.c.fired_at.is_(None)))
                           .values(fired_at=iso(now)))

    # -- tasks ------------------------------------------------------------------------------------------
    def add_task(self, connection: Connection, *, instance: str, token: str, ref: str, step: str, title: str,
                 entity: str, fields: Sequence[str], due: dt.datetime | None, at: dt.datetime) -> None:
        connection.execute(insert(tasks).values(
            instance=instance, token=token, ref=ref, step=step, title=title, entity=entity,
            fields=json.dumps(list(fields)), status="abierta", created_at=iso(at),
            due_at=iso(due) if due else None))

    def task(self, task_id: int) -> TaskRow | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(tasks).where(tasks.c.id == task_id)).first()
        return _task(row) if row is not None else None

    def tasks(self, *, entity: str | None = None, status: str | None = "abierta",
              instance: str | None = None) -> list[TaskRow]:
        query = select(tasks).order_by(tasks.c.id)
        if entity:
            query = query.where(tasks.c.entity == entity)
        if status:
            query = query.where(tasks.c.status == status)
        if instance:
            query = query.where(tasks.c.instance == instance)
        with self.engine.connect() as connection:
            return [_task(r) for r in connection.execute(query).all()]

    def close_task(self, connection: Connection, task_id: int, *, status: str, by: str | None, values: dict[str, Any],
                   at: dt.datetime) -> None:
        connection.execute(update(tasks).where(tasks.c.id == task_id).values(
            status=status, completed_by=by, completed_at=iso(at), values=json.dumps(values, ensure_ascii=False)))

    def cancel_stale_tasks(self, connection: Connection, instance: str, live_refs: set[str], at: dt.datetime) -> None:
        rows = connection.execute(select(tasks.c.id, tasks.c.ref).where(
            and_(tasks.c.instance == instance, tasks.c.status == "abierta"))).all()
        for row in rows:
            if row.ref not in live_refs:
                connection.execute(update(tasks).where(tasks.c.id == row.id)
                                   .values(status="cancelada", completed_at=iso(at)))
