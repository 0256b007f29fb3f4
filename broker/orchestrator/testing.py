"""For tests of chains and of what reads the orchestrator's store: a dispatcher that keeps what would be sent
(no bus; the test answers for the entities) and a clock the test moves."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from broker.orchestrator.engine import InstanceState, Send

__all__ = ["ManualClock", "RecordingDispatcher"]


@dataclass
class RecordingDispatcher:
    sent: list[Send] = field(default_factory=list)
    commits: int = 0

    def send(self, connection: Connection, state: InstanceState, effect: Send) -> None:
        self.sent.append(effect)

    def committed(self) -> None:
        self.commits += 1

    def last(self, step: str) -> Send:
        """The latest request a step sent."""
        return [s for s in self.sent if s.step == step][-1]


@dataclass
class ManualClock:
    now: dt.datetime = dt.datetime(2026, 11, 23, 14, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)
