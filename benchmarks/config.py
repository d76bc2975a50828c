"""Workload sizes, from environment variables so a quick run is one variable away.

``BENCH_QUICK=1`` selects the smaller defaults (a run of a few minutes); any ``BENCH_*`` variable
below overrides its own size in either mode. Lists are comma-separated.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


def _quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0", "false", "no")


def _int(name: str, full: int, quick: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else (quick if _quick() else full)


def _float(name: str, full: float, quick: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else (quick if _quick() else full)


def _ints(name: str, full: tuple[int, ...], quick: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name)
    if raw:
        return tuple(int(part) for part in raw.split(",") if part.strip())
    return quick if _quick() else full


@dataclass(frozen=True)
class Sizes:
    quick: bool
    rounds: int
    """Measured rounds of every throughput benchmark (after one warm-up round)."""
    fanout_clients: tuple[int, ...]
    fanout_deliveries: int
    """Deliveries (events x clients) per fan-out round; at least `fanout_min_events` events."""
    fanout_min_events: int
    fanout_max_events: int
    """Bounds of the events per round (per-event costs, e.g. a database write, dominate at 1 client)."""
    burst: int
    """Events sent before the sender yields to the loop (in-process fan-out and HTTP task)."""
    latejoin_clients: tuple[int, ...]
    latejoin_joins: int
    """Late joins timed per round (p50/p99 over all rounds)."""
    busy_clients: int
    """Clients of the background task that keeps the loop busy in the `busy` late-join variant."""
    lookup_hot: int
    lookup_cold: int
    memory_clients: int
    stuck_events: int
    """Events sent while a client that never reads is attached."""
    stuck_payload: int
    http_clients: tuple[int, ...]
    http_deliveries: int
    http_payload: int
    http_burst: int
    """Events the HTTP benchmark's task sends before it yields to the loop (unless sending yields)."""
    http_rounds: int
    headers_delay: float
    """Seconds the task waits before its first event in the time-to-headers benchmark."""
    headers_rounds: int
    harness_scenarios: int
    idle_connections: int
    """Idle SSE connections held open to measure the server's memory per connection."""
    idle_settle: float
    """Seconds the server gets to take every idle connection in before its memory is read."""
    workers_clients: int
    """SSE clients of the several-servers benchmarks (half on each server in the latency one)."""
    workers_events: int
    """Events per latency round (ten times as many per throughput round)."""
    workers_pause: float
    """Seconds between two events of the latency round's task."""


def sizes() -> Sizes:
    return Sizes(
        quick=_quick(),
        rounds=_int("BENCH_ROUNDS", 4, 3),
        fanout_clients=_ints("BENCH_FANOUT_CLIENTS", (1, 10, 100, 1_000, 10_000),
                             (1, 10, 100, 1_000, 10_000)),
        fanout_deliveries=_int("BENCH_FANOUT_DELIVERIES", 60_000, 20_000),
        fanout_min_events=_int("BENCH_FANOUT_MIN_EVENTS", 20, 5),
        fanout_max_events=_int("BENCH_FANOUT_MAX_EVENTS", 2_000, 500),
        burst=_int("BENCH_BURST", 1, 1),
        latejoin_clients=_ints("BENCH_LATEJOIN_CLIENTS", (10, 1_000, 10_000), (10, 1_000)),
        latejoin_joins=_int("BENCH_LATEJOIN_JOINS", 300, 100),
        busy_clients=_int("BENCH_BUSY_CLIENTS", 100, 100),
        lookup_hot=_int("BENCH_LOOKUP_HOT", 20_000, 5_000),
        lookup_cold=_int("BENCH_LOOKUP_COLD", 200, 50),
        memory_clients=_int("BENCH_MEMORY_CLIENTS", 2_000, 500),
        stuck_events=_int("BENCH_STUCK_EVENTS", 2_000, 1_500),
        stuck_payload=_int("BENCH_STUCK_PAYLOAD", 200, 200),
        http_clients=_ints("BENCH_HTTP_CLIENTS", (100, 500), (100, 500)),
        http_deliveries=_int("BENCH_HTTP_DELIVERIES", 20_000, 10_000),
        http_payload=_int("BENCH_HTTP_PAYLOAD", 64, 64),
        http_burst=_int("BENCH_HTTP_BURST", 10, 10),
        http_rounds=_int("BENCH_HTTP_ROUNDS", 3, 2),
        headers_delay=_float("BENCH_HEADERS_DELAY", 1.0, 0.5),
        headers_rounds=_int("BENCH_HEADERS_ROUNDS", 5, 3),
        harness_scenarios=_int("BENCH_HARNESS_SCENARIOS", 50, 20),
        idle_connections=_int("BENCH_IDLE_CONNECTIONS", 1000, 500),
        idle_settle=_float("BENCH_IDLE_SETTLE", 2.0, 2.0),
        workers_clients=_int("BENCH_WORKERS_CLIENTS", 100, 100),
        workers_events=_int("BENCH_WORKERS_EVENTS", 100, 40),
        workers_pause=_float("BENCH_WORKERS_PAUSE", 0.02, 0.02),
    )


def as_dict() -> dict:
    return asdict(sizes())
