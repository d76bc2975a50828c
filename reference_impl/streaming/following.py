"""Following a task that runs in another process: its events reach this process's clients from the
event log (S2, S3 across processes), and a task whose owner died is taken over (S7).

A base class of `TaskCoordinator`, apart from it because it is a concern of its own: a process
relays a task it does not run, until the task ends, starts here, or loses its last local client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from . import context, push, relay
from .channel import Event, TaskChannel
from .conf import streaming_settings
from .models import StreamTask, TaskStatus
from .relay import Key
from .terminal import stored_terminal

logger = logging.getLogger("streaming.coordinator")

RELAY_BACKOFF = 8
"""A quiet task's log is read up to this many polls apart."""


class Following:
    """The relay of tasks running elsewhere, for `TaskCoordinator` (whose state it reads)."""

    _channels: dict[Key, TaskChannel]
    clock: Callable[[], datetime]

    if TYPE_CHECKING:
        async def start_task(self, task_instance: StreamTask) -> None: ...

        def _end(self, channel: TaskChannel, terminal: Event) -> None: ...

    async def _deliver_logged(self, key: Key, channel: TaskChannel) -> None:
        """The claim found the task running elsewhere or finished, so this process will not send
        its events: its clients (attached before the start; joiners during the claim wait for it)
        get them from the log. If the channel read the log for them before, they are owed
        everything after its position `seq` (S2); if it never did, the latest logged event (S3)."""
        if not streaming_settings().event_log or channel.closed or not channel.clients:
            return
        if channel.synced:
            events = await relay.after(key, channel.seq)
        else:
            last = await relay.latest(key)
            events = [] if last is None else [last]
        channel.synced = True
        for event in events:
            if channel.closed:
                break
            if event["id"] <= channel.seq:
                continue  # a joiner's read of the log delivered it meanwhile
            channel.seq = event["id"]
            if event.is_terminal:
                self._end(channel, event)
                break
            channel.publish(event)

    def _follow(self, key: Key, model: type[StreamTask], channel: TaskChannel) -> None:
        if channel.follower is None and not channel.running and not channel.closed:
            channel.follower = asyncio.get_running_loop().create_task(
                self._relay(key, model, channel), name=f"stream-relay {key[0]}:{key[1]}"
            )

    async def _relay(self, key: Key, model: type[StreamTask], channel: TaskChannel) -> None:
        """Relay the logged events of a task running in another process to local clients, until it
        ends, starts here, or has no client left; take it over if its owner died."""
        context.activate(self)
        poll = streaming_settings().poll_seconds
        interval = poll
        # Woken as soon as the task's next event is logged, where the database can tell (push.py);
        # the polls stay, as the safety net of a missed notification.
        listener = push.listener()
        name = push.payload(*key)
        seen = 0
        if listener is not None:
            listener.watch(name)
        try:
            while channel.clients and not channel.running and not channel.closed:
                if listener is None:
                    await asyncio.sleep(interval)
                else:
                    await listener.wait(name, seen, interval)
                    seen = listener.generation(name)  # before reading: a later event wakes the next wait
                if channel.running or channel.closed or not channel.clients:
                    return
                relayed = await self._catch_up(key, channel)
                if channel.running or channel.closed:
                    return  # ended, or started here meanwhile: the local run delivers from now on
                # A quiet task is read less and less often (up to 8 polls apart), a busy one at once.
                interval = poll if relayed else min(interval * 2, poll * RELAY_BACKOFF)
                row = await model._default_manager.filter(pk=key[1]).afirst()
                if channel.running or channel.closed:
                    return
                if row is None or row.is_finished:
                    # What was logged after the catch-up above (up to the terminal event) comes
                    # first: ending with the stored terminal event alone would skip it (S2).
                    await self._catch_up(key, channel)
                    if not channel.closed:
                        self._end(channel, stored_terminal(row, channel))
                    return
                if row.status == TaskStatus.RUNNING and (
                    row.lease_expires_at is None or row.lease_expires_at < self.clock()
                ):
                    logger.warning("Task %s: its owner %s stopped renewing; taking it over", key, row.owner)
                    await self.start_task(row)
                    return
        finally:
            if listener is not None:
                listener.unwatch(name)
            channel.follower = None
            if (channel.closed or channel.idle) and self._channels.get(key) is channel:
                del self._channels[key]

    async def _catch_up(self, key: Key, channel: TaskChannel) -> bool:
        """Relay the logged events this channel has not delivered yet, in order, each once (the
        relay and joiners may read the log concurrently). Whether there were any."""
        events = await relay.after(key, channel.seq)
        channel.synced = True
        for event in events:
            if channel.live or channel.closed:
                break  # it runs here now (the local run delivers from now on), or ended
            if event["id"] <= channel.seq:
                continue  # another reader of the log delivered it meanwhile
            channel.seq = event["id"]
            if event.is_terminal:
                self._end(channel, event)
                break
            channel.publish(event)
        return bool(events)
