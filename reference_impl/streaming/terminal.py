"""Terminal events built by the coordinator rather than sent by a task: a failure's `error` event,
and the terminal event of a finished row, rebuilt for clients that join after the end (S5, S6)."""

from __future__ import annotations

from django.utils import timezone

from .channel import TERMINAL_TYPES, Event, TaskChannel
from .models import StreamTask, TaskStatus


def now() -> str:
    return timezone.now().isoformat()


def error_data(exc: BaseException) -> dict[str, str]:
    return {"message": str(exc), "error_type": type(exc).__name__}


def stored_terminal(stored: StreamTask | None, channel: TaskChannel) -> Event:
    """The terminal event recorded for a finished row, rebuilt if an older writer left none."""
    if stored is None:
        gone = {"message": "task no longer exists", "error_type": "DoesNotExist"}
        return channel.make_event("error", gone, now())
    if stored.last_event and stored.last_event.get("type") in TERMINAL_TYPES:
        last = stored.last_event
        return Event(last["type"], last.get("data"), last.get("timestamp"), last.get("id"))
    if stored.status == TaskStatus.FAILED:
        return channel.make_event("error", stored.error or {}, now())
    return channel.make_event("complete", {"final_value": stored.final_value}, now())
