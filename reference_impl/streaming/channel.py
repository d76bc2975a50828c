"""Per-task runtime state: the clients of one task row and the latest event, shared by every instance.

The seed's bug was runtime state kept on one Python object: a second object loaded from the database
had no clients and no latest event. Here that state lives in one `TaskChannel` per task row, held by
the coordinator, so it does not matter which instance a client attaches through or sends through.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Hashable
from typing import Any

from .events import OVERFLOW, TERMINAL_TYPES, Event, overflow_event
from .subscription import Subscription

__all__ = ["OVERFLOW", "TERMINAL_TYPES", "Event", "TaskChannel", "overflow_event"]

logger = logging.getLogger("streaming.channel")


class TaskChannel:
    """Clients, latest event and event sequence of one task row, within one coordinator.

    Every method is synchronous on purpose: registering a client and replaying the latest event
    happen in one step of the event loop, so no `send_event` can fall between them (S3).

    Buffer policy (S8.2): a client whose queue is full (a bounded queue), or that has more than
    `limit` events waiting (an unbounded queue), is dropped: it is detached, its queue is emptied
    and receives one ``overflow`` event (or the notice STREAMING_OVERFLOW_NOTICE chooses, see
    `overflow_event`), after which nothing more. A reader that gets ``overflow`` reconnects (over
    SSE, with Last-Event-ID) and resumes from the latest event. The task and the other clients never
    wait for a slow reader.

    Clients are queues, each put every event, or `Subscription`s, which read a ring of the recent
    events that exists while any of them is attached; both get the same events (subscription.py).
    """

    __slots__ = (
        "_check_in",
        "_queues",
        "_sub_check_at",
        "_unbounded",
        "claim",
        "clients",
        "closed",
        "ended",
        "follower",
        "key",
        "latest",
        "limit",
        "lost",
        "mask",
        "published",
        "ring",
        "running",
        "seq",
        "stored_outcome",
        "subscriptions",
        "synced",
    )

    def __init__(self, key: Hashable, limit: int, seq: int = 0) -> None:
        self.key = key
        self.limit = limit
        self.seq = seq
        # Every client: queues and subscriptions (see subscription.py).
        self.clients: dict[Any, None] = {}
        self._queues: dict[asyncio.Queue, None] = {}
        # Unbounded queues cannot refuse a put, so their length is checked against `limit`.
        self._unbounded: dict[asyncio.Queue, None] = {}
        # Publishes until one of them might hold more than `limit`: each publish adds at most one
        # event to a queue, so their lengths need not be read on every publish.
        self._check_in = 0
        self.latest: Event | None = None
        # The terminal event, once there is one: nothing is sent after it.
        self.ended: Event | None = None
        # A run of the task was started here.
        self.running = False
        # Made by the start, resolved once the run knows where the task runs: at once if it holds
        # the row (it delivers the events itself from then on), else when it let the channel go
        # to a relay or ended it. Joiners wait for it (coordinator).
        self.claim: asyncio.Future | None = None
        self.closed = False
        # The task running in another process, this channel relays the event log (coordinator).
        self.follower: asyncio.Task | None = None
        # Set when another process took the task over from this one.
        self.lost = False
        # (the object the run ran on, its final value) once the run stored that outcome with the
        # terminal event: the `mark_completed` the coordinator then calls on that object has nothing
        # left to write. Kept here, not on the object: no runtime state lives on a model object.
        self.stored_outcome: tuple[Any, Any] | None = None
        # Its clients were given the event log up to `seq` (it read the log for them): what they
        # are owed from the log is what follows `seq`, not just the latest event.
        self.synced = False
        # Events published so far; the last `len(ring)` of them are kept in `ring`, once a
        # subscription joined, for subscriptions to read at their own pace (event n in slot n & mask).
        self.published = 0
        self.ring: list[Event | None] = []
        self.mask = 0
        self.subscriptions: dict[Subscription, None] = {}
        # The publish count past which a subscription may lag more than `limit` (the subscriptions'
        # lags are read then, not on every publish; see `_check_subscriptions`).
        self._sub_check_at = math.inf

    @property
    def live(self) -> bool:
        """The task runs here and delivers its own events (not merely started and claiming)."""
        return self.running and self.claim is not None and self.claim.done()

    def make_event(self, event_type: str, data: Any, timestamp: str) -> Event:
        """Number the next event without delivering it (the terminal event is persisted first)."""
        self.seq += 1
        return Event(event_type, data, timestamp, self.seq)

    def publish(self, event: Event) -> None:
        self.latest = event
        if self.ring:
            self.ring[self.published & self.mask] = event
            self.published += 1
            for subscription in self.subscriptions:
                # Subscription._wake(), inlined: once per reader per event.
                waiter = subscription._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            if self.published > self._sub_check_at:
                self._check_subscriptions()
        else:
            self.published += 1
        dropped: list[asyncio.Queue] | None = None
        for queue in self._queues:
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

    def attach(self, queue: asyncio.Queue | Subscription, last_event_id: int | None = None) -> None:
        """Register `queue` and hand it the latest event, unless it already has it."""
        if queue in self.clients:
            return
        self.clients[queue] = None
        latest = self.latest
        replay = latest is not None and (last_event_id is None or latest["id"] > last_event_id)
        if isinstance(queue, Subscription):
            if not self.ring:
                self._make_ring()
            queue._join(self, self.published - 1 if replay else self.published)
            self.subscriptions[queue] = None
            self._sub_check_at = min(self._sub_check_at, queue._start + self.limit)
            return
        self._queues[queue] = None
        if queue.maxsize <= 0:
            self._unbounded[queue] = None
        if replay:
            try:
                queue.put_nowait(latest)
            except asyncio.QueueFull:
                self._overflow(queue)
        if queue.maxsize <= 0:
            self._check_in = min(self._check_in, max(1, self.limit + 1 - queue.qsize()))

    def _make_ring(self) -> None:
        size = 1 << self.limit.bit_length()  # more than `limit`: what a subscription may lag is intact
        self.ring = [None] * size
        self.mask = size - 1
        if self.latest is not None:
            self.ring[(self.published - 1) & self.mask] = self.latest

    def detach(self, queue: asyncio.Queue | Subscription) -> bool:
        self._unbounded.pop(queue, None)
        self._queues.pop(queue, None)
        if self.clients.pop(queue, 0) is not None:
            return False
        if isinstance(queue, Subscription):
            self.subscriptions.pop(queue, None)
            queue._leave(self)
            self._drop_ring_if_unread()
        return True

    def _drop_ring_if_unread(self) -> None:
        # With no subscription left nobody reads the ring: its events are not kept alive (a joiner
        # makes a new one, with the latest event).
        if not self.subscriptions:
            self.ring, self.mask = [], 0

    def _check_subscriptions(self) -> None:
        """Drop the subscriptions more than `limit` events behind, as a queue is dropped."""
        published, limit = self.published, self.limit
        lowest = math.inf
        for subscription in list(self.subscriptions):
            pos = subscription._start
            if published - pos > limit:
                del self.clients[subscription], self.subscriptions[subscription]
                subscription._leave(self, overflow_event(limit), dropped=True)
                logger.warning("Task %s dropped a client that fell %d events behind", self.key, limit)
            elif pos < lowest:
                lowest = pos
        self._sub_check_at = lowest + limit
        self._drop_ring_if_unread()

    def close(self) -> None:
        """Forget every client: after the terminal event nothing more will be sent to them."""
        self.closed = True
        self.running = False
        for subscription in self.subscriptions:
            subscription._leave(self)
        self.subscriptions.clear()
        self._sub_check_at = math.inf
        self._drop_ring_if_unread()
        self.clients.clear()
        self._queues.clear()
        self._unbounded.clear()

    @property
    def idle(self) -> bool:
        return not self.running and not self.clients

    def _overflow(self, queue: asyncio.Queue) -> None:
        self.detach(queue)
        while not queue.empty():
            queue.get_nowait()
        logger.warning("Task %s dropped a client that fell %d events behind", self.key, self.limit)
        queue.put_nowait(overflow_event(self.limit))
