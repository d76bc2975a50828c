"""The coordinator: runs each task once, hands every lookup the running object, owns the channels.

Design, by clause (see SPEC.md):
- S1: the running instance is registered before the first await of `start_task`; a lookup that
  loaded the row from the database re-checks the registry after its await and returns the running
  instance, never caching its own copy over it. Concurrent lookups share one load (single flight).
- S2/S3: clients and the latest event live in a `TaskChannel` per task row (see channel.py).
- S4: `start_task` is atomic (no await before registration); a claim in the database refuses rows
  that already finished, so a stale instance cannot run a finished task again.
- S5/S6: the terminal event is persisted with the final status before it is delivered (one that
  process() sends itself is held back until then), then the channel is closed and forgotten;
  later joiners get the persisted terminal event.
- S8: nothing is kept once a task finished and its clients left: no locks exist at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Hashable
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.utils import timezone

from .channel import TERMINAL_TYPES, Event, TaskChannel
from .conf import streaming_settings
from .models import FINISHED, StreamTask, TaskStatus

logger = logging.getLogger("streaming.coordinator")

Key = tuple[str, Hashable]

_current: contextvars.ContextVar[TaskCoordinator | None] = contextvars.ContextVar(
    "streaming_coordinator", default=None
)


def current_coordinator() -> TaskCoordinator:
    """The coordinator of the running context: the process-wide one unless a test harness runs
    several simulated processes in one interpreter, each activating its own."""
    return _current.get() or coordinator


class TaskCoordinator:
    """Keeps the running tasks of one process in memory. Use the module-level `coordinator`."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._channels: dict[Key, TaskChannel] = {}
        self._tasks: dict[Key, asyncio.Task] = {}
        self._instances: dict[Key, StreamTask] = {}
        self._loads: dict[Key, asyncio.Task] = {}
        self._models: dict[tuple[str, str], type[StreamTask]] = {}

    def activate(self) -> contextvars.Token:
        """Make this coordinator the current one in this context (and in tasks created from it)."""
        return _current.set(self)

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
        self._instances[key] = task_instance
        self._tasks[key] = asyncio.get_running_loop().create_task(
            self._run(key, task_instance, channel), name=f"stream-task {key[0]}:{key[1]}"
        )

    async def _run(self, key: Key, task: StreamTask, channel: TaskChannel) -> None:
        _current.set(self)  # events sent from process() reach this coordinator's channels
        try:
            if not await self._claim(task):
                await self._replay_stored_end(task, channel)
                return
            logger.info("Task %s started", key)
            try:
                result = await task.process()
            except Exception as exc:
                logger.exception("Task %s failed", key)
                await self._fail(task, channel, exc)
            else:
                await self._complete(task, channel, result)
        except Exception as exc:
            # Persisting the outcome failed (database down?): clients must not wait forever.
            logger.exception("Task %s could not record its outcome", key)
            self._end(channel, channel.replace_held("error", _error_data(exc), _now()))
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            if self._instances.get(key) is task:
                del self._instances[key]
            if not channel.closed:  # cancelled: the task is not finished, its clients are let go
                channel.close()
            if self._channels.get(key) is channel:
                del self._channels[key]

    async def _claim(self, task: StreamTask) -> bool:
        """Mark the row running unless it already finished (a stale instance must not rerun it)."""
        claimed = await type(task)._default_manager.filter(pk=task.pk).exclude(
            status__in=FINISHED
        ).exclude(completed_at__isnull=False).aupdate(
            status=TaskStatus.RUNNING, updated_at=timezone.now()
        )
        if claimed:
            task.status = TaskStatus.RUNNING
        return bool(claimed)

    async def _complete(self, task: StreamTask, channel: TaskChannel, result: Any) -> None:
        # The terminal event process() sent itself, if it did; else one carrying the final value.
        terminal = channel.held or channel.make_event("complete", {"final_value": result}, _now())
        task.last_event = dict(terminal)
        await task.mark_completed(final_value=result)
        self._end(channel, terminal)

    async def _fail(self, task: StreamTask, channel: TaskChannel, exc: Exception) -> None:
        error = _error_data(exc)
        terminal = channel.replace_held("error", error, _now())
        task.status = TaskStatus.FAILED
        task.error = error
        task.last_event = dict(terminal)
        await task.asave(update_fields=["status", "error", "last_event", "updated_at"])
        self._end(channel, terminal)

    def _end(self, channel: TaskChannel, terminal: Event) -> None:
        if channel.latest is not terminal:
            channel.publish(terminal)
        channel.close()

    async def _replay_stored_end(self, task: StreamTask, channel: TaskChannel) -> None:
        """The claim found the row finished: the instance was stale. Bring it up to date (callers
        may hold it) and end its clients' streams with the stored terminal event."""
        try:
            await task.arefresh_from_db()
        except type(task).DoesNotExist:
            self._end(channel, _stored_terminal(None, channel))
            return
        self._end(channel, _stored_terminal(task, channel))

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

    def publish(self, task: StreamTask, event_type: str, data: Any) -> None:
        channel = self._channels.get(task.stream_key)
        if channel is None or channel.closed:
            # Nobody listens and nothing runs it here: there is no one to keep the event for.
            logger.debug("Task %s sent %r with no stream open", task.pk, event_type)
            return
        if channel.held is not None:
            logger.warning("Task %s sent %r after its terminal event; dropped", task.pk, event_type)
            return
        event = channel.make_event(event_type, data, _now())
        if channel.running and event_type in TERMINAL_TYPES:
            # Clients that see the terminal event may ask for the final state at once: it must
            # be in the database first (S5), so the event waits for the task's outcome.
            channel.held = event
            return
        channel.publish(event)

    async def attach(self, task: StreamTask, queue: asyncio.Queue, last_event_id: int | None = None) -> None:
        key = task.stream_key
        channel = self._channel(key)
        channel.attach(queue, last_event_id)
        if channel.running or channel.latest is not None:
            return
        # Not running here: it may have finished (and been forgotten), which only the row knows.
        stored = await type(task)._default_manager.filter(pk=task.pk).afirst()
        if queue not in channel.clients or channel.running or self._channels.get(key) is not channel:
            return  # the task started, or ended and already told this client, while we read
        if stored is None or stored.is_finished:
            terminal = _stored_terminal(stored, channel)
            if last_event_id is None or terminal["id"] is None or terminal["id"] > last_event_id:
                queue.put_nowait(terminal)
            self.detach(task, queue)

    def detach(self, task: StreamTask, queue: asyncio.Queue) -> None:
        key = task.stream_key
        channel = self._channels.get(key)
        if channel is not None and channel.detach(queue) and channel.idle:
            del self._channels[key]

    # -- introspection ----------------------------------------------------------------------------

    def resources(self) -> dict[str, int]:
        """What this coordinator holds now; all zero once tasks finished and clients left (S8)."""
        return {
            "channels": len(self._channels),
            "tasks": len(self._tasks),
            "instances": len(self._instances),
            "loads": len(self._loads),
            "clients": sum(len(c.clients) for c in self._channels.values()),
        }

    async def join(self) -> None:
        """Wait until no task runs in this coordinator (tasks started meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def shutdown(self) -> None:
        """Cancel running tasks (they stay unfinished in the database and resume on next start)."""
        tasks = list(self._tasks.values()) + list(self._loads.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _now() -> str:
    return timezone.now().isoformat()


def _error_data(exc: BaseException) -> dict[str, str]:
    return {"message": str(exc), "error_type": type(exc).__name__}


def _stored_terminal(stored: StreamTask | None, channel: TaskChannel) -> Event:
    """The terminal event recorded for a finished row, rebuilt if an older writer left none."""
    if stored is None:
        gone = {"message": "task no longer exists", "error_type": "DoesNotExist"}
        return channel.make_event("error", gone, _now())
    if stored.last_event and stored.last_event.get("type") in TERMINAL_TYPES:
        last = stored.last_event
        return Event(last["type"], last.get("data"), last.get("timestamp"), last.get("id"))
    if stored.status == TaskStatus.FAILED:
        return channel.make_event("error", stored.error or {}, _now())
    return channel.make_event("complete", {"final_value": stored.final_value}, _now())


coordinator = TaskCoordinator()
