"""Durations in chain definitions: `30s`, `5m`, `2h`, `3d`, and legal terms in working days, `15dh`
(días hábiles: Monday to Friday; national holidays are not modelled)."""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass

__all__ = ["Duration", "DurationRange", "parse_duration", "parse_range"]

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|dh|d)\s*$")
_WORKDAY = 86400


@dataclass(frozen=True, slots=True)
class Duration:
    amount: float
    unit: str

    @property
    def text(self) -> str:
        return f"{self.amount:g}{self.unit}"

    def after(self, start: dt.datetime) -> dt.datetime:
        """The moment this duration ends when it starts at `start` (working days skip weekends)."""
        if self.unit != "dh":
            return start + dt.timedelta(seconds=self.amount * _UNIT_SECONDS[self.unit])
        moment, left = start, self.amount
        while left > 0:
            step = min(left, 1.0)
            moment += dt.timedelta(seconds=step * _WORKDAY)
            while moment.weekday() >= 5:
                moment += dt.timedelta(days=1)
            left -= step
        return moment

    @property
    def seconds(self) -> float:
        """Nominal length (working days counted as 7/5 calendar days)."""
        return self.amount * (_WORKDAY * 7 / 5 if self.unit == "dh" else _UNIT_SECONDS[self.unit])


def parse_duration(text: str | int | float) -> Duration:
    """`"5m"` → Duration(5, "m"); a bare number is seconds. ValueError names the accepted forms."""
    if isinstance(text, int | float):
        return Duration(float(text), "s")
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"duración {text!r} no válida: use 30s, 5m, 2h, 3d o 15dh (días hábiles)")
    return Duration(float(match.group(1)), match.group(2))


@dataclass(frozen=True, slots=True)
class DurationRange:
    """`"2h..3d"`: a duration drawn uniformly between two bounds (simulation); `"2h"` is fixed."""

    low: Duration
    high: Duration

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low.seconds, self.high.seconds)


def parse_range(text: str | int | float) -> DurationRange:
    low, _, high = str(text).partition("..")
    first = parse_duration(low if isinstance(text, str) else text)
    return DurationRange(first, parse_duration(high) if high else first)
