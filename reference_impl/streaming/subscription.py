"""`Subscription`: an in-process client that reads a task's events where the channel keeps them.

An `asyncio.Queue` client costs a put per event and a deque of its own (about 3 KiB idle, with its
consumer task about 4.3 KiB). A subscription is a position in the channel's ring of recent events
(see `TaskChannel`): publishing an event writes it once for all subscriptions and hands it to the
readers waiting in `get()` (they return it as they resume, without another look at the ring), and
an idle subscription is a few words. It is accepted wherever a queue is
(`add_client`, `remove_client`), and reads like one (`get`, `get_nowait`, `qsize`, `empty`), or as
an async iterator that ends after the terminal event::

    async with task.subscribe() as events:
        async for event in events:
            ...

Delivery is the queue's, event for event: the latest event at once when it joins (unless
`last_event_id` says it has it), then every later one, the terminal one included. A subscription
that falls more than the client buffer (STREAMING_CLIENT_BUFFER) behind is dropped like a queue: it
reads one ``overflow`` event, then nothing. Detached, it still reads what was published while it
was attached, as a queue keeps what was put into it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from .events import OVERFLOW, TERMINAL_TYPES

if TYPE_CHECKING:
    from .channel import TaskChannel


_NOTHING = object()
"""`Subscription._take` found nothing to read."""
_LEFT = object()
"""Handed to a waiting reader when its subscription left its channel with nothing more to read."""


class Subscription:
    """A client of one task, reading the channel's ring of events from its own position."""

    __slots__ = ("_channel", "_done", "_left", "_pos", "_private", "_revoked", "_waiter")

    def __init__(self) -> None:
        # The channel it is attached to; None before it joins and once it left.
        self._channel: TaskChannel | None = None
        # The channel's publish count of the next event to read.
        self._pos = 0
        # Events for this client alone, read before the channel's: a stored terminal event, the
        # overflow notice, and what it had not read yet when it left its channel (all of them come
        # while it reads nothing from a channel, so they are never read out of order).
        self._private: deque[Any] | None = None
        # The future a reader waits on, from its get() until it resumes: the channel hands it the
        # next event directly. Done but still set: handed an event the reader has not taken yet.
        self._waiter: asyncio.Future | None = None
        # A waiter whose handed event was taken back (the client was dropped before reading it).
        self._revoked: asyncio.Future | None = None
        # Iteration returned the terminal or overflow event: it ends.
        self._done = False
        # It was attached and left (detached, dropped, or its task ended): iteration ends once
        # everything it was given is read.
        self._left = False

    # -- what the channel does ----------------------------------------------------------------------

    def _join(self, channel: TaskChannel, pos: int) -> None:
        self._channel = channel
        self._pos = pos
        self._left = False
        self._done = False  # attached again after its iteration ended: it reads this stream anew
        self._feed()  # a reader waiting since before it joined gets the replayed event

    @property
    def _start(self) -> int:
        """Where its unread events begin, in the channel's publish count: its lag is measured from
        here (what it was handed alone counts too, as in a queue)."""
        return self._pos - self._unread_elsewhere()

    def _unread_elsewhere(self) -> int:
        """Unread events outside the channel's ring: its own, and one handed to a reader that has
        not resumed yet (a queue still holds an item until its woken reader takes it)."""
        unread = len(self._private) if self._private else 0
        waiter = self._waiter
        if waiter is not None and waiter.done() and waiter is not self._revoked and not waiter.cancelled() \
                and waiter.result() is not _LEFT:
            unread += 1
        return unread

    def _leave(self, channel: TaskChannel, overflow: dict[str, Any] | None = None) -> None:
        """Detached: what was published while it was attached stays readable (the ring will be
        overwritten), as a queue keeps what was put into it; dropped: only the `overflow` notice."""
        if overflow is not None:
            self._private = deque([overflow])
            waiter = self._waiter
            if waiter is not None and waiter.done():
                # Handed an event it has not taken yet: a dropped queue loses it too.
                self._revoked = waiter
        elif self._pos < channel.published:
            ring, mask = channel.ring, channel.mask
            if self._private is None:
                self._private = deque()
            self._private.extend(ring[i & mask] for i in range(self._pos, channel.published))
        self._channel = None
        self._left = True
        self._feed()

    def _take(self) -> Any:
        """The next unread event, now read; `_NOTHING` if there is none."""
        private = self._private
        if private:
            return private.popleft()
        channel = self._channel
        if channel is not None:
            pos = self._pos
            if pos < channel.published:
                self._pos = pos + 1
                return channel.ring[pos & channel.mask]
        return _NOTHING

    def _feed(self) -> None:
        """Hand a waiting reader its next event, or `_LEFT` once it left with nothing to read.

        A reader waits only when it has read everything, so what it is handed is its next event.
        The channel's publish does the same inline for the event it publishes."""
        waiter = self._waiter
        if waiter is None or waiter.done():  # nobody waits, or handed already, or cancelled
            return
        item = self._take()
        if item is _NOTHING:
            if not self._left:
                return
            item = _LEFT
        waiter.set_result(item)

    def _resumed(self, waiter: asyncio.Future) -> bool:
        """The reader that waited on `waiter` runs again; whether it may use what it was handed."""
        if self._waiter is waiter:
            self._waiter = None
        if self._revoked is waiter:
            self._revoked = None
            return False
        return True

    def _cancelled(self, waiter: asyncio.Future) -> None:
        """A wait was cancelled. If it had been handed an event already (the cancellation came
        before the reader resumed), that event is its next one again: nothing is lost, as with a
        queue, whose item stays queued."""
        if not self._resumed(waiter) or not waiter.done() or waiter.cancelled():
            return
        item = waiter.result()
        if item is _LEFT:
            return
        if self._private is None:
            self._private = deque()
        self._private.appendleft(item)

    # -- the queue interface ------------------------------------------------------------------------

    def put_nowait(self, item: Any) -> None:
        """Hand this client alone an event (what the coordinator does for a stored terminal event)."""
        if self._private is None:
            self._private = deque()
        self._private.append(item)
        self._feed()

    def qsize(self) -> int:
        waiting = self._unread_elsewhere()
        channel = self._channel
        if channel is not None:
            waiting += channel.published - self._pos
        return waiting

    def empty(self) -> bool:
        return self.qsize() == 0

    def get_nowait(self) -> Any:
        """The next event; `asyncio.QueueEmpty` if there is none yet."""
        item = self._take()
        if item is _NOTHING:
            raise asyncio.QueueEmpty
        return item

    async def get(self) -> Any:
        """The next event, waiting for it (forever, like `asyncio.Queue.get`)."""
        # The path of every delivery: the publish hands the event to the waiting reader, which
        # returns it as it resumes, with no second look at the ring.
        while True:
            item = self._take()
            if item is not _NOTHING:
                return item
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                item = await waiter
            except asyncio.CancelledError:
                self._cancelled(waiter)
                raise
            if self._resumed(waiter) and item is not _LEFT:
                return item
            # It left its channel (a queue's get() goes on waiting: it may be attached again), or
            # was dropped before it took the event it was handed: it reads the notice instead.

    # -- iteration ----------------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        """The next event; the iteration ends after the terminal (or overflow) event, or once the
        subscription left its channel and read everything it was given."""
        if self._done:
            raise StopAsyncIteration
        item = self._take()
        if item is _NOTHING:
            if self._left:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                item = await waiter
            except asyncio.CancelledError:
                self._cancelled(waiter)
                raise
            if not self._resumed(waiter):
                return await self.__anext__()  # dropped before it took it: the notice comes next
            if item is _LEFT:
                raise StopAsyncIteration
        kind = item.get("type")
        if kind in TERMINAL_TYPES or kind == OVERFLOW:
            self._done = True
        return item
