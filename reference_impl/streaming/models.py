"""`StreamTask`: the abstract model a Django app subclasses to run a long task and stream its events."""

from __future__ import annotations

import asyncio
import logging
from abc import ABCMeta, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from django.db import models
from django.utils import timezone

from . import context
from .events import Event
from .subscription import Subscription

if TYPE_CHECKING:
    from .channel import TaskChannel

logger = logging.getLogger("streaming.tasks")


class StreamTaskMeta(ABCMeta, type(models.Model)):
    """Lets `process()` be abstract on a Django model."""


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED)


class StreamTask(models.Model, metaclass=StreamTaskMeta):
    """A task row whose `process()` runs once and whose events reach every attached client.

    No runtime state is kept on the Python object (the seed's bug): clients and the latest event
    belong to the task row, in the coordinator's channel for it, so any instance of the row can
    attach clients or send events and they all see one stream.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    final_value = models.JSONField(null=True, blank=True)
    # Not in the upstream library: failure must be persisted (S6) and the terminal event kept so a
    # joiner after the coordinator forgot the task gets exactly what earlier clients got (S5).
    status = models.CharField(
        max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING, db_index=True
    )
    error = models.JSONField(null=True, blank=True)
    last_event = models.JSONField(null=True, blank=True)
    # Which coordinator runs the task, and until when its claim holds unless renewed: another
    # process takes an unfinished task over only once the lease of a dead owner ran out (S4, S7).
    owner = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @abstractmethod
    async def process(self) -> Any:
        """Do the work, calling `send_event` along the way; the return value is the final value."""

    # -- identity ---------------------------------------------------------------------------------

    @property
    def stream_key(self) -> tuple[str, Any]:
        """What identifies this task's stream: the model and the primary key, not the object."""
        if self.pk is None:
            raise ValueError(
                f"{type(self).__name__} has no primary key yet: save it before streaming it"
            )
        return (self._meta.label_lower, self.pk)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED or self.completed_at is not None

    # -- access -----------------------------------------------------------------------------------

    def stream_url(self, base: str = "") -> str:
        """The URL of this task's stream for the standalone server: signed, so that it lets its
        holder in (and nobody who merely guesses ids) until STREAMING_URL_MAX_AGE has passed.
        Hand it to the page that opens the EventSource; `base` is the server's origin."""
        from .access import sign, stream_path

        label = self._meta.label_lower
        return base + stream_path(label, type(self).__name__, self.stream_key[1], sign(label, self.pk))

    def can_stream(self, request: Any) -> bool:
        """Whether the Django view may stream this task to `request` (its user is
        ``request.user`` under Django's auth middleware). Override it; it may be ``async def``.
        By default nobody without a signed URL gets in."""
        return False

    # -- events and clients -----------------------------------------------------------------------

    async def send_event(self, event_type: str, data: Any) -> None:
        """Send an event to every client of this task row (and keep it for late joiners)."""
        await _coordinator().send(self, event_type, data)

    async def add_client(self, queue: asyncio.Queue | Subscription, last_event_id: int | None = None) -> None:
        """Attach `queue` (or a `Subscription`): it gets the latest event at once (unless
        `last_event_id` says it has it), then every later event, up to and including the terminal
        one."""
        await _coordinator().attach(self, queue, last_event_id)

    async def remove_client(self, queue: asyncio.Queue | Subscription) -> None:
        _coordinator().detach(self, queue)

    @asynccontextmanager
    async def subscribe(self, last_event_id: int | None = None) -> AsyncIterator[Subscription]:
        """An attached `Subscription` (the lightest in-process client; see subscription.py),
        detached on exit. Iterating it ends after the terminal event."""
        subscription = Subscription()
        await self.add_client(subscription, last_event_id)
        try:
            yield subscription
        finally:
            await self.remove_client(subscription)

    @property
    def _clients(self) -> frozenset[asyncio.Queue]:
        """The task row's clients (read-only; the upstream library kept a set on the object)."""
        channel = _coordinator().channel_of(self)
        return frozenset(channel.clients) if channel else frozenset()

    @property
    def _latest_data(self) -> Event | None:
        channel = _coordinator().channel_of(self)
        return channel.latest if channel else None

    # -- completion -------------------------------------------------------------------------------

    async def mark_completed(self, final_value: Any = None) -> None:
        """Persist the task as completed. The coordinator calls it with `process()`'s return value;
        called on a task that is not running, it also ends the streams of its clients."""
        logger.info("Task %s marked completed", self.pk)
        stored = _coordinator().outcome_stored(self, final_value)
        if not (stored and self.status == TaskStatus.COMPLETED and self.final_value is final_value):
            # (Skipped when the coordinator just stored this very outcome with the terminal event,
            # in one transaction: writing it again would cost a statement per task for nothing.)
            self.status = TaskStatus.COMPLETED
            self.completed_at = timezone.now()
            self.final_value = final_value
            self.owner, self.lease_expires_at = "", None
            await self.asave(update_fields=[
                "status", "completed_at", "final_value", "last_event", "owner", "lease_expires_at",
                "updated_at",
            ])
        await _coordinator().finished_elsewhere(self)

    async def process_generator(self, generator: AsyncGenerator[Any, None]) -> Any:
        """Send each value the generator yields as a ``progress`` event; return the last one."""
        final_value = None
        async for value in generator:
            await self.send_event("progress", value)
            final_value = value
        return final_value

    async def process_sync_generator(self, generator: Generator[Any, None, None]) -> Any:
        """Send each value the generator yields as a ``progress`` event; return the last one."""
        final_value = None
        for value in generator:
            await self.send_event("progress", value)
            final_value = value
        return final_value


class Coordinator(Protocol):
    """What a task needs of the coordinator that runs it (`coordinator.TaskCoordinator`). Reached
    through `context` rather than imported: the coordinator module imports this one."""

    async def send(self, task: StreamTask, event_type: str, data: Any) -> None: ...

    async def attach(self, task: StreamTask, queue: asyncio.Queue | Subscription,
                     last_event_id: int | None = None) -> None: ...

    def detach(self, task: StreamTask, queue: asyncio.Queue | Subscription) -> None: ...

    def channel_of(self, task: StreamTask) -> TaskChannel | None: ...

    def outcome_stored(self, task: StreamTask, final_value: Any) -> bool: ...

    async def finished_elsewhere(self, task: StreamTask) -> None: ...


def _coordinator() -> Coordinator:
    return context.current()


class StreamEvent(models.Model):
    """The event log: every event of a task, in order, so that a process that does not run the
    task can relay it to its own clients, and a task resumed after a crash continues numbering and
    replays its last event."""

    task_label = models.CharField(max_length=200)
    task_pk = models.CharField(max_length=64)
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=64)
    data = models.JSONField(null=True, blank=True)
    timestamp = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task_label", "task_pk", "seq"], name="stream_event_unique_seq")
        ]

    def __str__(self) -> str:
        return f"{self.task_label}:{self.task_pk}#{self.seq} {self.type}"
