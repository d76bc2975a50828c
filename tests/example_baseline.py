"""The example-based baseline: tests in the style of the seed's suggested test, written by hand.

They drive the reference (or a mutant of it) with plain asyncio and fixed sleeps, as a project's
own test suite would. The mutant matrix runs them beside the harness, to show what each approach
catches. Each example returns None when it passes, or what went wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from reference_impl.example.models import ExampleTask, FailingTask
from reference_impl.streaming.coordinator import coordinator

APP = "example"


async def _drain(queue: asyncio.Queue, timeout: float = 1.0) -> list[dict]:
    events: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while not events or events[-1]["type"] not in ("complete", "error"):
                events.append(await queue.get())
    except TimeoutError:
        pass
    return events


async def instance_consistency() -> str | None:
    """The seed's suggested test: two lookups of a running task give one object with one set of clients."""
    task = await ExampleTask.objects.acreate(message="Instance test")
    first = await coordinator.get_task_instance(APP, "ExampleTask", task.pk)
    queue: asyncio.Queue = asyncio.Queue()
    await first.add_client(queue)
    second = await coordinator.get_task_instance(APP, "ExampleTask", task.pk)
    if second is not first:
        return "the second lookup returned another object"
    if len(second._clients) != 1:
        return "the second object does not know the first client"
    await _drain(queue)
    return None


async def two_clients_get_everything() -> str | None:
    task = await ExampleTask.objects.acreate(message="two clients")
    queues = [asyncio.Queue(), asyncio.Queue()]
    for queue in queues:
        await task.add_client(queue)
    await coordinator.start_task(task, APP, "ExampleTask")
    for queue in queues:
        kinds = [e["type"] for e in await _drain(queue)]
        if kinds != ["start", "progress", "progress", "progress", "complete"]:
            return f"a client received {kinds}"
    return None


async def late_joiner_gets_latest() -> str | None:
    task = await ExampleTask.objects.acreate(message="late")
    await coordinator.start_task(task, APP, "ExampleTask")
    await asyncio.sleep(0.015)
    late = await coordinator.get_task_instance(APP, "ExampleTask", task.pk)
    queue: asyncio.Queue = asyncio.Queue()
    await late.add_client(queue)
    events = await _drain(queue)
    if not events or events[0]["type"] not in ("start", "progress"):
        return f"the late joiner's first event was {events[:1]}"
    return None


async def failure_is_reported() -> str | None:
    task = await FailingTask.objects.acreate(message="boom")
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task, APP, "FailingTask")
    events = await _drain(queue)
    if not events or events[-1]["type"] != "error":
        return f"the client's last event was {events[-1:]}"
    return None


async def completed_task_is_not_rerun() -> str | None:
    task = await ExampleTask.objects.acreate(message="done")
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task, APP, "ExampleTask")
    await _drain(queue)
    await asyncio.sleep(0.01)
    again = await coordinator.get_task_instance(APP, "ExampleTask", task.pk)
    if again is None or coordinator.is_task_running(APP, "ExampleTask", task.pk):
        return "a completed task was started again"
    return None


EXAMPLES: dict[str, Callable[[], Awaitable[str | None]]] = {
    f.__name__: f
    for f in (instance_consistency, two_clients_get_everything, late_joiner_gets_latest,
              failure_is_reported, completed_task_is_not_rerun)
}


def run_examples() -> dict[str, str | None]:
    """Run every example on a fresh loop and coordinator; name -> None (pass) or the failure."""

    async def main() -> dict[str, str | None]:
        results: dict[str, str | None] = {}
        for name, example in EXAMPLES.items():
            coordinator.__init__()
            try:
                async with asyncio.timeout(5):
                    results[name] = await example()
            except Exception as exc:
                results[name] = f"raised {type(exc).__name__}: {exc}"
            await coordinator.shutdown()
        coordinator.__init__()
        return results

    return asyncio.run(main())
