"""Reply deadlines written for a whole batch of admitted messages: idempotent starts, answered stops — on SQLite and
PostgreSQL, alone and inside the message log's transaction (as the gateway writes them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from broker.gateway.deadlines import ReplyDeadlines
from broker.gelxml.envelope import read_header
from broker.gelxml.parsing import parse_untrusted
from broker.security.message_log import LogEntry, MessageLog
from tests.conftest import SAMPLES

REQUEST = read_header(parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-solicitud.xml").read_bytes()))
START = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def test_a_batch_starts_each_clock_once_and_stops_the_answered_ones(database_url: str) -> None:
    deadlines = ReplyDeadlines(database_url)
    first, second, third = (replace(REQUEST, message_id=f"solicitud-{n}") for n in (1, 2, 3))
    deadlines.expect(first, within_seconds=10, now=START)
    deadlines.track([(first, 60), (second, 60), (second, 60), (third, 5)], [], now=START)
    deadlines.track([], ["solicitud-3", "no-existe"], now=START)
    expired = deadlines.claim_expired(START + dt.timedelta(seconds=30))
    assert [p.message_id for p in expired] == ["solicitud-1"], "the first deadline is kept; answered ones never expire"
    assert [p.message_id for p in deadlines.claim_expired(START + dt.timedelta(seconds=61))] == ["solicitud-2"]
    deadlines.close()


def test_clocks_started_in_the_logs_transaction_commit_and_roll_back_with_its_records(database_url: str) -> None:
    log, deadlines = MessageLog(database_url), ReplyDeadlines(database_url)
    first, second = (replace(REQUEST, message_id=f"solicitud-{n}") for n in (1, 2))
    entry = LogEntry(message=b"<mensaje/>", message_id=first.message_id, sender=first.sender,
                     recipient=first.recipient, service=str(first.service), message_type="solicitud",
                     outcome="aceptado")
    log.append_many([(entry, True)], also=lambda connection, _: deadlines.track_in(
        connection, [(first, 5), (first, 5)], [], now=START))

    def fails(connection: object, _: object) -> None:
        deadlines.track_in(connection, [(second, 5)], [], now=START)  # type: ignore[arg-type]
        raise RuntimeError("el registro del lote falló después")

    with pytest.raises(RuntimeError):
        log.append_many([(replace(entry, message_id=second.message_id), True)], also=fails)
    assert deadlines.get(first.message_id) is not None and deadlines.get(second.message_id) is None
    assert [r.message_id for r in log.records()] == [first.message_id]
    log.append_many([(replace(entry, message_id="respuesta-1"), False)], also=lambda connection, _: deadlines.track_in(
        connection, [], [first.message_id], now=START))
    assert deadlines.claim_expired(START + dt.timedelta(seconds=10)) == [], "the answered clock never expires"
    log.close()
    deadlines.close()
