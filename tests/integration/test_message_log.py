"""The message log on SQLite and PostgreSQL: every kind of tampering is named by its code and record."""

from __future__ import annotations

import hashlib
import itertools
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from broker.gelxml.faults import FaultCode, GelFault, fault
from broker.security.message_log import GENESIS_HASH, LogEntry, LogRecord, MessageLog


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema): a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}", None
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = f"log_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def log(database: tuple[str, str | None]) -> Iterator[MessageLog]:
    url, schema = database
    with MessageLog(url, schema=schema) as message_log:
        yield message_log


def entry(number: int, *, outcome: str = "aceptado") -> LogEntry:
    return LogEntry(
        message=f"<mensaje><idMensaje>{number}</idMensaje><dato>ñandú {number}</dato></mensaje>".encode(),
        message_id=f"msg-{number}", sender="CO/GOB/830121208", recipient="CO/GOB/899999040",
        service="verificarIdentidad:1.0", message_type="solicitud", outcome=outcome,  # type: ignore[arg-type]
        fault_code=None if outcome == "aceptado" else "GEL-AUTH-BAD_SIGNATURE",
        token=f"token-{number}".encode(), routing={"cola": "gel.entidad.899999040", "clave": "verificarIdentidad"},
    )


def fill(log: MessageLog, n: int) -> list[LogRecord]:
    return [log.append(entry(i, outcome="aceptado" if i % 3 else "rechazado")) for i in range(1, n + 1)]


def sql(log: MessageLog, statement: str, **params: object) -> None:
    table = f'"{log.schema}".message_log' if log.schema else "message_log"
    head = f'"{log.schema}".message_log_head' if log.schema else "message_log_head"
    with log._engine.begin() as connection:
        connection.execute(text(statement.format(log=table, head=head)), params)


def broken(log: MessageLog, code: FaultCode, record: int) -> None:
    result = log.verify()
    assert not result.ok
    assert result.fault is not None
    assert result.fault.code == code, result.fault
    assert result.record == record, result.fault
    assert str(record) in result.fault.message


def test_appended_records_chain_from_the_genesis_and_verify(log: MessageLog) -> None:
    records = fill(log, 6)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.record_hash for a, b in itertools.pairwise(records))
    assert records[2].outcome == "rechazado" and records[2].fault_code == "GEL-AUTH-BAD_SIGNATURE"
    assert log.count() == 6
    stored = log.get(4)
    assert stored == records[3]
    assert stored.message_sha256 == hashlib.sha256(stored.message).hexdigest()
    assert [r.seq for r in log.find("msg-5")] == [5]
    assert [r.seq for r in log.records(start=2, batch=2)] == [2, 3, 4, 5, 6]
    seen: list[int] = []
    result = log.verify(progress=seen.append)
    assert result.ok and result.checked == 6 and result.fault is None
    assert seen[-1] == 6


def test_an_empty_log_verifies_and_an_absent_record_is_a_coded_fault(log: MessageLog) -> None:
    assert log.verify().ok
    with pytest.raises(GelFault) as caught:
        log.get(42)
    assert caught.value.falla.code == FaultCode.LOG_NOT_FOUND
    assert log.find("nadie") == []


def test_altering_one_byte_of_a_stored_message_names_that_record(log: MessageLog) -> None:
    records = fill(log, 5)
    altered = records[2].message.replace(b"3</dato>", b"4</dato>")
    sql(log, "UPDATE {log} SET message = :m WHERE seq = 3", m=altered)
    broken(log, FaultCode.LOG_ALTERED, 3)


def test_rewriting_a_field_and_its_digest_is_still_altered(log: MessageLog) -> None:
    fill(log, 5)
    sql(log, "UPDATE {log} SET recipient = 'CO/GOB/000000000' WHERE seq = 2")
    broken(log, FaultCode.LOG_ALTERED, 2)


def test_deleting_a_middle_record_is_missing(log: MessageLog) -> None:
    fill(log, 5)
    sql(log, "DELETE FROM {log} WHERE seq = 3")
    broken(log, FaultCode.LOG_MISSING, 3)


def test_deleting_and_renumbering_is_missing(log: MessageLog) -> None:
    fill(log, 5)
    sql(log, "DELETE FROM {log} WHERE seq = 3")
    sql(log, "UPDATE {log} SET seq = seq - 1 WHERE seq > 3")
    sql(log, "UPDATE {head} SET last_seq = 4")
    broken(log, FaultCode.LOG_MISSING, 3)


def test_deleting_the_last_record_is_missing(log: MessageLog) -> None:
    fill(log, 5)
    sql(log, "DELETE FROM {log} WHERE seq = 5")
    broken(log, FaultCode.LOG_MISSING, 5)


def test_swapping_two_records_is_reordered(log: MessageLog) -> None:
    fill(log, 6)
    sql(log, "UPDATE {log} SET seq = -1 WHERE seq = 2")
    sql(log, "UPDATE {log} SET seq = 2 WHERE seq = 5")
    sql(log, "UPDATE {log} SET seq = 5 WHERE seq = -1")
    broken(log, FaultCode.LOG_REORDERED, 2)


def test_a_failing_evidence_check_is_bad_evidence_with_the_inner_code(log: MessageLog) -> None:
    fill(log, 4)

    def check(record: LogRecord) -> None:
        if record.seq == 3:
            raise fault(FaultCode.TS_MISMATCH, detail="el sello ampara otro contenido")

    result = log.verify(check)
    assert not result.ok and result.fault is not None
    assert result.fault.code == FaultCode.LOG_BAD_EVIDENCE
    assert result.record == 3 and result.checked == 2
    assert "GEL-TS-MISMATCH" in result.fault.message
    assert "otro contenido" in result.fault.message


def test_concurrent_appends_make_one_unbroken_chain(database: tuple[str, str | None]) -> None:
    url, schema = database
    threads_n, each = 4, 25
    errors: list[BaseException] = []
    logs = [MessageLog(url, schema=schema) for _ in range(threads_n)]
    barrier = threading.Barrier(threads_n)

    def work(index: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                logs[index].append(entry(index * 1000 + i))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors
        log = logs[0]
        assert log.count() == threads_n * each
        records = list(log.records())
        assert [r.seq for r in records] == list(range(1, threads_n * each + 1))
        assert len({r.message_id for r in records}) == threads_n * each
        result = log.verify()
        assert result.ok, result.fault
        assert result.checked == threads_n * each
    finally:
        for each_log in logs:
            each_log.close()


def test_copies_of_one_accepted_message_racing_leave_one_record(database: tuple[str, str | None]) -> None:
    """Gateway workers handling copies of one message at once: one accepted record, the others get it back."""
    from concurrent.futures import ThreadPoolExecutor

    url, schema = database
    logs = [MessageLog(url, schema=schema) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(logs)) as pool:
            results = list(pool.map(lambda log: log.append_once(entry(7)), logs * 3))
        assert sum(created for _, created in results) == 1
        assert len({record.seq for record, _ in results}) == 1
        assert [r.outcome for r in logs[0].find("msg-7")] == ["aceptado"]
        assert logs[0].verify().ok
    finally:
        for log in logs:
            log.close()


def test_a_batch_is_one_unbroken_stretch_of_the_chain_and_keeps_one_accepted_copy(log: MessageLog) -> None:
    first = log.append(entry(1))
    results = log.append_many([(entry(2), True), (entry(3, outcome="rechazado"), False), (entry(2), True),
                               (entry(1), True), (entry(4), True)])
    created = [c for _, c in results]
    assert created == [True, True, False, False, True]
    assert [r.seq for r, _ in results] == [2, 3, 2, 1, 4], "a repeated idMensaje gets the accepted record back"
    assert results[0][0].prev_hash == first.record_hash and results[4][0].prev_hash == results[1][0].record_hash
    assert [r.seq for r in log.records()] == [1, 2, 3, 4]
    assert log.verify().ok
    assert {m: [r.seq for r in rs] for m, rs in log.find_many(["msg-1", "msg-3", "msg-9"]).items()} == {
        "msg-1": [1], "msg-3": [3], "msg-9": []}
    assert log.append_many([]) == []
