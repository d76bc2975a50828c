"""What a benchmark reports beyond pytest-benchmark's timings: named figures, in its extra_info.

pytest-benchmark times rounds (its table and JSON keep every statistic); the figures a report
compares (deliveries per second, percentiles, bytes) are derived from those rounds or measured
inside them, and recorded here as ``extra_info["figures"]``: a list of ``{key, contender, value,
unit, better}``. `render.py` merges the figures of every implementation's JSON into one table by
`key`.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

HIGHER, LOWER = "higher", "lower"
CPU, WALL = "cpu", "wall"
CLOCK = os.environ.get("BENCH_CLOCK", CPU)
"""What throughput figures are computed from: ``cpu`` (the process's CPU time, all threads: what
other processes on a shared machine disturb least) or ``wall``. Latencies are always wall time."""


def record(benchmark: Any, key: str, contender: str, value: float | None, unit: str,
           better: str = HIGHER, clock: str | None = None, **extra: Any) -> None:
    """`clock`: what a time-based figure was measured with (None for sizes and counts)."""
    figure = {"key": key, "contender": contender, "value": value, "unit": unit, "better": better,
              "clock": clock}
    if extra:
        figure["extra"] = extra
    benchmark.extra_info.setdefault("figures", []).append(figure)


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Timed:
    """Wraps a round function and keeps its wall and CPU times, so figures do not depend on
    pytest-benchmark's internals (and exist with --benchmark-disable too)."""

    def __init__(self, fn: Any, warmup: int = 1, clock: str = CLOCK) -> None:
        self.fn = fn
        self.warmup = warmup
        self.clock = clock
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.cpu.append(time.process_time() - cpu)
            self.wall.append(time.perf_counter() - wall)

    def _measured(self, times: list[float]) -> list[float]:
        return times[self.warmup:] or times

    @property
    def median(self) -> float:
        return statistics.median(self._measured(self.wall))

    @property
    def best(self) -> float:
        """The fastest measured round by `clock`: load from other processes only ever slows a round
        down, so on a shared machine the best round is the steadiest estimate (as `timeit` does)."""
        return min(self._measured(self.cpu if self.clock == CPU else self.wall))

    @property
    def best_wall(self) -> float:
        return min(self._measured(self.wall))
