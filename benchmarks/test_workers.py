"""Several server processes on one PostgreSQL database (the reference only: upstream runs a task once
per process, and relays nothing to another).

- latency: a `pace` task runs on server A; half the clients are on A, half on server B, which relays
  the task's events from the database's event log. For every event each client receives, the time
  from just before `send_event` was called (the event carries it) to its arrival, p50 and p99, on
  the task's own server and on the other: pushed (LISTEN/NOTIFY wakes B's relay) and polled
  (`STREAMING_PUSH = False`, B reads the log every `STREAMING_POLL_SECONDS`, 0.5 s by default).
- throughput: one `runserver_stream --workers N` (1, 2, 4), `workers_clients` clients spread over
  the workers by the kernel, one task sending `workers_events` events as fast as it can: deliveries
  per second, from the first event sent to the last terminal event received.

The database is STREAMSPEC_PG_URL (default the local server's ``streamspec_bench``): `run.py`
passes it as DATABASE_URL to this group only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time

import pytest
from django.db import connection

from benchmarks.benchapp.models import PACE, BenchTask
from benchmarks.config import sizes
from benchmarks.figures import HIGHER, LOWER, WALL, Timed, percentile, record
from benchmarks.http_client import HOST, TERMINALS, sse_request, start_server, stop_server, stream
from benchmarks.inproc import APP, MODEL
from harness.adapters import stream_path_of

SIZES = sizes()
CLIENT_TIMEOUT = 60.0
_STAMP = re.compile(rb'"t": ([0-9.]+)[,}]')


@pytest.fixture(autouse=True)
def _needs_postgres_and_the_reference(sut_adapter):
    if connection.vendor != "postgresql":
        raise pytest.UsageError("the workers benchmarks need DATABASE_URL to be a PostgreSQL database "
                                "(run.py passes STREAMSPEC_PG_URL)")
    if sut_adapter.name != "reference":
        raise pytest.UsageError("the workers benchmarks measure the reference only")


async def _latencies(port: int, path: str) -> list[float]:
    """Read a stream to its end; for each progress event, seconds from its ``t`` to its arrival."""
    found: list[float] = []
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(sse_request(port, path))
        buffer = b""
        while True:
            chunk = await reader.read(65536)
            now = time.time()
            if not chunk:
                break
            # Only whole events are read (a read may end inside one): each is counted once.
            buffer += chunk
            end = buffer.rfind(b"\n\n")
            if end < 0:
                continue
            whole, buffer = buffer[:end + 2], buffer[end + 2:]
            found += [now - float(m.group(1)) for m in _STAMP.finditer(whole)]
            if any(marker in whole for marker in TERMINALS):
                break
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return found


async def _latency_round(servers, adapter, clients: int, events: int) -> tuple[list[float], list[float]]:
    owner, other = servers
    half = clients // 2
    task = await BenchTask.objects.acreate(mode=PACE, clients=half, events=events, pause=SIZES.workers_pause,
                                           first_delay=1.0, wait_seconds=30.0)
    path = stream_path_of(adapter, APP, MODEL, task.pk)
    async with asyncio.timeout(CLIENT_TIMEOUT):
        here = [asyncio.ensure_future(_latencies(owner.port, path))]
        await asyncio.sleep(0.3)  # the first request starts the task on the owner
        here += [asyncio.ensure_future(_latencies(owner.port, path)) for _ in range(half - 1)]
        there = [asyncio.ensure_future(_latencies(other.port, path)) for _ in range(clients - half)]
        local, remote = await asyncio.gather(asyncio.gather(*here), asyncio.gather(*there))
    return [x for xs in local for x in xs], [x for xs in remote for x in xs]


@pytest.mark.parametrize("push", [True, False], ids=["push", "poll"])
def test_crossworker_latency(benchmark, aloop, sut_adapter, push):
    benchmark.group = "workers-latency"
    label = "reference-push" if push else "reference-poll"
    settings = json.dumps({"STREAMING_PUSH": push})
    servers = [start_server("reference", settings_json=settings) for _ in range(2)]
    rounds: list[tuple[list[float], list[float]]] = []
    try:
        timed = Timed(lambda: rounds.append(aloop.run_until_complete(
            _latency_round(servers, sut_adapter, SIZES.workers_clients, SIZES.workers_events))))
        benchmark.pedantic(timed, rounds=2, warmup_rounds=1, iterations=1)
    finally:
        for server in servers:
            stop_server(server)
    local = [x for r in rounds[1:] for x in r[0]]
    remote = [x for r in rounds[1:] for x in r[1]]
    expected = SIZES.workers_events * (SIZES.workers_clients // 2) * (len(rounds) - 1)
    if len(local) < expected or len(remote) < expected:
        raise AssertionError(f"events went missing: {len(local)} and {len(remote)} of {expected}")
    for side, samples in (("same-worker", local), ("other-worker", remote)):
        for q in (50, 99):
            record(benchmark, f"workers/latency-p{q}/{side}", label, percentile(samples, q) * 1e3, "ms",
                   LOWER, clock=WALL, clients=SIZES.workers_clients, workers=2, samples=len(samples))


async def _throughput_round(server, adapter, clients: int, events: int) -> float:
    task = await BenchTask.objects.acreate(mode=PACE, clients=1, events=events, pause=0.0, first_delay=1.5,
                                           wait_seconds=30.0)
    path = stream_path_of(adapter, APP, MODEL, task.pk)
    results = await asyncio.gather(*(stream(server.port, path, CLIENT_TIMEOUT) for _ in range(clients)))
    failures = [r.error or f"status {r.status}" for r in results if r.terminal_at is None]
    if failures:
        raise AssertionError(f"{len(failures)} of {clients} clients got no terminal event: {failures[:3]}")
    delivered = sum(r.count("progress") for r in results)
    last = max(r.terminal_at for r in results)  # monotonic; the first event came first_delay after
    elapsed = last - (min(r.sent_at for r in results) + 1.5)
    return delivered / elapsed


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_throughput(benchmark, aloop, sut_adapter, workers):
    benchmark.group = "workers-throughput"
    server = start_server("reference", args=("--workers", str(workers)),
                          settings_json=json.dumps({"STREAMING_PUSH": True}))
    rates: list[float] = []
    try:
        timed = Timed(lambda: rates.append(aloop.run_until_complete(
            _throughput_round(server, sut_adapter, SIZES.workers_clients, SIZES.workers_events * 10))))
        benchmark.pedantic(timed, rounds=2, warmup_rounds=1, iterations=1)
    finally:
        stop_server(server)
    record(benchmark, f"workers/deliveries/{workers}", "reference-push", max(rates[1:] or rates),
           "deliveries/s", HIGHER, clock=WALL, clients=SIZES.workers_clients, workers=workers,
           median=statistics.median(rates))
