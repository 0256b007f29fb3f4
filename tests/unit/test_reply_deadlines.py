"""Reply deadlines written for a whole batch of admitted messages: idempotent starts, answered stops."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from broker.gateway.deadlines import ReplyDeadlines
from broker.gelxml.envelope import read_header
from broker.gelxml.parsing import parse_untrusted
from tests.conftest import SAMPLES

REQUEST = read_header(parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-solicitud.xml").read_bytes()))


def test_a_batch_starts_each_clock_once_and_stops_the_answered_ones(tmp_path: Path) -> None:
    deadlines = ReplyDeadlines(f"sqlite:///{tmp_path / 'gel.db'}")
    start = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    first, second, third = (replace(REQUEST, message_id=f"solicitud-{n}") for n in (1, 2, 3))
    deadlines.expect(first, within_seconds=10, now=start)
    deadlines.track([(first, 60), (second, 60), (second, 60), (third, 5)], [], now=start)
    deadlines.track([], ["solicitud-3", "no-existe"], now=start)
    expired = deadlines.claim_expired(start + dt.timedelta(seconds=30))
    assert [p.message_id for p in expired] == ["solicitud-1"], "the first deadline is kept; answered ones never expire"
    assert [p.message_id for p in deadlines.claim_expired(start + dt.timedelta(seconds=61))] == ["solicitud-2"]
