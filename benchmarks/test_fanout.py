"""In-process fan-out: deliveries per second (events x clients / s) to 1 ... 10,000 clients.

Every client is an unbounded `asyncio.Queue` drained by a consumer task, as an in-process user
of `add_client(queue)` writes it; the ``native`` contender ("<implementation>-native") uses the
implementation's own client type instead, where it has one (the reference's `Subscription`, read
with `get()` just the same). A round sends `events` events through the running task's
instance, yielding to the loop after every `burst` of them (a task that awaits between events),
and ends when every consumer got every event. The raw baseline (`raw`) is the limit of the same
loop: a plain `put_nowait` to each of the N queues, the same consumers. The figure is from the best
round, by the process's CPU time unless BENCH_CLOCK=wall (see `figures.Timed.best`); the
wall-clock rate is kept beside it.
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.config import sizes
from benchmarks.figures import HIGHER, Timed, record
from benchmarks.inproc import Consumers, Process, bounded, client_factory

SIZES = sizes()


def events_for(clients: int) -> int:
    return min(SIZES.fanout_max_events, max(SIZES.fanout_min_events, SIZES.fanout_deliveries // clients))


async def _rounds(send, consumers: Consumers, events: int, clients: int, burst: int) -> None:
    done = consumers.expect(events * clients)
    for i in range(events):
        await send("progress", {"i": i})
        if (i + 1) % burst == 0:
            await asyncio.sleep(0)
    await bounded(done, consumers)


@pytest.mark.parametrize("clients", SIZES.fanout_clients)
@pytest.mark.parametrize("contender", ["sut", "native", "raw"], indirect=True)
def test_fanout(benchmark, aloop, sut_adapter, contender, clients):
    benchmark.group = f"fanout-{clients}"
    events = events_for(clients)
    consumers = Consumers(aloop, clients, client_factory(sut_adapter, contender))
    if contender == "raw":
        queues = consumers.queues

        async def send(event_type, data):
            event = {"type": event_type, "data": data}
            for queue in queues:
                queue.put_nowait(event)

        process = task = None
    else:
        process = Process(sut_adapter)
        task = aloop.run_until_complete(process.start_parked())
        aloop.run_until_complete(consumers.attach(task))
        send = task.send_event

    timed = Timed(lambda: aloop.run_until_complete(_rounds(send, consumers, events, clients, SIZES.burst)))
    benchmark.pedantic(timed, rounds=SIZES.rounds, warmup_rounds=1, iterations=1)
    record(benchmark, f"fanout/{clients}", contender, events * clients / timed.best,
           "deliveries/s", HIGHER, clock=timed.clock, events=events, clients=clients,
           wall_rate=events * clients / timed.best_wall)

    if task is not None:
        aloop.run_until_complete(consumers.detach(task))
        aloop.run_until_complete(process.finish(task))
    aloop.run_until_complete(consumers.stop())
