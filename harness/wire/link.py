"""The probe's end of the control channel, inside a server process of the HTTP mode.

Installed by the probe app when the server runs with ``STREAMSPEC_CONTROL`` set (see
`harness.wire.server_settings`). Each run of a probe task's `process()` opens one TCP connection
to the harness and speaks newline-delimited JSON, strictly request then reply, so the two sides
never read each other's messages out of turn:

- ``{"op": "enter", "process", "task", "obj"}`` -> ``{"ack": true}``: the run began;
- ``{"op": "next"}`` -> a command: ``{"cmd": "send", "seq"}``, ``{"cmd": "return", "way", "seq"}``
  or ``{"cmd": "fail", "way"}``;
- ``{"op": "sending", "seq", "type"}`` -> ``{"ack": true}``: about to call send_event (the harness
  records the send before any client can receive the event);
- ``{"op": "sent", "seq"}`` and ``{"op": "exit", "outcome"}``: no reply.

The harness numbers the events (``seq``), not the probe: a task resumed in another process goes on
counting where the dead one stopped, as the in-process probe's shared counter does.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from harness.probe.gates import FAIL_WAYS, FINISH_WAYS, fail_way, finish_way

CONTROL_ENV = "STREAMSPEC_CONTROL"
"""host:port of the harness's control server."""
PROCESS_ENV = "STREAMSPEC_PROCESS"
"""The server process's name in the history (p0, p1, ...)."""


class LinkLost(Exception):
    """The harness closed the control channel: the example is over, this run cannot go on."""


class _Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def say(self, message: dict[str, Any], *, reply: bool = False) -> dict[str, Any] | None:
        self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()
        if not reply:
            return None
        line = await self.reader.readline()
        if not line:
            raise LinkLost("the harness closed the control channel")
        return json.loads(line)

    def close(self) -> None:
        self.writer.close()


class WireGates:
    """What `ProbeTask.process()` runs in a server process: each step asked of the harness."""

    def __init__(self, address: str, process: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.process = host, int(port), process

    async def run(self, task: Any) -> Any:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        channel = _Channel(reader, writer)
        outcome = "error"
        try:
            await channel.say(
                {"op": "enter", "process": self.process, "task": str(task.pk), "obj": id(task)}, reply=True
            )
            while True:
                command = await channel.say({"op": "next"}, reply=True)
                assert command is not None
                kind = command["cmd"]
                if kind == "send":
                    await self._send(channel, task, int(command["seq"]), "progress")
                elif kind == "return":
                    value = await self._finish(channel, task, command.get("way") or FINISH_WAYS[0],
                                               int(command["seq"]))
                    outcome = "ok"
                    return value
                else:
                    outcome = "raised"
                    fail_way(task, command.get("way") or FAIL_WAYS[0])
        except asyncio.CancelledError:
            outcome = "error" if outcome == "raised" else "cancelled"
            raise
        finally:
            try:
                await channel.say({"op": "exit", "outcome": "error" if outcome == "raised" else outcome})
            except (OSError, asyncio.CancelledError):
                pass
            channel.close()

    async def _send(self, channel: _Channel, task: Any, seq: int, event_type: str) -> int:
        await channel.say({"op": "sending", "seq": seq, "type": event_type}, reply=True)
        await task.send_event(event_type, {"n": seq})
        await channel.say({"op": "sent", "seq": seq})
        return seq

    async def _finish(self, channel: _Channel, task: Any, way: str, seq: int) -> Any:
        return await finish_way(task, way, seq - 1, lambda: self._send(channel, task, seq, "complete"))


def from_environment() -> WireGates | None:
    """The gates of this server process, if the harness started it with a control channel."""
    address = os.environ.get(CONTROL_ENV)
    if not address:
        return None
    return WireGates(address, os.environ.get(PROCESS_ENV, "p?"))
