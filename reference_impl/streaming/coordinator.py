"""The coordinator: runs each task once, hands every lookup the running object, owns the channels.

Design, by clause (see SPEC.md):
- S1: the running instance is registered before the first await of `start_task`; a lookup that
  loaded the row from the database re-checks the registry after its await and returns the running
  instance, never caching its own copy over it. Concurrent lookups share one load (single flight).
- S2/S3: clients and the latest event live in a `TaskChannel` per task row (see channel.py).
- S4: `start_task` is atomic (no await before registration); a claim in the database refuses rows
  that already finished, so a stale instance cannot run a finished task again, and rows another
  live process runs (its lease is renewed by a heartbeat), so two processes never both run it.
- S2/S3 across processes: events are appended to the database log before `send_event` returns; a
  process with clients of a task that runs elsewhere relays the log to them (see relay.py). A start
  here does not know where the task runs until its claim answers: joiners wait for that answer, and
  if the task runs elsewhere or has finished, the clients get what was logged before the end
  (the relaying is in following.py).
- S7: a task whose owner died (its lease ran out) is taken over, once, by a process that has its
  clients or looks it up; it continues the event numbering and replays the last logged event
  (S7.2: the log is the persisted latest event a joiner after the restart gets first).
- S5/S6: the terminal event is logged before anyone sees it, then delivered, then the outcome is
  stored on the row and the channel closed and forgotten; later joiners get the stored terminal
  event (a process taking over a task whose log ends with a terminal event stores the outcome
  instead of running it again).
- S8: nothing is kept once a task finished and its clients left: no locks exist at all.
- S8.2: a client with more than `STREAMING_CLIENT_BUFFER` events waiting is dropped with one
  ``overflow`` event, or the notice `STREAMING_OVERFLOW_NOTICE` chooses (the buffer policy of
  channel.py, the notice of events.py).

Over the wire (the W clauses), in streams.py unless said: W1 the head goes out at once, before the
task's first event; W2 one frame per event, written whole; W3 the body ends after the terminal
event; W4 the id and model are checked before any lookup; W5 events carry ids and Last-Event-ID
resumes after them; W6 server.py ends open streams on SIGTERM and notices a client that left;
W7 access.py lets in signed URLs and the model's `can_stream` only.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from . import context, relay
from .channel import Event, TaskChannel
from .conf import streaming_settings
from .following import Following
from .models import FINISHED, StreamTask, TaskStatus
from .relay import Key
from .terminal import error_data as _error_data
from .terminal import now as _now
from .terminal import stored_terminal as _stored_terminal

logger = logging.getLogger("streaming.coordinator")


def _cancelled_from_outside() -> bool:
    """Whether the current task was cancelled by someone else (`Task.cancel()`), as opposed to its
    code raising `CancelledError` itself."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def current_coordinator() -> TaskCoordinator:
    """The coordinator of the running context: the process-wide one unless a test harness runs
    several simulated processes in one interpreter, each activating its own."""
    return context.current()


class TaskCoordinator(Following):
    """Keeps the running tasks of one process in memory. Use the module-level `coordinator`."""

    def __init__(self, name: str = "default", clock: Callable[[], datetime] | None = None) -> None:
        self.name = name
        # Written to the rows this coordinator runs, so a restarted process never mistakes the
        # claims of its previous life for its own.
        self.token = f"{name}:{secrets.token_hex(6)}"
        self.clock: Callable[[], datetime] = clock or timezone.now
        self._heartbeat: asyncio.Task | None = None
        self._channels: dict[Key, TaskChannel] = {}
        self._tasks: dict[Key, asyncio.Task] = {}
        self._instances: dict[Key, StreamTask] = {}
        self._loads: dict[Key, asyncio.Task] = {}
        self._models: dict[tuple[str, str], type[StreamTask]] = {}

    def activate(self) -> contextvars.Token:
        """Make this coordinator the current one in this context (and in tasks created from it)."""
        return context.activate(self)

    # -- lookups ----------------------------------------------------------------------------------

    @staticmethod
    def get_task_key(app_name: str, model_name: str, task_id: Any) -> str:
        """The upstream library's string key, kept for compatibility; keys are per model and pk."""
        return f"{app_name}:{model_name}:{task_id}"

    def resolve_model(self, app_name: str, model_name: str) -> type[StreamTask]:
        """The concrete `StreamTask` model for a URL's app and model names.

        Raises LookupError if there is no such model or it is not a streamable task."""
        cache_key = (app_name, model_name)
        model = self._models.get(cache_key)
        if model is None:
            model = apps.get_model(app_name, model_name)
            if not issubclass(model, StreamTask) or model._meta.abstract:
                raise LookupError(f"{app_name}.{model_name} is not a StreamTask model")
            self._models[cache_key] = model
        return model

    def _key(self, model: type[StreamTask], task_id: Any) -> Key:
        return (model._meta.label_lower, model._meta.pk.to_python(task_id))

    async def get_task_instance(self, app_name: str, model_name: str, task_id: Any) -> StreamTask | None:
        """The running instance of the task, or the row loaded from the database (and started if it
        has not finished). None if the model or the row does not exist."""
        try:
            model = self.resolve_model(app_name, model_name)
            key = self._key(model, task_id)
        except (LookupError, ValidationError, ValueError, TypeError):
            return None
        running = self._instances.get(key)
        if running is not None:
            return running
        load = self._loads.get(key)
        if load is None:
            load = asyncio.get_running_loop().create_task(self._load(model, key))
            self._loads[key] = load
        # Shielded: a caller that goes away (a client disconnecting) must not cancel the load that
        # other callers are waiting on.
        return await asyncio.shield(load)

    async def _load(self, model: type[StreamTask], key: Key) -> StreamTask | None:
        try:
            try:
                loaded = await model._default_manager.aget(pk=key[1])
            except model.DoesNotExist:
                return None
            running = self._instances.get(key)
            if running is not None:
                return running  # started while we were loading: the running object wins (S1)
            if not loaded.is_finished:
                await self.start_task(loaded)
            return loaded
        finally:
            del self._loads[key]

    def is_task_running(self, app_name: str, model_name: str, task_id: Any) -> bool:
        try:
            key = self._key(self.resolve_model(app_name, model_name), task_id)
        except (LookupError, ValidationError, ValueError, TypeError):
            return False
        return key in self._tasks

    # -- execution --------------------------------------------------------------------------------

    async def start_task(
        self, task_instance: StreamTask, app_name: str | None = None, model_name: str | None = None
    ) -> None:
        """Run `task_instance.process()` unless this task is already running or has finished.

        `app_name` and `model_name` are accepted for compatibility; the instance's own model is
        what identifies the task. Registration happens before any await, so two concurrent calls
        cannot both start it."""
        if app_name is not None and model_name is not None:
            if self.resolve_model(app_name, model_name) is not type(task_instance):
                raise ValueError(
                    f"start_task: {app_name}.{model_name} is not the model of {task_instance!r}"
                )
        key = task_instance.stream_key
        if key in self._tasks:
            logger.debug("Task %s already running", key)
            return
        if task_instance.is_finished:
            logger.info("Task %s already finished; not running it again", key)
            return
        channel = self._channel(key)
        channel.running = True
        channel.claim = asyncio.get_running_loop().create_future()
        self._instances[key] = task_instance
        self._tasks[key] = asyncio.get_running_loop().create_task(
            self._run(key, task_instance, channel), name=f"stream-task {key[0]}:{key[1]}"
        )

    async def _run(self, key: Key, task: StreamTask, channel: TaskChannel) -> None:
        context.activate(self)  # events sent from process() reach this coordinator's channels
        follow = False
        try:
            claim = await self._claim(task)
            if claim == "finished":
                await self._replay_stored_end(key, task, channel)
                return
            if claim == "elsewhere":
                # A live process runs it: relay its events to our clients instead, from what they
                # were not given yet.
                await self._deliver_logged(key, channel)
                follow = True
                return
            _settle_claim(channel)  # it holds the row: it delivers the events from now on
            if claim != "fresh" and not await self._resume(key, task, channel):
                return
            self._start_heartbeat()
            logger.info("Task %s started", key)
            try:
                result = await task.process()
            except (KeyboardInterrupt, SystemExit):
                raise
            except asyncio.CancelledError as exc:
                if _cancelled_from_outside():
                    raise  # a shutdown, or the task was lost to another process: not a failure
                # The task's own code raised it (a sub-task it awaited was cancelled): it failed.
                logger.exception("Task %s failed", key)
                await self._fail(task, channel, exc)
            except BaseException as exc:
                logger.exception("Task %s failed", key)
                await self._fail(task, channel, exc)
            else:
                await self._complete(task, channel, result)
        except asyncio.CancelledError:
            follow = channel.lost  # another process took the task over: follow it from now on
            if not follow:
                await self._release(task)
                raise
        except Exception as exc:
            # Persisting the outcome failed (database down?): clients must not wait forever.
            logger.exception("Task %s could not record its outcome", key)
            self._end(channel, channel.ended or channel.make_event("error", _error_data(exc), _now()))
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            if self._instances.get(key) is task:
                del self._instances[key]
            if not self._tasks and self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = None
            channel.running = False
            if follow and not channel.closed and channel.clients:
                self._follow(key, type(task), channel)
            else:
                if not channel.closed:  # cancelled: not finished, its clients are let go
                    channel.close()
                if self._channels.get(key) is channel:
                    del self._channels[key]
            _settle_claim(channel)  # joiners waiting for the claim go on: it follows or ended

    async def _release(self, task: StreamTask) -> None:
        """The run was cancelled from outside (the server is shutting down): give the claim up so
        that another process resumes the task at once instead of waiting out the lease (S7.3)."""
        if task.owner != self.token:
            return
        try:
            await type(task)._default_manager.filter(pk=task.pk, owner=self.token).exclude(
                status__in=FINISHED
            ).aupdate(owner="", lease_expires_at=None)
        except asyncio.CancelledError:
            raise
        except Exception:  # the lease runs out on its own
            logger.warning("Task %s: could not release its claim at shutdown", task.stream_key)
        else:
            task.owner, task.lease_expires_at = "", None

    async def _claim(self, task: StreamTask) -> str:
        """Take the row: "fresh" if it never ran, "claimed" if it ran before (its log may hold
        events to resume from); it already finished (a stale instance): "finished"; a live process
        holds it: "elsewhere"."""
        now = self.clock()
        lease = timedelta(seconds=streaming_settings().lease_seconds)
        manager = type(task)._default_manager
        # The common case first, in one simple statement: a row still pending was never claimed,
        # so nothing was logged for it and there is nothing to resume (no read of the log).
        if await manager.filter(pk=task.pk, status=TaskStatus.PENDING, completed_at__isnull=True).aupdate(
            status=TaskStatus.RUNNING, owner=self.token, lease_expires_at=now + lease, updated_at=now
        ):
            task.status, task.owner, task.lease_expires_at = TaskStatus.RUNNING, self.token, now + lease
            return "fresh"
        claimable = (
            Q(status=TaskStatus.PENDING) | Q(owner=self.token)
            | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
        )
        claimed = await manager.filter(claimable, pk=task.pk, completed_at__isnull=True).exclude(
            status__in=FINISHED
        ).aupdate(status=TaskStatus.RUNNING, owner=self.token, lease_expires_at=now + lease, updated_at=now)
        if claimed:
            task.status, task.owner, task.lease_expires_at = TaskStatus.RUNNING, self.token, now + lease
            return "claimed"
        row = await manager.filter(pk=task.pk).afirst()
        return "finished" if row is None or row.is_finished else "elsewhere"

    async def _resume(self, key: Key, task: StreamTask, channel: TaskChannel) -> bool:
        """A task that ran before (in a process that died) continues its event ids, and its last
        logged event is what a joiner gets until the resumed run sends one. If that event is the
        terminal one, the task had finished but its owner died before storing the outcome: it is
        stored now, and the task does not run again (False)."""
        if not streaming_settings().event_log:
            return True
        if channel.seq:
            # This channel relayed the log up to `seq` to its clients: they are owed the rest (S2).
            missed = await relay.after(key, channel.seq)
        else:
            last = await relay.latest(key)
            missed = [] if last is None else [last]
        if not missed:
            return True
        last = missed[-1]
        for event in missed:
            if event["id"] > channel.seq and not event.is_terminal:
                channel.seq = event["id"]
                channel.publish(event)
        channel.seq = max(channel.seq, last["id"])
        if not last.is_terminal:
            return True
        task.last_event = dict(last)
        task.owner, task.lease_expires_at = "", None
        if last["type"] == "error":
            task.status, task.error = TaskStatus.FAILED, last["data"]
            await task.asave(update_fields=["status", "error", "last_event", "owner", "lease_expires_at"])
        else:
            data = last["data"]
            final = data.get("final_value") if isinstance(data, dict) and "final_value" in data else data
            await task.mark_completed(final_value=final)
        self._end(channel, last)
        return False

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._renew_leases(), name=f"stream-leases {self.name}"
            )

    async def _renew_leases(self) -> None:
        context.activate(self)
        conf = streaming_settings()
        while self._instances:
            await asyncio.sleep(conf.lease_seconds / 3)
            until = self.clock() + timedelta(seconds=conf.lease_seconds)
            for key, task in list(self._instances.items()):
                if task.owner != self.token:
                    # Not claimed yet (its run has not reached the claim): nothing to renew, and
                    # no renewal must be mistaken for the lease being lost to another process.
                    continue
                renewed = await type(task)._default_manager.filter(pk=task.pk, owner=self.token).exclude(
                    status__in=FINISHED
                ).aupdate(lease_expires_at=until)
                if not renewed and self._instances.get(key) is task and not task.is_finished:
                    self._lost(key)

    def _lost(self, key: Key) -> None:
        """Another process took the task over (this one was too slow to renew its lease)."""
        logger.error("Task %s: lease lost to another process; stopping the local run", key)
        channel, run = self._channels.get(key), self._tasks.get(key)
        if channel is not None and run is not None:
            channel.lost = True
            run.cancel()

    async def _complete(self, task: StreamTask, channel: TaskChannel, result: Any) -> None:
        # The terminal event process() sent itself, if it did; else one carrying the final value.
        terminal = channel.ended
        if terminal is None:
            terminal = channel.ended = channel.make_event("complete", {"final_value": result}, _now())
            await self._commit_end(task, terminal, status=TaskStatus.COMPLETED, completed_at=timezone.now(),
                                   final_value=result, owner="", lease_expires_at=None)
            channel.publish(terminal)
            channel.stored_outcome = (task, result)
        task.last_event = dict(terminal)
        await task.mark_completed(final_value=result)
        self._end(channel, terminal)

    async def _fail(self, task: StreamTask, channel: TaskChannel, exc: BaseException) -> None:
        error = _error_data(exc)
        terminal = channel.ended
        if terminal is None:
            terminal = channel.ended = channel.make_event("error", error, _now())
            await self._commit_end(task, terminal, status=TaskStatus.FAILED, error=error, owner="",
                                   lease_expires_at=None)
            channel.publish(terminal)
        else:  # it had sent its own terminal event, then raised: the failure is what is stored
            await self._commit_end(task, terminal, log=False, status=TaskStatus.FAILED, error=error,
                                   owner="", lease_expires_at=None)
        self._end(channel, terminal)

    async def _commit_end(self, task: StreamTask, terminal: Event, log: bool = True, **fields: Any) -> None:
        """The terminal event and the outcome, durable together (see relay.commit_end)."""
        fields.update(last_event=dict(terminal), updated_at=timezone.now())
        try:
            await relay.commit_end(task.stream_key, terminal, type(task), task.pk, fields,
                                   log and streaming_settings().event_log)
        except IntegrityError:
            # Another process wrote this event number: it took the task over from us.
            self._lost(task.stream_key)
            raise asyncio.CancelledError from None
        for name, value in fields.items():
            setattr(task, name, value)

    async def _log(self, key: Key, channel: TaskChannel, event: Event) -> None:
        if not streaming_settings().event_log:
            return
        try:
            await relay.append(key, event)
        except IntegrityError:
            # Another process wrote this event number: it took the task over from us. The local
            # run is cancelled (at its next await, if it is the caller).
            self._lost(key)

    def _end(self, channel: TaskChannel, terminal: Event) -> None:
        if channel.latest is not terminal:
            channel.publish(terminal)
        channel.close()

    async def _replay_stored_end(self, key: Key, task: StreamTask, channel: TaskChannel) -> None:
        """The claim found the row finished: the instance was stale (the task may have run in
        another process while this one claimed it). Bring it up to date (callers may hold it),
        give its clients what was logged that they were not given, and end their streams with the
        stored terminal event."""
        try:
            await task.arefresh_from_db()
        except type(task).DoesNotExist:
            self._end(channel, _stored_terminal(None, channel))
            return
        await self._deliver_logged(key, channel)
        if not channel.closed:
            self._end(channel, _stored_terminal(task, channel))

    def outcome_stored(self, task: StreamTask, final_value: Any) -> bool:
        """Whether the run on `task` just stored `final_value` as its outcome with the terminal
        event (asked once, by the `mark_completed` that follows)."""
        channel = self._channels.get(task.stream_key)
        if channel is None or channel.stored_outcome is None or channel.stored_outcome[0] is not task:
            return False
        stored, channel.stored_outcome = channel.stored_outcome, None
        return stored[1] is final_value

    async def finished_elsewhere(self, task: StreamTask) -> None:
        """`mark_completed` was called on a task this coordinator is not running: end its streams."""
        key = task.stream_key
        if key in self._tasks:
            return
        channel = self._channels.pop(key, None)
        if channel is not None:
            self._end(channel, _stored_terminal(task, channel))

    # -- clients ----------------------------------------------------------------------------------

    def channel_of(self, task: StreamTask) -> TaskChannel | None:
        return self._channels.get(task.stream_key)

    def _channel(self, key: Key) -> TaskChannel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = TaskChannel(key, streaming_settings().client_buffer)
        return channel

    async def send(self, task: StreamTask, event_type: str, data: Any) -> None:
        """`send_event`: a running task's event is logged (durable, visible to other processes)
        before its local clients see it; nothing is sent after the terminal event."""
        channel = self._channels.get(task.stream_key)
        if channel is None or channel.closed:
            # Nobody listens and nothing runs it here: there is no one to keep the event for.
            logger.debug("Task %s sent %r with no stream open", task.pk, event_type)
            return
        if channel.ended is not None:
            logger.warning("Task %s sent %r after its terminal event; dropped", task.pk, event_type)
            return
        event = channel.make_event(event_type, data, _now())
        if channel.running:
            if event.is_terminal:
                # process() ends its stream itself: the row says so as soon as clients can know.
                channel.ended = event
                if event_type == "complete":
                    await self._commit_end(
                        task, event, status=TaskStatus.COMPLETED, completed_at=timezone.now()
                    )
                else:
                    await self._commit_end(task, event, status=TaskStatus.FAILED, error=data)
            else:
                await self._log(task.stream_key, channel, event)
            if channel.closed:
                return
        channel.publish(event)

    async def attach(self, task: StreamTask, queue: asyncio.Queue, last_event_id: int | None = None) -> None:
        key = task.stream_key
        channel = self._channel(key)
        if channel.running and channel.claim is not None and not channel.claim.done():
            # A start here is claiming the row: only its answer says whether this process will
            # deliver the events, follow another process that runs the task, or end the stream.
            # A client registered before the answer would get no latest event in the second case
            # (S3), so the join waits for that one statement, then goes the way the answer says.
            await asyncio.shield(channel.claim)
            return await self.attach(task, queue, last_event_id)
        if channel.follower is not None and not channel.live and queue not in channel.clients:
            # The relay reads the log once per poll: what it has not read yet was sent before this
            # join, and the joiner's first event must be the latest of them (S3), or the end (S5).
            await self._catch_up(key, channel)
            if channel.closed:
                terminal = channel.latest
                if terminal is not None and (
                    last_event_id is None or terminal["id"] is None or terminal["id"] > last_event_id
                ):
                    queue.put_nowait(terminal)
                return
            if self._channels.get(key) is not channel:  # its clients left and it was forgotten
                return await self.attach(task, queue, last_event_id)
        channel.attach(queue, last_event_id)
        if channel.live or channel.follower is not None:
            return
        if channel.latest is not None and not channel.running:
            return
        # Not running here (or started and still claiming the row, which may say it runs
        # elsewhere): it may have finished (and been forgotten), which only the row knows.
        model = type(task)
        stored = await model._default_manager.filter(pk=task.pk).afirst()
        if queue not in channel.clients or channel.live or self._channels.get(key) is not channel:
            return  # the task started, or ended and already told this client, while we read
        if stored is None or stored.is_finished:
            terminal = _stored_terminal(stored, channel)
            if last_event_id is None or terminal["id"] is None or terminal["id"] > last_event_id:
                queue.put_nowait(terminal)
            self.detach(task, queue)
            return
        if not streaming_settings().event_log:
            return  # one process only: the client waits for the task to start here
        # It may run in another process: replay its latest logged event, then relay the log.
        last = await relay.latest(key)
        if queue not in channel.clients or channel.live or self._channels.get(key) is not channel:
            return
        channel.synced = True
        if last is not None and last["id"] > channel.seq:
            channel.seq = last["id"]
            channel.publish(last)
        self._follow(key, model, channel)

    def detach(self, task: StreamTask, queue: asyncio.Queue) -> None:
        key = task.stream_key
        channel = self._channels.get(key)
        if channel is not None and channel.detach(queue) and channel.idle:
            del self._channels[key]
            if channel.follower is not None:
                channel.follower.cancel()

    # -- introspection ----------------------------------------------------------------------------

    def resources(self) -> dict[str, int]:
        """What this coordinator holds now; all zero once tasks finished and clients left (S8)."""
        return {
            "channels": len(self._channels),
            "tasks": len(self._tasks),
            "instances": len(self._instances),
            "loads": len(self._loads),
            "clients": sum(len(c.clients) for c in self._channels.values()),
            "relays": sum(c.follower is not None for c in self._channels.values()),
            "heartbeats": int(self._heartbeat is not None and not self._heartbeat.done()),
        }

    async def join(self) -> None:
        """Wait until no task runs in this coordinator (tasks started meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def shutdown(self) -> None:
        """Cancel running tasks (they stay unfinished in the database and resume on next start)."""
        tasks = list(self._tasks.values()) + list(self._loads.values())
        tasks += [c.follower for c in self._channels.values() if c.follower is not None]
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _settle_claim(channel: TaskChannel) -> None:
    if channel.claim is not None and not channel.claim.done():
        channel.claim.set_result(None)


coordinator = TaskCoordinator()
context.install_process_wide(coordinator)
