"""`Subscription`: an in-process client that reads a task's events where the channel keeps them.

An `asyncio.Queue` client costs a put per event and a deque of its own (about 3 KiB idle, with its
consumer task about 4.3 KiB). A subscription is a position in the channel's ring of recent events
(see `TaskChannel`): publishing an event writes it once for all subscriptions and wakes the ones
that wait, and an idle subscription is a few words. It is accepted wherever a queue is
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
from collections.abc import Coroutine
from typing import Any, Protocol

from .events import OVERFLOW, TERMINAL_TYPES


class Ring(Protocol):
    """What a subscription reads of its channel (a `TaskChannel`, which imports this module, so it
    is named by what it offers rather than imported back)."""

    published: int
    ring: list[Any]
    mask: int


class Subscription:
    """A client of one task, reading the channel's ring of events from its own position."""

    __slots__ = ("_channel", "_done", "_left", "_pos", "_private", "_waiter")

    def __init__(self) -> None:
        # The channel it is attached to; None before it joins and once it left.
        self._channel: Ring | None = None
        # The channel's publish count of the next event to read.
        self._pos = 0
        # Events for this client alone, read before the channel's: a stored terminal event, the
        # overflow notice, and what it had not read yet when it left its channel (all of them come
        # while it reads nothing from a channel, so they are never read out of order).
        self._private: deque[Any] | None = None
        self._waiter: asyncio.Future | None = None
        # Iteration returned the terminal or overflow event: it ends.
        self._done = False
        # It was attached and left (detached, dropped, or its task ended): iteration ends once
        # everything it was given is read.
        self._left = False

    # -- what the channel does ----------------------------------------------------------------------

    def _join(self, channel: Ring, pos: int) -> None:
        self._channel = channel
        self._pos = pos
        self._left = False
        self._done = False  # attached again after its iteration ended: it reads this stream anew
        self._wake()  # a reader waiting since before it joined now waits on the channel

    @property
    def _start(self) -> int:
        """Where its unread events begin, in the channel's publish count: its lag is measured from
        here (what it was handed alone counts too, as in a queue)."""
        return self._pos - (len(self._private) if self._private else 0)

    def _leave(self, channel: Ring, overflow: dict[str, Any] | None = None, dropped: bool = False) -> None:
        """Detached: what was published while it was attached stays readable (the ring will be
        overwritten), as a queue keeps what was put into it; dropped: only the `overflow` notice
        (None under STREAMING_OVERFLOW_NOTICE = "close", as a queue gets it)."""
        if dropped:
            self._private = deque([overflow])
        elif self._pos < channel.published:
            ring, mask = channel.ring, channel.mask
            if self._private is None:
                self._private = deque()
            self._private.extend(ring[i & mask] for i in range(self._pos, channel.published))
        self._channel = None
        self._left = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the queue interface ------------------------------------------------------------------------

    def put_nowait(self, item: Any) -> None:
        """Hand this client alone an event (what the coordinator does for a stored terminal event)."""
        if self._private is None:
            self._private = deque()
        self._private.append(item)
        self._wake()

    def qsize(self) -> int:
        waiting = len(self._private) if self._private else 0
        channel = self._channel
        if channel is not None:
            waiting += channel.published - self._pos
        return waiting

    def empty(self) -> bool:
        return self.qsize() == 0

    def get_nowait(self) -> Any:
        """The next event; `asyncio.QueueEmpty` if there is none yet."""
        if self._private:
            return self._private.popleft()
        channel = self._channel
        if channel is not None:
            pos = self._pos
            if pos < channel.published:
                self._pos = pos + 1
                return channel.ring[pos & channel.mask]
        raise asyncio.QueueEmpty

    def get(self) -> Coroutine[Any, Any, Any]:
        """The next event, waiting for it (forever, like `asyncio.Queue.get`)."""
        return self._next(False)

    # -- iteration ----------------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Any]:
        """The next event; the iteration ends after the terminal (or overflow) event, or once the
        subscription left its channel and read everything it was given."""
        return self._next(True)

    # -- internals ----------------------------------------------------------------------------------

    async def _next(self, iterating: bool) -> Any:
        # One coroutine for both `get` and iteration, everything inlined: this is the path of every
        # delivery, and each waiting reader holds its frame (memory per idle client).
        while True:
            if iterating and self._done:
                raise StopAsyncIteration
            channel = self._channel
            if self._private:
                event = self._private.popleft()
            elif channel is not None and self._pos < channel.published:
                event = channel.ring[self._pos & channel.mask]
                self._pos += 1
            else:
                if iterating and self._left:
                    raise StopAsyncIteration
                # Woken by the channel's next publish (it reads `_waiter`), a private event or
                # leaving the channel.
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            if iterating:
                if event is None:  # dropped, under STREAMING_OVERFLOW_NOTICE = "close": it just ends
                    self._done = True
                    raise StopAsyncIteration
                kind = event.get("type")
                if kind in TERMINAL_TYPES or kind == OVERFLOW:
                    self._done = True
            return event
