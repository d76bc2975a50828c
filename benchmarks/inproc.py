"""In-process drivers: a running `BenchTask` of the implementation under test, and client queues.

The implementation is reached through the harness's adapter (`new_process()` gives a coordinator
of its own) and the shared StreamTask API (`send_event`, `add_client`, `remove_client`,
`get_task_instance`), so both implementations run exactly the same benchmark code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from benchmarks.benchapp.models import PARK, BenchTask

APP, MODEL = "streamspec_bench", "BenchTask"
FINISH_TIMEOUT = 30.0
ROUND_TIMEOUT = 120.0
"""A liveness bound, not a performance assertion: a round whose deliveries never all arrive
(an implementation that lost events) fails with a message instead of hanging."""


class Process:
    """One coordinator of the implementation under test, activated for the current context."""

    def __init__(self, adapter: Any, name: str = "bench") -> None:
        self.sut = adapter.new_process(name)
        # Activated here, synchronously: every task the benchmark's loop creates copies this context.
        self.sut.activate()
        self.coordinator = getattr(self.sut, "coordinator", None)

    async def start_parked(self) -> BenchTask:
        task = await BenchTask.objects.acreate(mode=PARK)
        await self.sut.start(task)
        return task

    def lookup_fn(self) -> Any:
        """The coordinator's `get_task_instance(app, model, pk)` (through the adapter if it has
        no coordinator attribute, which adds one coroutine call)."""
        if self.coordinator is not None:
            return self.coordinator.get_task_instance

        async def lookup(app: str, model: str, pk: Any) -> Any:
            return await self.sut.lookup(BenchTask, pk)

        return lookup

    def is_running(self, task: BenchTask) -> bool:
        if self.coordinator is not None:
            return self.coordinator.is_task_running(APP, MODEL, task.pk)
        return False

    async def finish(self, task: BenchTask) -> None:
        """Release a parked task and wait (bounded) until its coordinator forgot it."""
        BenchTask.release(task.pk)
        deadline = time.monotonic() + FINISH_TIMEOUT
        while self.is_running(task) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def client_factory(adapter: Any, contender: str) -> Callable[[], Any]:
    """What makes one client for `contender` (see the `contender` fixture): the adapter's native
    client for "<name>-native", else an asyncio.Queue."""
    if contender.endswith("-native"):
        return adapter.native_client
    return asyncio.Queue


class Consumers:
    """`n` client queues (or clients made by `factory`, read with `get()` like a queue), each drained
    by a consumer task counting deliveries.

    `expect(count)` returns a future that completes when `count` more deliveries arrived in all."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, n: int, factory: Callable[[], Any] = asyncio.Queue
    ) -> None:
        self.loop = loop
        self.queues = [factory() for _ in range(n)]
        self.remaining = 0
        self.done: asyncio.Future | None = None
        self.tasks = [loop.create_task(self._consume(queue)) for queue in self.queues]

    async def _consume(self, queue: Any) -> None:
        get = queue.get
        while True:
            await get()
            self.remaining -= 1
            if self.remaining == 0 and self.done is not None and not self.done.done():
                self.done.set_result(None)

    def expect(self, count: int) -> asyncio.Future:
        self.remaining = count
        self.done = self.loop.create_future()
        return self.done

    async def attach(self, task: Any) -> None:
        for queue in self.queues:
            await task.add_client(queue)

    async def detach(self, task: Any) -> None:
        for queue in self.queues:
            await task.remove_client(queue)

    async def stop(self) -> None:
        for consumer in self.tasks:
            consumer.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def bounded(done: asyncio.Future, consumers: Consumers, limit: float = ROUND_TIMEOUT) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(done), limit)
    except TimeoutError:
        raise AssertionError(
            f"{consumers.remaining} deliveries still missing after {limit:.0f} s: events were lost"
        ) from None
