"""What the probe's `process()` obeys, and what it reports, during one scenario run.

Gates and sequence numbers belong to the task row (its pk), never to the Python object running it,
so a second object running the same task (an S4 violation) shares them and shows up as such.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import StreamspecError

# One name per line: the standalone scripts inline these definitions by name.
SEND = "send"
RETURN = "return"
RAISE = "raise"
FINISH_WAYS = ("complete", "value", "none", "mark_completed")
"""How `process()` finishes, the plain way first: it sends its own ``complete`` event and returns a
value (as the seed's ExampleTask does); it returns a value without a terminal event; it returns
None without one; it calls the model's ``mark_completed(final_value=...)`` itself (where the base
class has one) and returns the value. A coordinator must end every client's stream in each case."""
FAIL_WAYS = ("exception", "cancelled", "base_exception")
"""How `process()` fails, the plain way first: an ordinary exception; ``asyncio.CancelledError``
raised by the task's own code (an awaited sub-task was cancelled: nothing cancelled the run from
outside); a `BaseException` that is not an `Exception`."""


class ProbeFailure(Exception):
    """The exception a probe raises when the scenario makes it fail."""


class ProbeAbort(BaseException):
    """What a probe raises for the ``base_exception`` way of failing: not an `Exception`, so a
    coordinator that only catches `Exception` lets it escape."""


@dataclass
class ProbeHooks:
    """Callbacks into the run's recorder: process() entered/left, an event about to be sent, and
    its send_event call returned."""

    entered: Callable[[Any], None]
    exited: Callable[[Any, str], None]
    sending: Callable[[Any, int, str], None]
    sent: Callable[[Any, int], None]


class _Gate:
    """The commands waiting for one task's probe. Every run of the task waits on the same gate:
    a command wakes them all and the first live one takes it (a run frozen by a crash never
    will, so a plain queue, which wakes one waiter per item, could hand the command to it)."""

    __slots__ = ("changed", "commands")

    def __init__(self) -> None:
        self.commands: deque[str] = deque()
        self.changed = asyncio.Event()

    def open(self, command: str) -> None:
        self.commands.append(command)
        self.changed.set()
        self.changed = asyncio.Event()

    async def take(self) -> str:
        while not self.commands:
            await self.changed.wait()
        return self.commands.popleft()


@dataclass
class Gates:
    hooks: ProbeHooks
    capture_stacks: bool = True
    """Whether probe objects remember where they were made (`harness.probe.stacks`)."""
    _gates: dict[Any, _Gate] = field(default_factory=dict)
    _seq: dict[Any, int] = field(default_factory=dict)

    def gate(self, pk: Any) -> _Gate:
        gate = self._gates.get(pk)
        if gate is None:
            gate = self._gates[pk] = _Gate()
        return gate

    def open(self, pk: Any, command: str) -> None:
        self.gate(pk).open(command)

    def next_seq(self, pk: Any) -> int:
        self._seq[pk] = self._seq.get(pk, 0) + 1
        return self._seq[pk]

    async def run(self, task: Any) -> Any:
        self.hooks.entered(task)
        outcome = "error"
        try:
            gate = self.gate(task.pk)
            while True:
                command, _, way = (await gate.take()).partition(":")
                if command == SEND:
                    await self._send(task, "progress")
                elif command == RETURN:
                    value = await self._finish(task, way or FINISH_WAYS[0])
                    outcome = "ok"
                    return value
                else:
                    outcome = "raised"
                    self._fail(task, way or FAIL_WAYS[0])
        except asyncio.CancelledError:
            # Not raised by the probe itself: the run was cancelled from outside (a shutdown, or
            # the coordinator stopping it), which is neither a finish nor a failure of the task.
            outcome = "error" if outcome == "raised" else "cancelled"
            raise
        finally:
            self.hooks.exited(task, "error" if outcome == "raised" else outcome)

    async def _finish(self, task: Any, way: str) -> Any:
        return await finish_way(task, way, self._seq.get(task.pk, 0), lambda: self._send(task, "complete"))

    def _fail(self, task: Any, way: str) -> None:
        fail_way(task, way)

    async def _send(self, task: Any, event_type: str) -> int:
        n = self.next_seq(task.pk)
        self.hooks.sending(task, n, event_type)
        await task.send_event(event_type, {"n": n})
        self.hooks.sent(task, n)
        return n


async def finish_way(task: Any, way: str, last: int, send_complete: Callable[[], Awaitable[int]]) -> Any:
    """How a probe's `process()` finishes, one of `FINISH_WAYS`, after its event number `last`;
    `send_complete` sends its own terminal event and gives its number. Shared by the in-process
    gates and the HTTP mode's (`harness.wire.link`), so both probes finish alike."""
    value = {"n": last}
    if way == "complete":
        # Like the seed's ExampleTask, the probe sends its own terminal event.
        return {"n": await send_complete()}
    if way == "none":
        return None
    if way == "mark_completed":
        mark = getattr(task, "mark_completed", None)
        if mark is not None:
            await mark(final_value=value)
    return value


def fail_way(task: Any, way: str) -> None:
    """Raise as a probe's `process()` fails, one of `FAIL_WAYS`."""
    message = f"probe task {task.pk} made to fail"
    if way == "cancelled":
        raise asyncio.CancelledError(message)
    if way == "base_exception":
        raise ProbeAbort(message)
    raise ProbeFailure(message)


_gates: contextvars.ContextVar[Gates | None] = contextvars.ContextVar("streamspec_gates", default=None)


_process_gates: Any = None
"""The gates of a whole server process (the HTTP mode's `harness.wire.link.WireGates`), used when
no run of the in-process engine is active."""


def install_process_gates(gates: Any) -> None:
    global _process_gates
    _process_gates = gates


def current_gates() -> Gates:
    gates = _gates.get() or _process_gates
    if gates is None:
        raise StreamspecError(
            "a ProbeTask ran outside a streamspec run: probe tasks only run inside harness scenarios"
        )
    return gates


def activate_gates(gates: Gates) -> contextvars.Token:
    return _gates.set(gates)
