"""Operational records (monitoring, not evidence) written in batches and read back, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from broker.gateway.records import OperationalRecord, OperationalRecords

START = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def test_a_batch_of_records_reads_back_field_for_field(database_url: str) -> None:
    records = OperationalRecords(database_url)
    written = [OperationalRecord(
        message_id=f"m-{n}", hop="pasarela", sender="CO/PLAT/900000002", recipient="CO/GOB/899999040",
        service="verificarIdentidad v1.0", received_at=START + dt.timedelta(seconds=n),
        completed_at=START + dt.timedelta(seconds=n, milliseconds=12), duration_ms=12.5, size_bytes=3278,
        outcome="entregado" if n else "rechazado", fault_code=None if n else "GEL-AUTH-TRANSPORT_USER",
        log_seq=n + 1 if n else None, attempt=n) for n in range(3)]
    records.add_many(written)
    records.add(written[0])
    assert records.for_message("m-0") == [written[0], written[0]]
    assert records.since(START + dt.timedelta(seconds=1)) == written[1:]
    records.close()
