"""The gateway's operational tables (records, pending replies) share one way of opening the database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

__all__ = ["iso", "open_engine"]


def open_engine(url: str) -> Engine:
    """An engine for the platform store; SQLite waits for a competing writer instead of failing at once."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    return create_engine(url, pool_pre_ping=True)


def iso(moment: dt.datetime) -> str:
    """UTC ISO-8601 with microseconds: sorts as text, so range queries work on both backends."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")
