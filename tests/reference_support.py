"""Helpers for the reference implementation's in-process tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import pairwise
from typing import Any, TypeVar

from reference_impl.streaming.channel import TERMINAL_TYPES

APP = "example"
FAST = {"STREAMING_POLL_SECONDS": 0.01, "STREAMING_LEASE_SECONDS": 0.3}
"""Relays and leases in hundredths of a second, for tests with several processes."""

T = TypeVar("T")


async def in_process(coordinator: Any, coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run `coro_fn()` as a coroutine of `coordinator`'s process (tasks it creates belong to it)."""

    async def body() -> T:
        coordinator.activate()
        return await coro_fn()

    return await asyncio.create_task(body())


async def settle(*coordinators: Any) -> None:
    """Until no task runs and no relay follows one in any of `coordinators`."""
    async with asyncio.timeout(5):
        for c in coordinators:
            await c.join()
        while any(c.resources()["relays"] for c in coordinators):
            await asyncio.sleep(0.01)


async def drain(queue: asyncio.Queue, timeout: float = 2.0) -> tuple[list[dict[str, Any]], bool]:
    """Events from `queue` up to the terminal one; (events, ended) where ended is False on timeout."""
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = await queue.get()
                events.append(event)
                if event["type"] in TERMINAL_TYPES or event["type"] == "overflow":
                    return events, True
    except TimeoutError:
        return events, False


def gaps(events: list[dict[str, Any]]) -> list[str]:
    """Problems in a client's event ids after its first event: each must be the previous plus one."""
    problems = []
    for before, after in pairwise(events):
        if after["id"] != before["id"] + 1:
            problems.append(f"event {after['id']} followed event {before['id']}")
    return problems


class EntryCounter:
    """Counts entries into a model's process(), and which object ran each."""

    def __init__(self, monkeypatch, model) -> None:
        self.objects: list[int] = []
        original = model.process

        async def counting(task):
            self.objects.append(id(task))
            return await original(task)

        monkeypatch.setattr(model, "process", counting)

    @property
    def count(self) -> int:
        return len(self.objects)
