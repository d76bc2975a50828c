"""One SSE stream of a task, independent of the server that carries it.

Both the standalone ASGI server (`server.py`) and the Django view (`views.py`) open streams here,
so they answer the same statuses, bodies and wire format.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from . import access
from .channel import OVERFLOW, TERMINAL_TYPES, Event
from .conf import streaming_settings
from .coordinator import TaskCoordinator, current_coordinator
from .models import StreamTask, TaskStatus

_ID = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1  # the largest BigAutoField value; a larger id cannot name a row


# W1: what an EventSource needs to read the body at all, and no cache or proxy holding it back.
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx would otherwise hold events back
}


class StreamError(Exception):
    """A request that cannot be streamed: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Response:
    """What to answer: a JSON body (a finished task), no content, or an event stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterable[bytes] | None = None

    async def aclose(self) -> None:
        close = getattr(self.stream, "aclose", None)
        if close is not None:
            await close()


class StreamLimiter:
    """Counts open streams of one server process (S8: a limit answered with 503 + Retry-After)."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self.open = 0

    @property
    def limit(self) -> int:
        return self._limit if self._limit is not None else streaming_settings().max_streams

    @property
    def full(self) -> bool:
        return self.open >= self.limit

    def refusal(self) -> StreamError:
        retry = str(streaming_settings().retry_after_seconds)
        return StreamError(503, "Too many open streams, retry later", {"Retry-After": retry})

    def acquire(self) -> None:
        if self.full:
            raise self.refusal()
        self.open += 1

    def release(self) -> None:
        self.open -= 1


def parse_task_id(raw: str) -> int:
    """The task id of a URL, or a 400 (W4: checked before any lookup, never a 500)."""
    if not _ID.fullmatch(raw) or int(raw) > _MAX_ID:
        raise StreamError(400, "Invalid task ID: expected a positive integer")
    return int(raw)


def parse_last_event_id(raw: str | None) -> int | None:
    """Last-Event-ID as a number; anything else (a foreign id) is ignored, as the header is a hint
    (W5: a client resumes after the event it names)."""
    if raw is None:
        return None
    raw = raw.strip()
    return int(raw) if _ID.fullmatch(raw) else None


def encode(event: Event | dict, task: StreamTask) -> bytes:
    """The SSE frame of an event, once per event however many clients receive it (W2: ``id:``,
    ``event:`` and one ``data:`` line of JSON, ended by a blank line, written whole)."""
    wire = getattr(event, "wire", None)
    if wire is not None:
        return wire
    data = event.get("data")
    if isinstance(data, dict):
        # The upstream library adds these to every event's data; kept for wire compatibility.
        data = {**data, "_task_id": task.pk, "_app": task._meta.app_label,
                "_model": type(task).__name__, "_timestamp": event.get("timestamp")}
    frame = f"event: {event['type']}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"
    if event.get("id") is not None:
        frame = f"id: {event['id']}\n{frame}"
    wire = frame.encode()
    if isinstance(event, Event):
        event.wire = wire
    return wire


def final_state(task: StreamTask) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "failed" if task.status == TaskStatus.FAILED else "completed",
        "final_value": task.final_value,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
    }
    if task.status == TaskStatus.FAILED:
        body["error"] = task.error
    return body


async def open_stream(
    app_name: str,
    model_name: str,
    raw_task_id: str,
    last_event_id: str | None = None,
    *,
    limiter: StreamLimiter,
    coordinator: TaskCoordinator | None = None,
    accept: str | None = None,
    token: str | None = None,
    request: Any = None,
) -> Response:
    """Resolve a stream request into a response, or raise `StreamError`. `accept` is the request's
    Accept header: an SSE client (EventSource sends ``text/event-stream``) gets a finished task's
    final state as an event; any other client gets it as a JSON document (the seed's API).
    `token` is the signed URL's, `request` the Django view's (for the model's ``can_stream``):
    a client `access` refuses gets the answer of a missing task."""
    sse = accept is not None and "text/event-stream" in accept
    coordinator = coordinator or current_coordinator()
    task_id = parse_task_id(raw_task_id)
    try:
        model = coordinator.resolve_model(app_name, model_name)
    except LookupError:
        raise StreamError(404, "Not Found: no such streaming task model") from None
    if not await access.permits(model, task_id, token, request):
        raise _missing()
    resume_after = parse_last_event_id(last_event_id)
    resuming = last_event_id is not None
    if limiter.full:
        # Turned away: answer what needs no stream, and start nothing for this request.
        row = await model._default_manager.filter(pk=task_id).afirst()
        if row is None:
            raise _missing()
        if row.is_finished:
            return _finished(row, resuming, resume_after, sse)
        raise limiter.refusal()
    limiter.acquire()  # held from here, so no other request can take the slot meanwhile
    streaming = False
    try:
        task = await coordinator.get_task_instance(app_name, model_name, task_id)
        if task is None:
            raise _missing()
        if task.is_finished and not coordinator.is_task_running(app_name, model_name, task_id):
            return _finished(task, resuming, resume_after, sse)
        channel = coordinator.channel_of(task)
        ended = channel.ended if channel is not None else None
        if resuming and ended is not None and _has(ended, resume_after):
            # The task is storing its outcome: the row does not say finished yet, but this client
            # already has the terminal event, and nothing will follow it.
            return Response(204, {})
        if ended is not None and not resuming and not sse:
            # Stored and being forgotten: a plain client gets a finished task's JSON document,
            # whether or not the coordinator has let the task go yet.
            row = await type(task)._default_manager.filter(pk=task.pk).afirst()
            if row is not None and row.is_finished:
                return _finished(row, resuming, resume_after, sse)
        conf = streaming_settings()
        queue = StreamQueue(conf.client_buffer, conf.client_buffer_bytes,
                            lambda event: len(encode(event, task)))
        await task.add_client(queue, resume_after)
        streaming = True
        return Response(200, dict(SSE_HEADERS), stream=EventStream(task, queue, resume_after, limiter))
    finally:
        if not streaming:
            limiter.release()


def _missing() -> StreamError:
    """The answer to a task that does not exist, and to a client that may not know whether it does."""
    return StreamError(404, "Task not found")


def _has(event: dict[str, Any], resume_after: int | None) -> bool:
    """Whether a client that saw event `resume_after` already has `event`."""
    return resume_after is not None and event.get("id") is not None and event["id"] <= resume_after


def _finished(task: StreamTask, resuming: bool, resume_after: int | None, sse: bool = False) -> Response:
    if not resuming and not sse:
        body = json.dumps(final_state(task), cls=DjangoJSONEncoder).encode()
        return Response(200, {"Content-Type": "application/json"}, body)
    # An SSE client (an EventSource cannot read a JSON document: it fails on the content type),
    # joining late or reconnecting: hand it the terminal event, or tell it to stop (204) if it
    # already has it.
    last = task.last_event or {}
    if _has(last, resume_after):
        return Response(204, {})
    failed = task.status == TaskStatus.FAILED
    terminal = Event(last.get("type", "error" if failed else "complete"), last.get("data", final_state(task)),
                     last.get("timestamp"), last.get("id"))

    async def once() -> AsyncIterator[bytes]:
        yield encode(terminal, task)

    return Response(200, dict(SSE_HEADERS), stream=once())


class StreamQueue(asyncio.Queue):
    """The queue of one SSE client: an `asyncio.Queue` that can also wake a reader waiting for
    more events early, once half of its buffer is used (so batching never makes it overflow).

    Bounded in events (`maxsize`) and, with `max_bytes`, in the bytes of the events' SSE frames
    (`size_of`): a put past either bound raises `asyncio.QueueFull`, on which the channel drops
    the client with its overflow notice (S8.2). An event is always let into an empty queue, however
    big: a client is dropped for falling behind, not for the size of one event."""

    def __init__(self, maxsize: int, max_bytes: int | None = None,
                 size_of: Callable[[Event], int] | None = None) -> None:
        super().__init__(maxsize)
        self.high_water = max(1, maxsize // 2)
        self.max_bytes = max_bytes if size_of is not None else None
        self.high_bytes = (max_bytes or 0) // 2
        self.bytes = 0
        self._size_of = size_of
        self.filling: asyncio.Future | None = None

    def _filled(self) -> bool:
        return self.qsize() >= self.high_water or (
            self.max_bytes is not None and self.bytes >= self.high_bytes)

    def put_nowait(self, item: Any) -> None:
        size = 0
        if self.max_bytes is not None and isinstance(item, Event):
            size = self._size_of(item)  # type: ignore[misc]
            if self.bytes + size > self.max_bytes and not self.empty():
                raise asyncio.QueueFull
        super().put_nowait(item)
        self.bytes += size
        filling = self.filling
        if filling is not None and not filling.done() and self._filled():
            filling.set_result(None)

    def _get(self) -> Any:
        item = super()._get()  # type: ignore[misc]
        if self.max_bytes is not None and isinstance(item, Event):
            self.bytes -= self._size_of(item)  # type: ignore[misc]
        return item

    async def more(self, until: float) -> None:
        """Wait until loop time `until`, or less if the queue fills up meanwhile."""
        if self._filled():
            return
        loop = asyncio.get_running_loop()
        self.filling = filling = loop.create_future()
        timer = loop.call_at(until, _resolve, filling)
        try:
            await filling
        finally:
            timer.cancel()
            self.filling = None


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class EventStream:
    """The body of one SSE response. `aclose()` must be called once the response is over, whether
    or not it was iterated: it detaches the client and frees the stream slot."""

    def __init__(
        self, task: StreamTask, queue: asyncio.Queue, resume_after: int | None, limiter: StreamLimiter
    ) -> None:
        self.task = task
        self.queue = queue
        self.last_id = resume_after if resume_after is not None else 0
        self._limiter: StreamLimiter | None = limiter

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        queue, task = self.queue, self.task
        conf = streaming_settings()
        keepalive, batch = conf.keepalive_seconds, conf.batch_seconds
        # Only our own queue can wake us early; a plain asyncio.Queue just waits out the interval.
        more = getattr(queue, "more", None)
        loop = asyncio.get_running_loop()
        written = -math.inf
        # Sent at once so the client has its response headers before the task's first event (W1).
        yield b": connected\n\n"
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    event = await queue.get()
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if (batch and event is not None
                    and event["type"] not in TERMINAL_TYPES and event["type"] != OVERFLOW):
                now = loop.time()
                if now - written < batch:
                    # A busy stream (it wrote less than one batch interval ago) holds the event
                    # back a little so that the events sent meanwhile go out in the same write: a
                    # write costs the server as much as encoding many events, and with many clients
                    # the writes, not the task, set the pace. Events further apart than that gain
                    # nothing from waiting: each goes out at once (a paced task's latency).
                    await (more(now + batch) if more is not None else asyncio.sleep(batch))
            frames: list[bytes] = []
            while True:
                if event is None:  # dropped under STREAMING_OVERFLOW_NOTICE = "close": end the stream
                    if frames:
                        yield b"".join(frames)
                    return
                kind = event["type"]
                if kind == OVERFLOW:
                    frames.append(f"event: {OVERFLOW}\ndata: {json.dumps(event['data'])}\n\n".encode())
                    yield b"".join(frames)
                    return
                event_id = event.get("id")
                if event_id is None or event_id > self.last_id:
                    frames.append(encode(event, task))
                    if event_id is not None:
                        self.last_id = event_id
                if kind in TERMINAL_TYPES or queue.empty():
                    break
                # Everything already queued goes out in one write: far fewer sends under load.
                event = queue.get_nowait()
            if frames:
                yield b"".join(frames)
                written = loop.time()
            if kind in TERMINAL_TYPES:
                return  # W3: nothing follows a terminal event, so the response ends with it

    async def aclose(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is None:
            return
        limiter.release()
        await self.task.remove_client(self.queue)
