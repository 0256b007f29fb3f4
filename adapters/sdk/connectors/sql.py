"""SQL connector: fixed, configured queries against a legacy database (SQLite or PostgreSQL).

Every operation is SQL text written in the adapter's configuration with `:named` bound parameters; the
values that come from a request are always bound by the driver, never spliced into the text, and SQL with
Python-format placeholders (`{...}`, `%s`) is refused when the connector is built. Reads run in a
transaction that is always rolled back (a read can never change the legacy data); writes run in a
transaction that is committed and report how many rows they touched.

The timeout is enforced inside the database: PostgreSQL gets `SET LOCAL statement_timeout` for every
call, SQLite a progress handler that interrupts the statement once the deadline has passed.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from adapters.sdk.connectors.base import (
    ConnectorError,
    LegacyGarbage,
    LegacyNotFound,
    LegacyTimeout,
    LegacyUnavailable,
    Record,
    describe_params,
    seconds_text,
    unknown_operation,
)

__all__ = ["SqlConnector", "SqlOperation"]

_PYTHON_PLACEHOLDER = re.compile(r"[{}]|%(\([^)]*\))?[-#0+]*\d*(\.\d+)?[sdifrxXeEgGc]")
_DETAIL_MAX = 200
# SQLite errors that mean "the database cannot be reached right now", not "the query is wrong".
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open database",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
    "interrupted",
    "database disk image is malformed",
    "not a database",
)
# PostgreSQL SQLSTATEs (or classes) worth retrying: connection problems, shutdown, resources, conflicts.
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P", "58", "XX")
_PG_UNAVAILABLE_CODES = frozenset({"40001", "40P01", "55P03", "55006"})
_PG_QUERY_CANCELED = "57014"
_SQLITE_PROGRESS_STEPS = 1000


@dataclass(frozen=True, slots=True)
class SqlOperation:
    """One configured statement. `sql` uses `:name` bound parameters only.

    `one`: exactly one row is expected (none → LegacyNotFound, several → LegacyGarbage).
    `write`: an INSERT/UPDATE/DELETE run in a committed transaction; the answer is `[{"filas": n}]`.
    """

    sql: str
    one: bool = False
    write: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise ValueError("La operación SQL está vacía: escriba la consulta en la clave 'sql'.")
        found = _PYTHON_PLACEHOLDER.search(_without_literals(self.sql))
        if found:
            raise ValueError(
                f"La consulta SQL contiene el marcador {found.group(0)!r}: use solo parámetros con nombre "
                "(:NumeroDoc); los valores nunca se insertan en el texto de la consulta."
            )
        if self.one and self.write:
            raise ValueError("Una operación SQL no puede ser a la vez 'one' y 'write'.")


def _without_literals(sql: str) -> str:
    """The SQL with the contents of quoted string literals blanked (a '%' inside LIKE 'a%' is not a
    placeholder). Placeholders inside literals are still refused by the caller when they use braces."""
    out: list[str] = []
    quote_char: str | None = None
    for char in sql:
        if quote_char is None:
            if char == "'":
                quote_char = char
            out.append(char)
        elif char == quote_char:
            quote_char = None
            out.append(char)
        else:
            out.append("{" if char in "{}" else " ")
    return "".join(out)




def _short(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "sin detalle"
    return line if len(line) <= _DETAIL_MAX else line[: _DETAIL_MAX - 1] + "…"


class SqlConnector:
    """A legacy database reached with SQLAlchemy 2. Thread-safe (one pooled connection per call)."""

    def __init__(
        self,
        entity: str,
        url: str,
        operations: Mapping[str, SqlOperation],
        *,
        timeout: float = 5.0,
    ) -> None:
        if not timeout or timeout <= 0:
            raise ValueError("El tiempo de espera del conector SQL debe ser un número positivo de segundos.")
        self.entity = entity
        self.timeout = float(timeout)
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ValueError(f"La URL de base de datos no es válida: {exc}") from None
        self._dialect = parsed.get_backend_name()
        if self._dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"El conector SQL admite bases SQLite y PostgreSQL; la URL pide {self._dialect!r}."
            )
        self._operations: dict[str, tuple[SqlOperation, TextClause, tuple[str, ...]]] = {}
        for name, operation in operations.items():
            if not isinstance(operation, SqlOperation):
                raise ValueError(f"La operación {name!r} no es una SqlOperation.")
            clause = text(operation.sql)
            self._operations[name] = (operation, clause, tuple(clause._bindparams))
        self._sqlite_file: str | None = None
        self._sqlite_identity: tuple[int, int] | None = None
        self._engine = self._create_engine(url)

    def _create_engine(self, url: str) -> Engine:
        if self._dialect == "postgresql":
            return create_engine(
                url, pool_pre_ping=True, connect_args={"connect_timeout": max(1, math.ceil(self.timeout))}
            )
        parsed = make_url(url)
        engine = create_engine(url, pool_pre_ping=True, connect_args={"timeout": self.timeout})
        in_memory = parsed.database in (None, "", ":memory:")
        if not in_memory and not parsed.query.get("uri"):
            self._sqlite_file = os.path.abspath(str(parsed.database))

            # A missing database file is "the legacy system is down", not "create an empty database".
            @event.listens_for(engine, "do_connect")
            def _must_exist(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
                cargs[0] = "file:" + quote(str(cargs[0]), safe="/:\\") + "?mode=rw"
                cparams["uri"] = True

        return engine

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._operations)

    def call(self, operation: str, params: Mapping[str, Any]) -> Sequence[Record]:
        try:
            spec, clause, names = self._operations[operation]
        except KeyError:
            raise unknown_operation("SQL", self.entity, operation, self._operations) from None
        missing = [name for name in names if name not in params]
        if missing:
            raise ValueError(f"La operación {operation!r} necesita los parámetros: {', '.join(missing)}.")
        bound = {name: params[name] for name in names}
        with self._connection() as (connection, timed_out):
            try:
                result = connection.execute(clause, bound)
                if spec.write:
                    rows = result.rowcount
                    if rows < 0 and connection.dialect.name == "sqlite":
                        # Python's sqlite3 reports -1 for a write that starts with WITH; SQLite itself knows.
                        rows = int(connection.exec_driver_sql("SELECT changes()").scalar_one())
                    connection.commit()
                    return [{"filas": rows}]
                if not result.returns_rows:
                    raise LegacyGarbage(
                        self.entity,
                        detail=f"la operación {operation!r} no devuelve filas; si modifica datos declare write",
                    )
                mappings = result.mappings()
                rows_read = mappings.fetchmany(2) if spec.one else mappings.fetchall()
                records = [dict(row) for row in rows_read]
            except DBAPIError as exc:
                raise self._map(exc, operation, timed_out()) from exc
            except SQLAlchemyError as exc:
                raise LegacyGarbage(self.entity, detail=f"operación {operation!r}: {_short(str(exc))}") from exc
        if spec.one and not records:
            raise LegacyNotFound(self.entity, what=describe_params(params, names))
        if spec.one and len(records) > 1:
            raise LegacyGarbage(
                self.entity, detail=f"la operación {operation!r} esperaba un registro y encontró varios"
            )
        return records

    def check(self) -> None:
        with self._connection() as (connection, timed_out):
            try:
                connection.execute(text("SELECT 1")).all()
            except DBAPIError as exc:
                raise self._map(exc, "check", timed_out()) from exc

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlConnector:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[tuple[Connection, Any]]:
        """A pooled connection inside a transaction bounded by the timeout; rolled back unless committed.
        Yields the connection and a function telling whether the deadline interrupted the statement."""
        if self._sqlite_file is not None:
            self._follow_sqlite_file(self._sqlite_file)
        try:
            connection = self._engine.connect()
        except DBAPIError as exc:
            raise LegacyUnavailable(self.entity, detail="no se pudo conectar con la base de datos") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise LegacyUnavailable(self.entity, detail="no se pudo conectar con la base de datos") from exc
        try:
            if self._dialect == "postgresql":
                with self._sql_errors("statement_timeout"):
                    connection.execute(
                        text("SELECT set_config('statement_timeout', :ms, true)"),
                        {"ms": str(max(1, int(self.timeout * 1000)))},
                    )
                yield connection, lambda: False
            else:
                raw = connection.connection.dbapi_connection
                assert isinstance(raw, sqlite3.Connection)
                deadline = time.monotonic() + self.timeout
                expired = False

                def past_deadline() -> int:
                    nonlocal expired
                    if time.monotonic() >= deadline:
                        expired = True
                        return 1
                    return 0

                raw.set_progress_handler(past_deadline, _SQLITE_PROGRESS_STEPS)
                try:
                    yield connection, lambda: expired
                finally:
                    raw.set_progress_handler(None, _SQLITE_PROGRESS_STEPS)
        finally:
            try:
                connection.rollback()
            finally:
                connection.close()

    def _follow_sqlite_file(self, path: str) -> None:
        """Pooled SQLite connections keep reading a file that was deleted or replaced (they hold the old
        inode): check the path each call, and reconnect when the file behind it changed."""
        try:
            status = os.stat(path)
        except OSError as exc:
            self._engine.dispose()
            self._sqlite_identity = None
            raise LegacyUnavailable(self.entity, detail="no se encuentra el archivo de la base de datos") from exc
        identity = (status.st_dev, status.st_ino)
        if self._sqlite_identity is not None and identity != self._sqlite_identity:
            self._engine.dispose()
        self._sqlite_identity = identity

    @contextmanager
    def _sql_errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise self._map(exc, operation, False) from exc

    def _map(self, exc: DBAPIError, operation: str, timed_out: bool) -> ConnectorError:
        original = exc.orig
        sqlstate: str | None = getattr(original, "sqlstate", None)
        if timed_out or sqlstate == _PG_QUERY_CANCELED:
            return LegacyTimeout(self.entity, seconds=seconds_text(self.timeout))
        if exc.connection_invalidated:
            return LegacyUnavailable(self.entity, detail="se perdió la conexión con la base de datos")
        message = str(original) if original is not None else str(exc)
        if self._dialect == "postgresql":
            connection_level = sqlstate is None and isinstance(exc, (OperationalError, InterfaceError))
            if connection_level or (
                sqlstate is not None
                and (sqlstate.startswith(_PG_UNAVAILABLE_CLASSES) or sqlstate in _PG_UNAVAILABLE_CODES)
            ):
                return LegacyUnavailable(self.entity, detail=f"la base de datos no atiende ({sqlstate or 'conexión'})")
            diag = getattr(original, "diag", None)
            primary = getattr(diag, "message_primary", None) or message
            return LegacyGarbage(self.entity, detail=f"operación {operation!r}: {_short(primary)} ({sqlstate})")
        lowered = message.lower()
        if any(marker in lowered for marker in _SQLITE_UNAVAILABLE):
            return LegacyUnavailable(self.entity, detail=f"la base de datos no atiende ({_short(message)})")
        return LegacyGarbage(self.entity, detail=f"operación {operation!r}: {_short(message)}")
