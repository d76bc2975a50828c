"""Memory, measured with tracemalloc (allocations still live; the benchmark timing is incidental).

- per idle client: `memory_clients` clients of a running task, each an `asyncio.Queue` whose
  consumer task waits in `get()`, attached with `add_client` - the whole cost of one in-process
  client (``idle-client``), and the part the implementation adds on top of the queue and the
  consumer (``registration``). Raw baseline: the queue and the consumer, registered in a list.
  The ``native`` contender ("<implementation>-native") makes each client with the implementation's
  own client type instead (the reference's `Subscription`), consumed the same way.
- a client that never reads: one attached queue nobody drains while the task sends `stuck_events`
  events of `stuck_payload` bytes; what stays allocated afterwards (an unbounded buffer keeps every
  event alive; a bounded policy keeps a few).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest

from benchmarks.config import sizes
from benchmarks.figures import LOWER, Timed, record
from benchmarks.inproc import Process, client_factory

SIZES = sizes()


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _waiter(queue: Any) -> None:
    await queue.get()


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.parametrize("contender", ["sut", "native", "raw"], indirect=True)
def test_memory_idle_client(benchmark, aloop, sut_adapter, contender):
    benchmark.group = "memory-idle"
    n = SIZES.memory_clients
    make_client = client_factory(sut_adapter, contender)
    process = task = None
    registry: list = []
    if contender == "raw":
        async def attach(queue):
            registry.append(queue)
    else:
        process = Process(sut_adapter)
        task = aloop.run_until_complete(process.start_parked())
        attach = task.add_client
    result: dict[str, int] = {}

    async def clients() -> None:
        queues, consumers = [], []
        # Warm the implementation's paths (first-use caches are not per-client costs).
        warm = make_client()
        await attach(warm)
        if task is not None:
            await task.remove_client(warm)
        tracemalloc.start()
        try:
            before = _traced()
            for _ in range(n):
                queue = make_client()
                queues.append(queue)
                consumers.append(asyncio.get_running_loop().create_task(_waiter(queue)))
            await _settle()
            unattached = _traced()
            for queue in queues:
                await attach(queue)
            await _settle()
            after = _traced()
        finally:
            tracemalloc.stop()
        result.update(total=after - before, registration=after - unattached)
        if task is not None:
            for queue in queues:
                await task.remove_client(queue)
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    timed = Timed(lambda: aloop.run_until_complete(clients()), warmup=0)
    benchmark.pedantic(timed, rounds=1, iterations=1)
    record(benchmark, "memory/idle-client", contender, result["total"] / n, "B", LOWER, clients=n)
    record(benchmark, "memory/registration", contender, result["registration"] / n, "B", LOWER, clients=n)
    if task is not None:
        aloop.run_until_complete(process.finish(task))


@pytest.mark.parametrize("contender", ["sut", "native"], indirect=True)
def test_memory_stuck_client(benchmark, aloop, sut_adapter, contender):
    benchmark.group = "memory-stuck"
    make_client = client_factory(sut_adapter, contender)
    process = Process(sut_adapter)
    task = aloop.run_until_complete(process.start_parked())
    pad = "x" * SIZES.stuck_payload
    result: dict[str, int] = {}

    async def stuck() -> None:
        queue = make_client()
        await task.send_event("progress", {"i": -1, "pad": pad})  # warm, and a latest event
        tracemalloc.start()
        try:
            before = _traced()
            await task.add_client(queue)
            for i in range(SIZES.stuck_events):
                await task.send_event("progress", {"i": i, "pad": pad})
            await _settle()
            after = _traced()
        finally:
            tracemalloc.stop()
        result.update(held=after - before, queued=queue.qsize())
        await task.remove_client(queue)

    timed = Timed(lambda: aloop.run_until_complete(stuck()), warmup=0)
    benchmark.pedantic(timed, rounds=1, iterations=1)
    # Tens of KiB move with incidental allocations; the design difference is in MiB.
    record(benchmark, "memory/stuck-client", contender, result["held"], "B", LOWER, noise_floor=64 * 1024,
           events=SIZES.stuck_events, payload=SIZES.stuck_payload, queued=result["queued"])
    aloop.run_until_complete(process.finish(task))
