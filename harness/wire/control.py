"""The harness's end of the control channel: it hands each probe run its next step and records
what the runs report (entered, sending, sent, exited) into the history.

Why a TCP server of the harness's own (see the README, "Black-box: --mode http"): the server processes already
reach the harness over loopback, a connection per run tells the harness at once when a run's
process dies (the connection closes), and a reply to "sending" lets the harness record the send
before any client can read the event. A table in the shared database would need polling (latency,
load on the database under test) and could not tell a dead run from a slow one.

Commands wait in a queue per task until a live run asks for its next step; every run of a task
takes from the same queue, oldest run first (the in-process probe's gate works the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.records import ProcessEnter, ProcessExit, Send, Sent

Add = Callable[..., Any]
"""A recorder's `add(record type, process, **fields)`."""


@dataclass
class _TaskGate:
    commands: deque[dict[str, Any]] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    seq: int = 0
    waiting: list[int] = field(default_factory=list)
    """Runs (by connection number) waiting for a command, oldest first."""


@dataclass
class LiveRun:
    number: int
    process: str
    task: str
    obj: str
    exited: bool = False


class ControlServer:
    """Listens on a loopback port; `address` is what the server processes get as STREAMSPEC_CONTROL."""

    def __init__(self, add: Add, task_token: Callable[[str], str | None]) -> None:
        self._add = add
        self._task_token = task_token
        self._gates: dict[str, _TaskGate] = {}
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.runs: list[LiveRun] = []
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"

    async def close(self) -> None:
        """Stop listening and drop every run's connection (their runs raise `LinkLost`)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()  # its reader sees the end: the connection's task returns by itself
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=2)
        for task in list(self._connections):
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):  # a Ctrl-C goes on
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # -- what the scenario asks --

    def gate(self, task: str) -> _TaskGate:
        found = self._gates.get(task)
        if found is None:
            found = self._gates[task] = _TaskGate()
        return found

    def command(self, task: str, kind: str, way: str | None = None) -> None:
        """Queue a step for `task`'s probe: "send" (one event), "return" or "fail" (with a way)."""
        gate = self.gate(task)
        gate.commands.append({"cmd": kind, **({"way": way} if way else {})})
        gate.changed.set()

    def pending(self, task: str) -> int:
        """Commands queued for `task` that no run has taken yet."""
        return len(self.gate(task).commands)

    def live_runs(self, task: str | None = None) -> list[LiveRun]:
        return [r for r in self.runs if not r.exited and (task is None or r.task == task)]

    # -- a run's connection --

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._connections.add(current)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, json.JSONDecodeError):
            pass
        except asyncio.CancelledError:
            # Only `close` cancels, at the end of the example: asyncio's stream protocol would log
            # a cancelled connection task as an error.
            pass
        finally:
            self._connections.discard(current)
            self._writers.discard(writer)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        run: LiveRun | None = None
        line: bytes | None = None
        while True:
            if line is None:
                line = await reader.readline()
            if not line:
                return  # its process died (or shut down): the Fault record says which
            message, line = json.loads(line), None
            op = message.get("op")
            if op == "enter":
                task = self._task_token(str(message["task"]))
                if task is None:
                    return  # a probe row of another example: not this history's
                run = LiveRun(len(self.runs), str(message["process"]), task,
                              f"{message['process']}:obj{message['obj']}")
                self.runs.append(run)
                self._add(ProcessEnter, run.process, task=run.task, obj=run.obj)
                await _reply(writer, {"ack": True})
            elif run is None:
                return
            elif op == "next":
                answer = await self._next(run, reader)
                if isinstance(answer, bytes):
                    line = answer  # the run said something while it waited (its exit, or EOF)
                else:
                    await _reply(writer, answer)
            elif op == "sending":
                self._add(Send, run.process, task=run.task, seq=int(message["seq"]),
                          event_type=str(message["type"]))
                await _reply(writer, {"ack": True})
            elif op == "sent":
                self._add(Sent, run.process, task=run.task, seq=int(message["seq"]))
            elif op == "exit":
                run.exited = True
                self._add(ProcessExit, run.process, task=run.task, obj=run.obj,
                          outcome=str(message["outcome"]))
                return

    async def _next(self, run: LiveRun, reader: asyncio.StreamReader) -> dict[str, Any] | bytes:
        """The run's next command, once one is queued and no older live run waits before it; or
        the line the run sent meanwhile (a cancelled run reports its exit without asking)."""
        gate = self.gate(run.task)
        gate.waiting.append(run.number)
        said = asyncio.ensure_future(reader.readline())
        try:
            while not (gate.commands and gate.waiting[0] == run.number):
                if run.exited:
                    return b""
                gate.changed.clear()
                changed = asyncio.ensure_future(gate.changed.wait())
                done, _ = await asyncio.wait({changed, said}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if said in done:
                    return said.result()
            if said.done():
                return said.result()  # the run exited or died just now: the command stays queued
            command = dict(gate.commands.popleft())
        finally:
            if run.number in gate.waiting:
                gate.waiting.remove(run.number)
            gate.changed.set()  # the next waiter looks again
            if not said.done():
                said.cancel()
                # The stream allows one reader at a time: the next readline waits for this one.
                await asyncio.wait({said})
        if command["cmd"] in ("send", "return"):
            gate.seq += 1
            command["seq"] = gate.seq
        return command

    def run_gone(self, process: str) -> None:
        """`process` died: its runs take no more commands (their connections close too)."""
        for run in self.runs:
            if run.process == process and not run.exited:
                run.exited = True
                self.gate(run.task).changed.set()


async def _reply(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()
