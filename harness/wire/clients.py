"""SSE clients over real connections (httpx), recording what they receive into the history.

A client is one GET of a task's stream URL on one server. It records the response head
(`Response`: status, the headers the wire clauses judge, seconds to the head), every event a
standard SSE parser (httpx-sse's decoder) reads from the body, read as the adapter's conventions
say (`harness.records.record_read`), what a standard client could not parse (`WireError`), and how
the stream ended. Reading stops when the client is told to stall (the socket's buffers then fill,
as a browser tab that stopped reading does) and resumes when told to read again.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from harness.conventions import Conventions
from harness.records import Complete, Response, StreamEnd, WireError, record_read
from harness.spec import CLOSE_BOUND

JUDGED_HEADERS = ("content-type", "cache-control", "x-accel-buffering", "connection", "retry-after")


def judged_headers(response: httpx.Response) -> dict[str, str]:
    """The headers of `response` that the wire clauses judge (names in lower case)."""
    return {k: response.headers[k] for k in JUDGED_HEADERS if k in response.headers}


_FAULT_ENDS = {"killed": "crashed", "terminating": "shutdown", "stopped": "shutdown"}
"""How a stream that ended without its terminal event ended, by its server's state then."""
HEAD_TIMEOUT = 10.0
"""Seconds a request waits for its response head before the client records it as hung."""


class WireClient:
    """One client's stream. `server_state()` tells, when the stream ends, whether its server was
    killed or shut down meanwhile (then the end is the fault's, not the implementation's)."""

    def __init__(self, name: str, task: str, process: str, url: str, op_id: str,
                 add: Callable[..., Any], conventions: Conventions, server_state: Callable[[], str],
                 http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self.name, self.task, self.process, self.url, self.op_id = name, task, process, url, op_id
        self._add, self._conventions, self._server_state, self._http = add, conventions, server_state, http
        self._headers = {"Accept": "text/event-stream", "Cache-Control": "no-store", **(headers or {})}
        self.reading = asyncio.Event()
        self.reading.set()
        self.ended = False
        self.answered = asyncio.Event()
        """Set when the request has its response head, or failed to get one."""
        self.last_event_id: str | None = None
        self.last_seq: int | None = None
        """The probe's number of the last event this client read (where a reconnect resumes)."""
        self._task: asyncio.Task[None] | None = None
        self._leaving = False

    def open(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        began = time.monotonic()
        try:
            async with self._http.stream("GET", self.url, headers=self._headers,
                                         timeout=httpx.Timeout(HEAD_TIMEOUT, read=None)) as response:
                self._add(Response, self.process, client=self.name, status=response.status_code,
                          headers=judged_headers(response),
                          after=round(time.monotonic() - began, 6))
                streaming = response.status_code == 200 and response.headers.get(
                    "content-type", "").partition(";")[0].strip() == "text/event-stream"
                self._add(Complete, self.process, op_id=self.op_id, status="ok" if streaming else "fail",
                          error=None if streaming else f"HTTP {response.status_code}")
                self.answered.set()
                if not streaming:
                    with contextlib.suppress(httpx.HTTPError):
                        await response.aread()
                    self._end("closed")
                    return
                await self._read(response)
        except httpx.TimeoutException:
            if not self.answered.is_set():
                self._add(Complete, self.process, op_id=self.op_id, status="unknown",
                          error=f"no response head within {HEAD_TIMEOUT:.0f} s")
                self.answered.set()
            self._end("closed")
        except httpx.HTTPError as exc:
            if not self.answered.is_set():
                # Refused or reset before a head: the request failed (its server may be down).
                self._add(Complete, self.process, op_id=self.op_id, status="fail",
                          error=f"{type(exc).__name__}: {exc}")
                self.answered.set()
            self._end(None)
        finally:
            self.answered.set()

    async def _read(self, response: httpx.Response) -> None:
        lines, events = SSELineDecoder(), SSEDecoder()
        decoder = codecs.getincrementaldecoder("utf-8")()
        pending = False
        ended_at: float | None = None
        """When the terminal event came: from then on the server must close the stream (W3)."""
        chunks = response.aiter_raw()
        try:
            while True:
                if ended_at is None:
                    await self.reading.wait()
                    chunk = await anext(chunks, None)
                else:
                    left = ended_at + CLOSE_BOUND + 0.5 - time.monotonic()
                    try:
                        chunk = await asyncio.wait_for(anext(chunks, None), max(left, 0.0))
                    except TimeoutError:
                        if self._server_state() == "up":
                            self._add(WireError, self.process, client=self.name, what="open_after_end",
                                      problem=f"the stream was still open {CLOSE_BOUND:g} s after its "
                                              "terminal event")
                        return
                if chunk is None:
                    break
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    self._add(WireError, self.process, client=self.name, problem=f"not UTF-8: {exc}")
                    return self._end("closed")
                for line in lines.decode(text) if text else []:
                    sse = events.decode(line)
                    pending = bool(line) and not line.startswith(":")
                    if sse is None:
                        continue
                    pending = False
                    if not sse.data:
                        # The SSE standard dispatches no event with an empty data buffer (a block
                        # with only `retry:`, or httpx-sse's echo of the last id after a comment).
                        continue
                    if ended_at is not None:
                        self._add(WireError, self.process, client=self.name, what="after_end",
                                  problem=f"event {sse.event or 'message'!r} after the end of the stream")
                        return
                    if self._event(sse):
                        ended_at = time.monotonic()
        except httpx.HTTPError:
            pass
        if ended_at is not None:
            return
        if pending or lines.flush():
            self._add(WireError, self.process, client=self.name,
                      problem="the stream ended in the middle of an event (no blank line after its fields)")
        self._end(None)

    def _event(self, sse: Any) -> bool:
        """Record one parsed event; True if it ended the stream."""
        if sse.id:
            self.last_event_id = sse.id
        try:
            data = json.loads(sse.data) if sse.data else {}
        except ValueError:
            self._add(WireError, self.process, client=self.name,
                      problem=f"event {sse.event!r} carries data that is not JSON: {sse.data[:80]!r}")
            data = {}
        item = {"type": sse.event or "message", "data": data}
        if sse.id:
            item["id"] = sse.id
        if self._conventions.classify(item) == "event":
            seq = self._conventions.seq_of(item)
            self.last_seq = seq if seq is not None else self.last_seq
        ended = record_read(self._add, self.process, self.name, self.task, item, self._conventions)
        if ended:
            self.ended = True
        return ended

    def _end(self, reason: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        if self._leaving:
            return  # the detach recorded its own end
        state = self._server_state()
        if reason is None:
            reason = _FAULT_ENDS.get(state, "closed")
        self._add(StreamEnd, self.process, client=self.name, reason=reason)

    def stall(self) -> None:
        self.reading.clear()

    def resume(self) -> None:
        self.reading.set()

    async def close(self, detaching: bool = False) -> None:
        """Leave: close the connection (a detach, or the end of the example)."""
        self._leaving = detaching or self._leaving
        self.reading.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # Not BaseException: a Ctrl-C that lands here must end the run, not be swallowed.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task
