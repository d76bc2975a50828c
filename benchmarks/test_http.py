"""Over HTTP: a real `runserver_stream` process of the implementation (one uvicorn worker) on a
free loopback port, the SSE clients in this process (see http_client.py).

- fan-out: `clients` SSE clients of one task that waits until all are attached, then sends
  ``start`` (stamped with the server's monotonic clock, which is system-wide), `events` progress
  events (yielding to the loop after every `http_burst` of them, or whenever `send_event` itself
  waits) and ``complete``. Figures: deliveries/s (progress events received by all clients / time
  from ``start`` to the last client's terminal event) and that time itself, of the best round;
  and deliveries per CPU-second of the server process (steadier than wall time on a shared machine).
- time to response headers for a task whose first event comes `headers_delay` seconds later
  (median of the rounds), and the keep-alive comments received before that first event.
- memory per idle SSE connection: `idle_connections` connections held open to a parked task; the
  growth of the server process's resident memory (VmRSS: everything the process holds for them,
  its event loop's transports, the framework's request objects and the implementation's queues),
  per connection.
"""

from __future__ import annotations

import asyncio
import statistics

import pytest

from benchmarks.benchapp.models import PARK, STREAM, BenchTask
from benchmarks.config import sizes
from benchmarks.figures import CPU, HIGHER, LOWER, WALL, Timed, record
from benchmarks.http_client import (
    HOST,
    cpu_seconds,
    sse_request,
    start_floor,
    start_server,
    stop_server,
    stream,
)
from benchmarks.inproc import APP, MODEL
from harness.adapters import stream_path_of

SIZES = sizes()
CLIENT_TIMEOUT = 120.0
"""A liveness bound per client; no figure ever comes near it."""

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def server(sut_adapter):
    server = start_server(sut_adapter.name)
    yield server
    stop_server(server)


async def _fanout_round(server, adapter, clients: int, events: int) -> dict:
    task = await BenchTask.objects.acreate(
        mode=STREAM, clients=clients, events=events, burst=SIZES.http_burst, payload=SIZES.http_payload,
        wait_seconds=60.0,
    )
    path = stream_path_of(adapter, APP, MODEL, task.pk)  # the reference's is signed
    cpu_before = cpu_seconds(server.process.pid)
    results = await asyncio.gather(*(stream(server.port, path, CLIENT_TIMEOUT) for _ in range(clients)))
    cpu_after = cpu_seconds(server.process.pid)
    start = next((r.data_of("start") for r in results if r.data_of("start")), None)
    done = [r.terminal_at for r in results if r.terminal_at is not None]
    delivered = sum(r.count("progress") for r in results)
    failures = [r.error or f"status {r.status}" for r in results if r.terminal_at is None]
    if start is None or not done or failures:
        raise AssertionError(f"{len(failures)} of {clients} clients got no terminal event: {failures[:3]}")
    last = max(done) - start["t0"]
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {"last": last, "delivered": delivered, "expected": clients * events, "rate": delivered / last,
            "cpu_rate": delivered / server_cpu if server_cpu else None}


@pytest.mark.parametrize("clients", SIZES.http_clients)
def test_http_fanout(benchmark, aloop, server, sut_adapter, sut_label, clients):
    benchmark.group = f"http-fanout-{clients}"
    events = max(1, SIZES.http_deliveries // clients)
    rounds: list[dict] = []
    timed = Timed(lambda: rounds.append(
        aloop.run_until_complete(_fanout_round(server, sut_adapter, clients, events))))
    benchmark.pedantic(timed, rounds=SIZES.http_rounds, warmup_rounds=1, iterations=1)
    measured = rounds[1:] or rounds
    missing = sum(r["expected"] - r["delivered"] for r in measured)
    record(benchmark, f"http/deliveries/{clients}", sut_label, max(r["rate"] for r in measured),
           "deliveries/s", HIGHER, clock=WALL, clients=clients, events=events, missing=missing)
    record(benchmark, f"http/last-terminal/{clients}", sut_label,
           min(r["last"] for r in measured) * 1e3, "ms", LOWER, clock=WALL, clients=clients, events=events)
    cpu_rates = [r["cpu_rate"] for r in measured if r["cpu_rate"]]
    if cpu_rates:
        record(benchmark, f"http/server-cpu/{clients}", sut_label, max(cpu_rates),
               "deliveries/CPU-s", HIGHER, clock=CPU, clients=clients, events=events)


async def _headers_round(port: int, adapter) -> dict:
    task = await BenchTask.objects.acreate(mode=STREAM, clients=1, events=0, first_delay=SIZES.headers_delay)
    result = await stream(port, stream_path_of(adapter, APP, MODEL, task.pk), CLIENT_TIMEOUT)
    if result.headers_at is None or result.terminal_at is None:
        raise AssertionError(f"the stream did not complete: {result.error or result.status}")
    return {
        "headers": result.headers_at - result.sent_at,
        "first_event": (result.first_event_at or result.terminal_at) - result.sent_at,
        "keepalives": result.comments(b": keepalive"),
    }


def test_http_time_to_headers(benchmark, aloop, server, sut_adapter, sut_label):
    benchmark.group = "http-headers"
    rounds: list[dict] = []
    timed = Timed(lambda: rounds.append(aloop.run_until_complete(_headers_round(server.port, sut_adapter))))
    benchmark.pedantic(timed, rounds=SIZES.headers_rounds, warmup_rounds=1, iterations=1)
    measured = rounds[1:] or rounds
    record(benchmark, "http/headers", sut_label, statistics.median(r["headers"] for r in measured) * 1e3,
           "ms", LOWER, clock=WALL, first_event_delay_s=SIZES.headers_delay,
           keepalives_before_first_event=statistics.median(r["keepalives"] for r in measured))


def rss_bytes(pid: int) -> int | None:
    """The resident memory of a process (VmRSS), from /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def _idle_round(server, adapter, clients: int) -> float | None:
    """`clients` SSE connections to one parked task (it sends nothing), held open: the growth of
    the server process's resident memory per connection."""
    task = await BenchTask.objects.acreate(mode=PARK)
    path = stream_path_of(adapter, APP, MODEL, task.pk)
    await asyncio.sleep(0.5)
    before = rss_bytes(server.process.pid)
    request = sse_request(server.port, path)
    writers = []
    try:
        for _ in range(clients):
            _, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(request)
            writers.append(writer)
        # The reference answers each head at once, upstream only with a first event that never
        # comes: give both the same time to take every request in.
        await asyncio.sleep(SIZES.idle_settle)
        after = rss_bytes(server.process.pid)
    finally:
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.5)
    return None if before is None or after is None else (after - before) / clients


@pytest.mark.parametrize("contender", ["sut", "raw"], indirect=True)
def test_http_memory_per_idle_connection(benchmark, aloop, sut_adapter, contender):
    # A server of its own: the memory a process once grew to stays its resident size (freed
    # blocks are reused, not returned), so a server that served other benchmarks would show
    # nothing. A few connections first load the code every connection runs; then one round.
    # Raw: uvicorn with the least SSE app (floor_app.py), the floor under both implementations.
    benchmark.group = "http-memory"
    clients = SIZES.idle_connections
    server = start_floor() if contender == "raw" else start_server(sut_adapter.name)
    rounds: list[float | None] = []
    try:
        aloop.run_until_complete(_idle_round(server, sut_adapter, 20))
        timed = Timed(lambda: rounds.append(
            aloop.run_until_complete(_idle_round(server, sut_adapter, clients))))
        benchmark.pedantic(timed, rounds=1, iterations=1)
    finally:
        stop_server(server)
    if rounds[0] is not None:
        record(benchmark, f"http/memory-idle/{clients}", contender, rounds[0], "B", LOWER, clients=clients)
