"""The platform store: one way of opening the database, creating tables and waiting out an outage, shared by every
component."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

__all__ = ["OUTAGE_FIRST_WAIT", "OUTAGE_LONGEST_WAIT", "answers", "create_tables", "iso", "open_engine",
           "outage_waits"]

OUTAGE_FIRST_WAIT = 0.5
OUTAGE_LONGEST_WAIT = 10.0
"""Seconds a component holding work waits for its database to come back: doubling from the first to the longest.
An outage is nobody's message's fault, so waiting it out spends none of a message's delivery attempts."""


def open_engine(url: str) -> Engine:
    """An engine for the platform store; SQLite waits for a competing writer instead of failing at once."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    return create_engine(url, pool_pre_ping=True)


def answers(engine: Engine) -> bool:
    """Whether the database takes a query now (an outage, as opposed to a statement that keeps failing)."""
    try:
        with engine.connect() as connection:
            connection.execute(select(1))
    except SQLAlchemyError:
        return False
    return True


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
