"""Push fan-out across processes: PostgreSQL LISTEN/NOTIFY wakes the relays of a task at once.

A process relays a task that runs elsewhere by reading the event log (following.py). Polling it
delays each event by up to a poll interval and queries the database while nothing happens. Where
the database is PostgreSQL, a trigger on the log (migration 0002) sends ``NOTIFY streaming_events,
'<label>:<pk>'`` for every logged event; one connection per process LISTENs, and a notification
wakes the relays of that task, which read the log as before.

Why LISTEN/NOTIFY (and not Redis):
- The log stays the only source of truth, and the notification is transactional: PostgreSQL
  delivers it when the insert commits, never before, so a woken relay always finds the event.
- A missed notification (the listener reconnecting, a dropped connection) delays an event, never
  loses it: relays still poll, backing off as before, and a listener that (re)connects wakes
  every relay once to read what it may have missed.
- Deployments of this app already have PostgreSQL; nothing else to run, secure and monitor.
- Notifications are delivered in commit order to each listener, and each relay reads the log in
  sequence order anyway; the cost is one trigger call per event and one idle connection per
  process. (Redis pub/sub would add a server and a second path that can disagree with the log.)

Off (STREAMING_PUSH = False), without psycopg, or on another database: polling only.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Hashable
from typing import Any

from django.db import connections, router

from .conf import streaming_settings

logger = logging.getLogger("streaming.push")

CHANNEL = "streaming_events"
RECONNECT_SECONDS = 1.0


def payload(label: str, pk: Hashable) -> str:
    """The notification of an event of task `pk` of model `label` (what the trigger sends)."""
    return f"{label}:{pk}"


class Listener:
    """The LISTEN connection of one event loop, and the relays waiting on it, by task.

    A relay reads `generation(name)` before it reads the log and then waits with it: a notification
    that came in between is not lost, the wait returns at once."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = params
        self._generations: dict[str, int] = {}
        self._watchers: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.connected = False
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="streaming-listen")

    def watch(self, name: str) -> None:
        self._watchers[name] = self._watchers.get(name, 0) + 1
        self._generations.setdefault(name, 0)

    def unwatch(self, name: str) -> None:
        left = self._watchers.get(name, 0) - 1
        if left > 0:
            self._watchers[name] = left
        else:
            self._watchers.pop(name, None)
            self._generations.pop(name, None)

    def generation(self, name: str) -> int:
        return self._generations.get(name, 0)

    async def wait(self, name: str, since: int, seconds: float) -> None:
        """Return when task `name` was notified after generation `since`, or after `seconds`."""
        if self._generations.get(name, 0) != since:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[name]

    def _wake(self, name: str) -> None:
        if name not in self._generations:
            return  # a task nobody here relays
        self._generations[name] += 1
        for waiter in self._waiters.pop(name, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _wake_all(self) -> None:
        for name in list(self._generations):
            self._wake(name)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(**self._params, autocommit=True)
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    self._wake_all()  # what was logged while nobody listened is read now
                    async for note in connection.notifies():
                        self._wake(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relays poll meanwhile: an event is late, never lost
                if self.connected:
                    logger.warning("Event notifications lost (%s); reconnecting", exc)
            finally:
                self.connected = False
            await asyncio.sleep(RECONNECT_SECONDS)

    def close(self) -> None:
        self._task.cancel()


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Listener] = weakref.WeakKeyDictionary()


def _params(connection: Any) -> dict[str, Any] | None:
    if connection.vendor != "postgresql":
        return None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None
    # The connection Django itself would open, less what only its cursor classes use.
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if isinstance(v, str | int) and not isinstance(v, bool)}


def listener() -> Listener | None:
    """This event loop's listener, started on first use; None where there is no push (see above)."""
    from .models import StreamEvent

    if not (streaming_settings().push and streaming_settings().event_log):
        return None
    loop = asyncio.get_running_loop()
    found = _listeners.get(loop)
    if found is None:
        params = _params(connections[router.db_for_read(StreamEvent)])
        if params is None:
            return None
        found = _listeners[loop] = Listener(params)
    return found


async def close() -> None:
    """Stop this event loop's listener (the server's shutdown)."""
    found = _listeners.pop(asyncio.get_running_loop(), None)
    if found is not None:
        found.close()
        await asyncio.gather(found._task, return_exceptions=True)
