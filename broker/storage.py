"""The platform store: one way of opening the database, creating tables and waiting out an outage, shared by every
component."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, event, select
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

__all__ = ["OUTAGE_FIRST_WAIT", "OUTAGE_LONGEST_WAIT", "answers", "create_tables", "driver_insert", "driver_marks",
           "during_outage", "iso", "open_engine", "outage_waits"]

OUTAGE_FIRST_WAIT = 0.5
OUTAGE_LONGEST_WAIT = 10.0
"""Seconds a component holding work waits for its database to come back: doubling from the first to the longest.
An outage is nobody's message's fault, so waiting it out spends none of a message's delivery attempts."""


def open_engine(url: str, *, durable: bool = True) -> Engine:
    """An engine for the platform store; SQLite waits for a competing writer instead of failing at once.

    `durable=False` is for rows that are not evidence (operational records): a commit returns without waiting
    for the disk (SQLite `synchronous=NORMAL` in WAL mode, PostgreSQL `synchronous_commit=off`), so an
    operating-system crash may lose the last moments of them but never corrupts the database — and, on a
    SQLite file shared with the message log, the commit no longer holds the write lock through an fsync."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        options = {} if durable else {"connect_args": {"options": "-c synchronous_commit=off"}}
        return create_engine(url, pool_pre_ping=True, **options)
    in_file = bool(parsed.database) and parsed.database != ":memory:"
    if in_file:
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    if not durable:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if in_file:
                cursor.execute("PRAGMA journal_mode=WAL")  # NORMAL is corruption-safe in WAL mode
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    return engine


def driver_marks(dialect: Dialect, count: int) -> str:
    """`count` positional parameter marks in the driver's own style (sqlite3 `?`, psycopg `%s`), for the few
    hot-path statements written as driver SQL: SQLAlchemy Core spends ~35-50 µs building and compiling a statement
    per execute, several times what SQLite spends running it (bench: `python -m bench --only log`)."""
    return ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * count)


def driver_insert(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    """An INSERT of these columns of `table` (schema-qualified as the dialect writes it) in driver SQL."""
    name = dialect.identifier_preparer.format_table(table)
    return f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({driver_marks(dialect, len(columns))})"


def answers(engine: Engine) -> bool:
    """Whether the database takes a query now (an outage, as opposed to a statement that keeps failing)."""
    try:
        with engine.connect() as connection:
            connection.execute(select(1))
    except SQLAlchemyError:
        return False
    return True


def during_outage(exc: BaseException, answers: Callable[[], bool]) -> bool:
    """Whether `exc` is a database error raised while the database does not answer: wait for it, and do not
    blame (or dead-letter, or log as a bug) the work that met it."""
    return isinstance(exc, SQLAlchemyError) and not answers()


def outage_waits() -> Iterator[float]:
    """The waits between two looks at a database that does not answer."""
    delay = OUTAGE_FIRST_WAIT
    while True:
        yield delay
        delay = min(delay * 2, OUTAGE_LONGEST_WAIT)


def iso(moment: dt.datetime) -> str:
    """UTC ISO-8601 with microseconds: sorts as text, so range queries work on both backends."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """Create missing tables; workers starting together race to create them, and the loser checks again."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
