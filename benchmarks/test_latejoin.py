"""Late-join replay latency: a client attaching to a running task gets its latest event.

Latency = from just before `add_client(queue)` until the client's consumer task holds the replayed
event (so the loop's scheduling delay is included). Measured with `clients` other clients already
attached (it must not grow with them), on an idle loop and on a busy one: in the busy variant a
second task streams events to `busy_clients` clients of its own the whole time, a load that is
the same whatever `clients` is. p50 and p99 over every join of every round, in wall time; the
same percentiles of the loop thread's CPU time (`cpu_us`, what preemption by other processes on a
shared machine does not inflate) are kept beside them. Raw baseline: clients in a dict, the
latest event handed over with `put_nowait` (what any asyncio program pays for a join).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks.config import sizes
from benchmarks.figures import LOWER, WALL, Timed, percentile, record
from benchmarks.inproc import Consumers, Process

SIZES = sizes()


async def _first(queue: asyncio.Queue, arrived: asyncio.Future) -> None:
    await queue.get()
    arrived.set_result((time.perf_counter(), time.thread_time()))


async def _joins(task, count: int, samples: list[float], cpu_samples: list[float]) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(count):
        queue: asyncio.Queue = asyncio.Queue()
        arrived = loop.create_future()
        start, start_cpu = time.perf_counter(), time.thread_time()
        consumer = loop.create_task(_first(queue, arrived))
        await task.add_client(queue)
        end, end_cpu = await asyncio.wait_for(arrived, 30)
        samples.append(end - start)
        cpu_samples.append(end_cpu - start_cpu)
        await task.remove_client(queue)
        await consumer


async def _busy(task, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        await task.send_event("progress", {"i": i})
        await asyncio.sleep(0)
        i += 1


class RawTask:
    """The raw baseline: clients in a dict, the latest event handed to a joiner with put_nowait."""

    def __init__(self) -> None:
        self.clients: dict[asyncio.Queue, None] = {}
        self.latest = None

    async def send_event(self, event_type, data) -> None:
        self.latest = event = {"type": event_type, "data": data}
        for queue in self.clients:
            queue.put_nowait(event)

    async def add_client(self, queue: asyncio.Queue) -> None:
        self.clients[queue] = None
        if self.latest is not None:
            queue.put_nowait(self.latest)

    async def remove_client(self, queue: asyncio.Queue) -> None:
        self.clients.pop(queue, None)


class RawProcess:
    async def start_parked(self) -> RawTask:
        return RawTask()

    async def finish(self, task: RawTask) -> None:
        return None


@pytest.mark.parametrize("clients", SIZES.latejoin_clients)
@pytest.mark.parametrize("loop_state", ["idle", "busy"])
@pytest.mark.parametrize("contender", ["sut", "raw"], indirect=True)
def test_late_join(benchmark, aloop, sut_adapter, contender, loop_state, clients):
    benchmark.group = f"latejoin-{loop_state}"
    process = RawProcess() if contender == "raw" else Process(sut_adapter)
    task = aloop.run_until_complete(process.start_parked())
    consumers = Consumers(aloop, clients)
    aloop.run_until_complete(consumers.attach(task))
    aloop.run_until_complete(task.send_event("progress", {"i": -1}))  # the event a joiner gets
    busy_task = busy_clients = stop = streamer = None
    if loop_state == "busy":
        busy_task = aloop.run_until_complete(process.start_parked())
        busy_clients = Consumers(aloop, SIZES.busy_clients)
        aloop.run_until_complete(busy_clients.attach(busy_task))
        stop = asyncio.Event()
        streamer = aloop.create_task(_busy(busy_task, stop))
    samples: list[float] = []
    cpu_samples: list[float] = []
    timed = Timed(lambda: aloop.run_until_complete(_joins(task, SIZES.latejoin_joins, samples, cpu_samples)))
    benchmark.pedantic(timed, rounds=SIZES.rounds, warmup_rounds=1, iterations=1)
    measured = samples[SIZES.latejoin_joins:]  # the warm-up round's joins are left out
    measured_cpu = cpu_samples[SIZES.latejoin_joins:]
    for q in (50, 99):
        record(benchmark, f"latejoin/{loop_state}/{clients}/p{q}", contender,
               percentile(measured, q) * 1e6, "µs", LOWER, clock=WALL, clients=clients, joins=len(measured),
               cpu_us=percentile(measured_cpu, q) * 1e6)

    if streamer is not None:
        stop.set()
        aloop.run_until_complete(streamer)
        aloop.run_until_complete(busy_clients.detach(busy_task))
        aloop.run_until_complete(process.finish(busy_task))
        aloop.run_until_complete(busy_clients.stop())
    aloop.run_until_complete(consumers.detach(task))
    aloop.run_until_complete(process.finish(task))
    aloop.run_until_complete(consumers.stop())
