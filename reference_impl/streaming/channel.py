"""Per-task runtime state: the clients of one task row and the latest event, shared by every instance.

The seed's bug was runtime state kept on one Python object: a second object loaded from the database
had no clients and no latest event. Here that state lives in one `TaskChannel` per task row, held by
the coordinator, so it does not matter which instance a client attaches through or sends through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

logger = logging.getLogger("streaming.channel")

TERMINAL_TYPES = frozenset({"complete", "error"})
OVERFLOW = "overflow"


class Event(dict):
    """An event as clients receive it: ``{"type", "data", "timestamp", "id"}``.

    A plain dict to its readers (the upstream library's clients expect dicts); `wire` caches the
    encoded SSE frame so fan-out to many HTTP clients serialises each event once.
    """

    __slots__ = ("wire",)

    def __init__(self, event_type: str, data: Any, timestamp: str, event_id: int) -> None:
        super().__init__(type=event_type, data=data, timestamp=timestamp, id=event_id)
        self.wire: bytes | None = None

    @property
    def is_terminal(self) -> bool:
        return self["type"] in TERMINAL_TYPES


class TaskChannel:
    """Clients, latest event and event sequence of one task row, within one coordinator.

    Every method is synchronous on purpose: registering a client and replaying the latest event
    happen in one step of the event loop, so no `send_event` can fall between them (S3).

    Buffer policy (S8): a client whose queue is full (a bounded queue), or that has more than
    `limit` events waiting (an unbounded queue), is dropped: it is detached, its queue is emptied
    and receives one ``overflow`` event, after which nothing more. A reader that gets ``overflow``
    reconnects (over SSE, with Last-Event-ID) and resumes from the latest event. The task and the
    other clients never wait for a slow reader.
    """

    __slots__ = (
        "_check_in", "_unbounded", "clients", "closed", "ended", "follower", "key", "latest", "limit", "lost",
        "running", "seq",
    )

    def __init__(self, key: Hashable, limit: int, seq: int = 0) -> None:
        self.key = key
        self.limit = limit
        self.seq = seq
        self.clients: dict[asyncio.Queue, None] = {}
        # Unbounded queues cannot refuse a put, so their length is checked against `limit`.
        self._unbounded: dict[asyncio.Queue, None] = {}
        # Publishes until one of them might hold more than `limit`: each publish adds at most one
        # event to a queue, so their lengths need not be read on every publish.
        self._check_in = 0
        self.latest: Event | None = None
        # The terminal event, once there is one: nothing is sent after it.
        self.ended: Event | None = None
        self.running = False
        self.closed = False
        # The task running in another process, this channel relays the event log (coordinator).
        self.follower: asyncio.Task | None = None
        # Set when another process took the task over from this one.
        self.lost = False

    def make_event(self, event_type: str, data: Any, timestamp: str) -> Event:
        """Number the next event without delivering it (the terminal event is persisted first)."""
        self.seq += 1
        return Event(event_type, data, timestamp, self.seq)

    def publish(self, event: Event) -> None:
        self.latest = event
        dropped: list[asyncio.Queue] | None = None
        for queue in self.clients:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                dropped = dropped or []
                dropped.append(queue)
        if self._unbounded:
            self._check_in -= 1
            if self._check_in <= 0:
                dropped = self._over_limit(dropped)
        if dropped:
            for queue in dropped:
                self._overflow(queue)

    def _over_limit(self, dropped: list[asyncio.Queue] | None) -> list[asyncio.Queue] | None:
        limit = self.limit
        room = limit + 1
        for queue in self._unbounded:
            size = queue.qsize()
            if size > limit:
                dropped = dropped or []
                dropped.append(queue)
                room = 1
            else:
                room = min(room, limit + 1 - size)
        self._check_in = room
        return dropped

    def attach(self, queue: asyncio.Queue, last_event_id: int | None = None) -> None:
        """Register `queue` and hand it the latest event, unless it already has it."""
        if queue in self.clients:
            return
        self.clients[queue] = None
        if queue.maxsize <= 0:
            self._unbounded[queue] = None
        latest = self.latest
        if latest is not None and (last_event_id is None or latest["id"] > last_event_id):
            try:
                queue.put_nowait(latest)
            except asyncio.QueueFull:
                self._overflow(queue)
        if queue.maxsize <= 0:
            self._check_in = min(self._check_in, max(1, self.limit + 1 - queue.qsize()))

    def detach(self, queue: asyncio.Queue) -> bool:
        self._unbounded.pop(queue, None)
        return self.clients.pop(queue, 0) is None

    def close(self) -> None:
        """Forget every client: after the terminal event nothing more will be sent to them."""
        self.closed = True
        self.running = False
        self.clients.clear()
        self._unbounded.clear()

    @property
    def idle(self) -> bool:
        return not self.running and not self.clients

    def _overflow(self, queue: asyncio.Queue) -> None:
        self.detach(queue)
        while not queue.empty():
            queue.get_nowait()
        logger.warning("Task %s dropped a client that fell %d events behind", self.key, self.limit)
        queue.put_nowait(
            {"type": OVERFLOW, "data": {"reason": "client fell behind", "limit": self.limit},
             "timestamp": None, "id": None}
        )
