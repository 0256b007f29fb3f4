"""The tamper-evident message log: every message exactly as received, hash-chained, in SQLite or PostgreSQL.

Each row keeps the message bytes, the platform RFC 3161 token over SHA-256 of those bytes, the verification
outcome and the routing metadata. `record_hash` is SHA-256 over a canonical JSON of `prev_hash` and every
content field (not `seq`): a row moved to another position stays self-consistent, so reordering is told
apart from alteration. A one-row head (last seq, last hash) is updated in the same transaction as each
append, so deleting the last row is detected too.

Appends are serialised by the database: `SELECT … FOR UPDATE` on the head row in PostgreSQL, a write
transaction (`BEGIN IMMEDIATE`) in SQLite; concurrent writers in several threads or processes produce
one unbroken chain.

The chain alone proves nothing against someone who can rewrite the whole table: the time-stamp tokens
(checked by `broker.security.evidence`) anchor each record to a trusted third party.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from broker.gelxml.faults import Falla, FaultCode, GelFault, falla, fault
from broker.storage import answers, create_tables, driver_insert, driver_marks

__all__ = [
    "GENESIS_HASH",
    "HASH_FORMAT",
    "LogEntry",
    "LogRecord",
    "LogVerification",
    "MessageLog",
    "Outcome",
    "canonical_json",
    "record_hash_of",
]

Outcome = Literal["aceptado", "rechazado"]
OUTCOMES: frozenset[str] = frozenset({"aceptado", "rechazado"})
GENESIS_HASH = "0" * 64
HASH_FORMAT = "gel-log-1"
LOG_TABLE = "message_log"
HEAD_TABLE = "message_log_head"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _iso(moment: dt.datetime) -> str:
    """Fixed-width UTC text, so text order is time order."""
    return moment.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)


def _stored_time(text: object) -> dt.datetime:
    """A stored time; an unreadable one becomes the epoch, which verification then reports as altered."""
    try:
        return _parse_time(str(text))
    except ValueError:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The one byte encoding hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash_of(chained: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(chained)).hexdigest()


@dataclass(frozen=True)
class LogEntry:
    """What to record about one message."""

    message: bytes
    message_id: str
    sender: str
    recipient: str
    service: str
    message_type: str
    outcome: Outcome
    fault_code: str | None = None
    token: bytes | None = None
    routing: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogRecord:
    """One stored row of the log."""

    seq: int
    recorded_at: dt.datetime
    message_id: str
    sender: str
    recipient: str
    service: str
    message_type: str
    outcome: str
    fault_code: str | None
    message: bytes
    message_sha256: str
    token: bytes | None
    routing: Mapping[str, str]
    prev_hash: str
    record_hash: str

    @property
    def token_sha256(self) -> str | None:
        return hashlib.sha256(self.token).hexdigest() if self.token is not None else None

    def chained_fields(self) -> dict[str, Any]:
        """Exactly what `record_hash` covers (the stored message through its SHA-256)."""
        return {
            "formato": HASH_FORMAT,
            "prev_hash": self.prev_hash,
            "recorded_at": _iso(self.recorded_at),
            "message_id": self.message_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "service": self.service,
            "message_type": self.message_type,
            "outcome": self.outcome,
            "fault_code": self.fault_code,
            "message_sha256": self.message_sha256,
            "token_sha256": self.token_sha256,
            "routing": dict(self.routing),
        }

    def computed_hash(self) -> str:
        return record_hash_of(self.chained_fields())

    def to_dict(self) -> dict[str, Any]:
        """The record without its bytes: what people and other programs see."""
        return {
            "seq": self.seq,
            "recorded_at": _iso(self.recorded_at),
            "message_id": self.message_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "service": self.service,
            "message_type": self.message_type,
            "outcome": self.outcome,
            "fault_code": self.fault_code,
            "message_bytes": len(self.message),
            "message_sha256": self.message_sha256,
            "token_sha256": self.token_sha256,
            "routing": dict(self.routing),
            "prev_hash": self.prev_hash,
            "record_hash": self.record_hash,
        }


@dataclass(frozen=True)
class LogVerification:
    """The outcome of checking the chain: `fault` names the first broken record (`record`)."""

    ok: bool
    checked: int
    fault: Falla | None = None
    record: int | None = None


def _tables(schema: str | None) -> tuple[MetaData, Table, Table]:
    metadata = MetaData(schema=schema)
    log = Table(
        LOG_TABLE, metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
        Column("recorded_at", String(32), nullable=False),
        Column("message_id", String(255), nullable=False),
        Column("sender", String(255), nullable=False),
        Column("recipient", String(255), nullable=False),
        Column("service", String(255), nullable=False),
        Column("message_type", String(64), nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("fault_code", String(64), nullable=True),
        Column("message", LargeBinary, nullable=False),
        Column("message_sha256", String(64), nullable=False),
        Column("token", LargeBinary, nullable=True),
        Column("routing", Text, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("record_hash", String(64), nullable=False),
        Index(f"ix_{LOG_TABLE}_record_hash", "record_hash"),
        Index(f"ix_{LOG_TABLE}_message_id", "message_id"),
    )
    head = Table(
        HEAD_TABLE, metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("last_seq", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
        Column("last_hash", String(64), nullable=False),
        Column("last_recorded_at", String(32), nullable=True),
    )
    return metadata, log, head


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database
    memory = database in (None, "", ":memory:")
    if memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        assert database is not None
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, with the mode we ask for
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("gel_sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


class MessageLog:
    """The hash-chained log in one database (any SQLAlchemy URL: SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self._sqlite = make_url(url).get_backend_name() == "sqlite"
        self._engine = _sqlite_engine(url) if self._sqlite else create_engine(url, pool_pre_ping=True)
        self._metadata, self._log, self._head = _tables(schema)
        self._sql = _HotSql.of(self._engine, self._log, self._head)
        self._local_lock = threading.Lock()
        self._create()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._engine.dispose()

    def answers(self) -> bool:
        """Whether the database takes a query now (an outage, as opposed to a statement that keeps failing)."""
        return answers(self._engine)

    def __enter__(self) -> MessageLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _write(self) -> Connection:
        connection = self._engine.connect()
        if self._sqlite:
            connection.execution_options(gel_sqlite_begin="IMMEDIATE")
        return connection

    def _create(self) -> None:
        create_tables(self._metadata, self._engine)
        with self._write() as connection, connection.begin():
            exists = connection.execute(select(self._head.c.id).where(self._head.c.id == 1)).first()
        if exists is not None:
            return
        try:
            with self._write() as connection, connection.begin():
                connection.execute(insert(self._head).values(id=1, last_seq=0, last_hash=GENESIS_HASH,
                                                             last_recorded_at=None))
        except IntegrityError:
            pass

    # -- writing -------------------------------------------------------------------------------
    def append(self, entry: LogEntry) -> LogRecord:
        """Record one message at the end of the chain and return the stored record."""
        return self._append(entry, once=False)[0]

    def append_once(self, entry: LogEntry) -> tuple[LogRecord, bool]:
        """Record an accepted message unless one with its idMensaje is already accepted: (record, created).

        The check runs under the chain's write lock, so workers racing with copies of one message leave
        exactly one accepted record; the loser gets the winner's record back."""
        return self._append(entry, once=True)

    def append_many(self, entries: Sequence[tuple[LogEntry, bool]], *,
                    also: Callable[[Connection, list[tuple[LogRecord, bool]]], None] | None = None,
                    ) -> list[tuple[LogRecord, bool]]:
        """Record several messages in order in one transaction (one commit for the batch); each pair is
        (entry, once) with `once` meaning `append_once`. Returns (record, created) per entry. `also` writes
        what must commit with these records, in the same transaction, knowing which were created."""
        return self._append_all(entries, also)

    def _append(self, entry: LogEntry, *, once: bool) -> tuple[LogRecord, bool]:
        return self._append_all([(entry, once)])[0]

    def _append_all(self, entries: Sequence[tuple[LogEntry, bool]],
                    also: Callable[[Connection, list[tuple[LogRecord, bool]]], None] | None = None,
                    ) -> list[tuple[LogRecord, bool]]:
        for entry, _ in entries:
            if entry.outcome not in OUTCOMES:
                raise ValueError(f"resultado desconocido {entry.outcome!r}: use 'aceptado' o 'rechazado'")
        if not entries:
            return []
        results: list[tuple[LogRecord, bool]] = []
        sql = self._sql
        with self._local_lock if self._sqlite else _NO_LOCK, self._write() as connection, connection.begin():
            cursor = connection.connection.cursor()
            try:
                cursor.execute(sql.head)
                head = cursor.fetchone()
                if head is None:
                    raise fault(FaultCode.LOG_MISSING, record=1,
                                detail="falta la cabeza del log (último número y último resumen)")
                last_seq, last_hash, last_at_text = head
                last_at = _parse_time(last_at_text) if last_at_text is not None else None
                accepted = _accepted_among(cursor, sql, {e.message_id for e, once in entries if once})
                rows: list[tuple[Any, ...]] = []
                for entry, once in entries:
                    if once and entry.message_id in accepted:
                        results.append((accepted[entry.message_id], False))
                        continue
                    now = dt.datetime.now(dt.UTC)
                    if last_at is not None:
                        now = max(now, last_at)  # a clock step back must not break order
                    record = _with_hash(LogRecord(
                        seq=last_seq + 1, recorded_at=now, message_id=entry.message_id,
                        sender=entry.sender, recipient=entry.recipient, service=entry.service,
                        message_type=entry.message_type, outcome=entry.outcome, fault_code=entry.fault_code,
                        message=bytes(entry.message), message_sha256=hashlib.sha256(entry.message).hexdigest(),
                        token=bytes(entry.token) if entry.token is not None else None,
                        routing={str(k): str(v) for k, v in entry.routing.items()},
                        prev_hash=last_hash, record_hash="",
                    ))
                    rows.append(_row_of(record))
                    last_seq, last_hash, last_at = record.seq, record.record_hash, record.recorded_at
                    if entry.outcome == "aceptado":
                        accepted[entry.message_id] = record
                    results.append((record, True))
                if rows:
                    assert last_at is not None
                    cursor.executemany(sql.insert, rows)
                    cursor.execute(sql.update_head, (last_seq, last_hash, _iso(last_at)))
            finally:
                cursor.close()
            if also is not None:
                also(connection, results)
        return results

    def find_many(self, message_ids: Iterable[str]) -> dict[str, list[LogRecord]]:
        """Every record of each idMensaje, in one query (the gateway's checks for a batch of deliveries)."""
        wanted = sorted(set(message_ids))
        found: dict[str, list[LogRecord]] = {m: [] for m in wanted}
        if not wanted:
            return found
        with self._engine.connect() as connection:
            cursor = connection.connection.cursor()
            try:
                records = self._sql.records_of(cursor, wanted)
            finally:
                cursor.close()
        for record in records:
            found[record.message_id].append(record)
        return found

    # -- reading -------------------------------------------------------------------------------
    def get(self, seq: int) -> LogRecord:
        with self._engine.connect() as connection:
            row = connection.execute(select(self._log).where(self._log.c.seq == seq)).first()
        if row is None:
            raise fault(FaultCode.LOG_NOT_FOUND, record=seq)
        return _record_of(row._mapping)

    def find(self, message_id: str) -> list[LogRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(self._log).where(self._log.c.message_id == message_id).order_by(self._log.c.seq)
            ).all()
        return [_record_of(row._mapping) for row in rows]

    def records(self, start: int = 1, batch: int = 500, *, stop: int | None = None) -> Iterator[LogRecord]:
        """Records from `start` (through `stop`) in seq order, read `batch` at a time."""
        position = start
        while True:
            query = select(self._log).where(self._log.c.seq >= position)
            if stop is not None:
                query = query.where(self._log.c.seq <= stop)
            with self._engine.connect() as connection:
                rows = connection.execute(query.order_by(self._log.c.seq).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                yield _record_of(row._mapping)
            position = rows[-1].seq + 1

    def count(self) -> int:
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self._log)).scalar_one())

    def head(self) -> tuple[int, str] | None:
        """(last seq, last hash) as the head row states them, or None when the head row is gone."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(self._head.c.last_seq, self._head.c.last_hash).where(self._head.c.id == 1)
            ).first()
        return (int(row.last_seq), str(row.last_hash)) if row is not None else None

    def _position_of(self, record_hash: str) -> int | None:
        with self._engine.connect() as connection:
            seq = connection.execute(
                select(self._log.c.seq).where(self._log.c.record_hash == record_hash).limit(1)
            ).scalar()
        return int(seq) if seq is not None else None

    def _last_seq(self) -> int:
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.coalesce(func.max(self._log.c.seq), 0))).scalar_one())

    # -- verification --------------------------------------------------------------------------
    def verify(self, check_evidence: Callable[[LogRecord], None] | None = None,
               progress: Callable[[int], None] | None = None) -> LogVerification:
        """Walk the chain from the genesis; stop at the first broken record and name it.

        Records appended while the walk runs (after the head read at its start) are left for the next run.
        """
        head = self.head()
        if head is None:
            return _broken(FaultCode.LOG_MISSING, 0, record=1,
                           detail="falta la cabeza del log (último número y último resumen)")
        last_seq, last_hash = head
        expected_seq, expected_prev = 1, GENESIS_HASH
        previous_time: dt.datetime | None = None
        checked = 0
        for record in self.records(stop=last_seq):
            broken = self._check_link(record, expected_seq, expected_prev, previous_time, checked)
            if broken is not None:
                return broken
            if check_evidence is not None:
                try:
                    check_evidence(record)
                except GelFault as exc:
                    inner = exc.falla
                    return _broken(FaultCode.LOG_BAD_EVIDENCE, checked, record=record.seq,
                                   detail=f"{inner.code}: {inner.message}")
            checked += 1
            expected_seq, expected_prev, previous_time = record.seq + 1, record.record_hash, record.recorded_at
            if progress is not None:
                progress(checked)
        return self._check_head(checked, last_seq, last_hash, expected_seq - 1, expected_prev)

    def _check_link(self, record: LogRecord, expected_seq: int, expected_prev: str,
                    previous_time: dt.datetime | None, checked: int) -> LogVerification | None:
        seq = record.seq
        actual = hashlib.sha256(record.message).hexdigest()
        if actual != record.message_sha256:
            return _broken(FaultCode.LOG_ALTERED, checked, record=seq,
                           detail=f"el mensaje guardado tiene el resumen {actual} y el registro dice "
                                  f"{record.message_sha256}")
        computed = record.computed_hash()
        if computed != record.record_hash:
            return _broken(FaultCode.LOG_ALTERED, checked, record=seq,
                           detail=f"su contenido da el resumen {computed} y tiene guardado {record.record_hash}")
        if seq != expected_seq:
            return _broken(FaultCode.LOG_MISSING, checked, record=expected_seq,
                           detail=f"la cadena salta del registro {expected_seq - 1} al {seq}")
        if record.prev_hash != expected_prev:
            elsewhere = self._position_of(record.prev_hash)
            if elsewhere is not None and elsewhere != seq:
                return _broken(FaultCode.LOG_REORDERED, checked, record=seq,
                               detail=f"se encadena al registro que está en la posición {elsewhere} y no al "
                                      f"{seq - 1}")
            return _broken(FaultCode.LOG_MISSING, checked, record=seq,
                           detail=f"el registro {seq} se encadena a un registro anterior ({record.prev_hash[:16]}…) "
                                  "que ya no está en el log")
        if previous_time is not None and record.recorded_at < previous_time:
            return _broken(FaultCode.LOG_REORDERED, checked, record=seq,
                           detail=f"su fecha {_iso(record.recorded_at)} es anterior a la del registro {seq - 1} "
                                  f"({_iso(previous_time)})")
        return None

    def _check_head(self, checked: int, last_seq: int, last_hash: str, seen_seq: int,
                    seen_hash: str) -> LogVerification:
        if seen_seq < last_seq:
            return _broken(FaultCode.LOG_MISSING, checked, record=seen_seq + 1,
                           detail=f"la cabeza del log dice que hay {last_seq} registros y la cadena termina en "
                                  f"el {seen_seq}")
        if seen_hash != last_hash:
            return _broken(FaultCode.LOG_ALTERED, checked, record=seen_seq,
                           detail="no es el último registro que anotó la cabeza del log")
        current = self.head()
        beyond = self._last_seq()
        if current is not None and beyond > current[0]:
            return _broken(FaultCode.LOG_ALTERED, checked, record=current[0] + 1,
                           detail="se añadió por fuera del registro normal (la cabeza del log no lo incluye)")
        return LogVerification(ok=True, checked=checked)


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def _broken(code: FaultCode, checked: int, *, record: int, detail: str) -> LogVerification:
    return LogVerification(ok=False, checked=checked, fault=falla(code, record=record, detail=detail), record=record)


@dataclass(frozen=True)
class _HotSql:
    """The statements of the append and lookup hot path as driver SQL, written once per log. Through SQLAlchemy
    Core these statements cost ~1.2 ms of CPU of the ~1.5 ms one append took (bench: `python -m bench --only
    log`); on the driver's cursor, ~0.2 ms. Everything else (tables, reads, verification) stays in Core."""

    dialect: Dialect
    head: str
    insert: str
    update_head: str
    select_by_id: str
    """Every column of the records with one of {marks} idMensaje values, in seq order."""

    @staticmethod
    def of(engine: Engine, log: Table, head: Table) -> _HotSql:
        dialect = engine.dialect
        assert tuple(column.name for column in log.columns) == _ROW_COLUMNS
        table = dialect.identifier_preparer.format_table
        mark = driver_marks(dialect, 1)
        lock = "" if dialect.name == "sqlite" else " FOR UPDATE"  # SQLite: BEGIN IMMEDIATE locks
        return _HotSql(
            dialect=dialect,
            head=f"SELECT last_seq, last_hash, last_recorded_at FROM {table(head)} WHERE id = 1{lock}",
            insert=driver_insert(dialect, log, _ROW_COLUMNS),
            update_head=f"UPDATE {table(head)} SET last_seq = {mark}, last_hash = {mark}, "
                        f"last_recorded_at = {mark} WHERE id = 1",
            select_by_id=f"SELECT {', '.join(_ROW_COLUMNS)} FROM {table(log)} WHERE message_id IN ({{marks}}) "
                         "ORDER BY seq",
        )

    def records_of(self, cursor: Any, message_ids: Sequence[str]) -> list[LogRecord]:
        """Every record of these idMensaje values, in seq order, read on the driver's `cursor`."""
        if not message_ids:
            return []
        cursor.execute(self.select_by_id.format(marks=driver_marks(self.dialect, len(message_ids))),
                       list(message_ids))
        return [_record_of(dict(zip(_ROW_COLUMNS, row, strict=True))) for row in cursor.fetchall()]


def _accepted_among(cursor: Any, sql: _HotSql, message_ids: set[str]) -> dict[str, LogRecord]:
    """The first accepted record of each of these idMensaje values that has one."""
    found: dict[str, LogRecord] = {}
    for record in sql.records_of(cursor, sorted(message_ids)):
        if record.outcome == "aceptado":
            found.setdefault(record.message_id, record)
    return found


def _with_hash(record: LogRecord) -> LogRecord:
    return replace(record, record_hash=record.computed_hash())


_ROW_COLUMNS = ("seq", "recorded_at", "message_id", "sender", "recipient", "service", "message_type", "outcome",
                "fault_code", "message", "message_sha256", "token", "routing", "prev_hash", "record_hash")


def _row_of(record: LogRecord) -> tuple[Any, ...]:
    """The record's column values, in `_ROW_COLUMNS` order."""
    return (record.seq, _iso(record.recorded_at), record.message_id, record.sender, record.recipient, record.service,
            record.message_type, record.outcome, record.fault_code, record.message, record.message_sha256,
            record.token, canonical_json(record.routing).decode("utf-8"), record.prev_hash, record.record_hash)


def _record_of(row: Mapping[Any, Any]) -> LogRecord:
    try:
        routing = json.loads(row["routing"])
    except (TypeError, ValueError):
        routing = {"_ilegible": str(row["routing"])}  # verification then reports the record as altered
    return LogRecord(
        seq=int(row["seq"]),
        recorded_at=_stored_time(row["recorded_at"]),
        message_id=row["message_id"],
        sender=row["sender"],
        recipient=row["recipient"],
        service=row["service"],
        message_type=row["message_type"],
        outcome=row["outcome"],
        fault_code=row["fault_code"],
        message=bytes(row["message"]),
        message_sha256=row["message_sha256"],
        token=bytes(row["token"]) if row["token"] is not None else None,
        routing=routing if isinstance(routing, dict) else {"_ilegible": str(row["routing"])},
        prev_hash=row["prev_hash"],
        record_hash=row["record_hash"],
    )
