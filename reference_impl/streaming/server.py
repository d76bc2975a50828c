"""The standalone ASGI server: ``GET /stream/<app>/<model>/<pk>`` and ``GET /health``.

`app` is what `runserver_stream` serves with uvicorn; `StreamingApp` can be mounted elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import django
from django.apps import apps

if not apps.ready:  # imported as a server entry point: configure Django like manage.py would
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reference_impl.settings")
    django.setup()

from django.db import Error as DatabaseError

from . import push
from .conf import streaming_settings
from .coordinator import TaskCoordinator, current_coordinator
from .streams import Response, StreamError, StreamLimiter, open_stream

logger = logging.getLogger("streaming.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class StreamingApp:
    """An ASGI application serving task streams over Server-Sent Events."""

    def __init__(
        self, coordinator: TaskCoordinator | None = None, limiter: StreamLimiter | None = None
    ) -> None:
        self.coordinator = coordinator
        self.limiter = limiter or StreamLimiter()
        self.stopping = False
        # One future per open stream, not an asyncio.Event: an app object outlives event loops
        # (tests run one per test), and an Event is bound to the first loop that waits on it.
        self._stop_waiters: set[asyncio.Future[None]] = set()

    def stop(self) -> None:
        """The server is shutting down: end every open stream now, with a ``retry:`` hint, so that
        browsers reconnect (to another worker) at once instead of the shutdown waiting them out
        (W6: a bounded shutdown)."""
        self.stopping = True
        for waiter in list(self._stop_waiters):
            if not waiter.done():
                waiter.set_result(None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            response = await self._route(scope)
        except StreamError as exc:
            response = _text(exc.status, exc.message, exc.headers)
        except DatabaseError:
            logger.exception("Database error while opening %s", scope["path"])
            response = _text(503, "Service Unavailable: database error", {"Retry-After": "1"})
        except Exception:
            logger.exception("Error while opening %s", scope["path"])
            response = _text(500, "Internal Server Error")
        try:
            await self._send(response, scope, receive, send)
        finally:
            await response.aclose()

    async def _route(self, scope: Scope) -> Response:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/health":
            if method not in ("GET", "HEAD"):
                return _text(405, "Method Not Allowed", {"Allow": "GET, HEAD"})
            return _text(200, "OK")
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "stream":
            return _text(404, "Not Found")
        if method != "GET":
            return _text(405, "Method Not Allowed", {"Allow": "GET"})
        last_event_id = _header(scope, b"last-event-id")
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[-1]
        return await open_stream(
            parts[1], parts[2], parts[3], last_event_id,
            limiter=self.limiter, coordinator=self.coordinator or current_coordinator(),
            accept=_header(scope, b"accept"), token=token,
        )

    async def _send(self, response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        if response.stream is None:
            headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if response.stream is None:
            body = b"" if scope["method"] == "HEAD" else response.body
            await send({"type": "http.response.body", "body": body})
            return
        pump = asyncio.ensure_future(_pump(response, send))
        watch = asyncio.ensure_future(_until_disconnect(receive))
        stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop_waiters.add(stopping)
        if self.stopping:
            stopping.set_result(None)
        first: set[asyncio.Future[Any]] = set()
        try:
            first, _ = await asyncio.wait({pump, watch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stop_waiters.discard(stopping)
            for task in (pump, watch, stopping):
                task.cancel()
            await asyncio.gather(pump, watch, stopping, return_exceptions=True)
        if stopping in first and pump not in first and watch not in first:
            retry = streaming_settings().retry_after_seconds * 1000
            await send({"type": "http.response.body", "body": f"retry: {retry}\n\n".encode()})
            return
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            logger.error("Stream %s ended with an error", scope["path"], exc_info=pump.exception())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await (self.coordinator or current_coordinator()).shutdown()
                await push.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _pump(response: Response, send: Send) -> None:
    assert response.stream is not None
    async for chunk in response.stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _until_disconnect(receive: Receive) -> None:
    """Returns when the client left: its stream is then ended and its connection let go (W6)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
                    message.encode())


app = StreamingApp()
