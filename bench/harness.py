"""Small timing harness: per-operation figures measured side by side in one run."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    ops: int
    mean_us: float
    p50_us: float
    p99_us: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def measure(name: str, operation: Callable[[], object], *, seconds: float = 1.0, batch: int = 50) -> Measurement:
    """Run `operation` in batches for about `seconds`, after a warm-up; per-op times in microseconds."""
    for _ in range(batch):
        operation()
    samples: list[float] = []
    gc.collect()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.perf_counter_ns()
        for _ in range(batch):
            operation()
        samples.append((time.perf_counter_ns() - started) / batch / 1000)
    samples.sort()
    return Measurement(
        name=name,
        ops=len(samples) * batch,
        mean_us=statistics.fmean(samples),
        p50_us=samples[len(samples) // 2],
        p99_us=samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    )
