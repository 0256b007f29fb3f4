"""The platform store: one way of opening the database and creating tables, shared by every component."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

__all__ = ["create_tables", "iso", "open_engine"]


def open_engine(url: str) -> Engine:
    """An engine for the platform store; SQLite waits for a competing writer instead of failing at once."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    return create_engine(url, pool_pre_ping=True)


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
