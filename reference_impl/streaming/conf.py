"""Settings of the streaming app, read from Django settings with defaults and validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class StreamingSettings:
    client_buffer: int
    """Events a client may have waiting before it is dropped (see `channel.TaskChannel`)."""
    client_buffer_bytes: int
    """Bytes of encoded events an SSE client may have waiting before it is dropped alike (see
    `streams.StreamQueue`): big events fill a buffer long before it holds many of them."""
    max_streams: int
    """Open SSE streams per server process; one more is answered 503 with Retry-After."""
    keepalive_seconds: float
    """Idle time after which a stream sends an SSE comment, so proxies keep it open."""
    retry_after_seconds: int
    event_log: bool
    """Append every event to the database (StreamEvent) so other processes can relay it and a
    resumed task can replay it. Off: one process only, nothing written per event."""
    log_on_loop: bool
    """Where the database is a SQLite file in WAL mode, append on the event loop's thread (see
    `relay._LoopLog`) instead of handing every event to the writer thread. Off: always the thread."""
    lease_seconds: float
    """How long a coordinator's claim on a running task holds without renewal."""
    poll_seconds: float
    """How often a process relaying a task that runs elsewhere reads the event log."""
    push: bool
    """Where the database is PostgreSQL, wake relays with LISTEN/NOTIFY as events are logged
    (push.py), polling only as a safety net."""
    batch_seconds: float
    """How long a busy SSE stream holds an event back so the events sent meanwhile share its write
    (see `streams.EventStream`); 0: every event is written as soon as it arrives."""
    overflow_notice: str
    """How a dropped client is told (see `events.overflow_event`): "overflow", "error" or "close"."""
    access: str
    """Who may read a stream (see `access`): "signed" (a signed stream URL, or the model's
    ``can_stream`` in the Django view) or "open" (anyone who can count ids: an explicit choice)."""
    url_max_age: float
    """Seconds a signed stream URL (`StreamTask.stream_url`) stays valid."""


DEFAULTS: dict[str, object] = {
    "STREAMING_CLIENT_BUFFER": 1024,
    "STREAMING_CLIENT_BUFFER_BYTES": 1048576,
    "STREAMING_MAX_STREAMS": 1000,
    "STREAMING_KEEPALIVE_SECONDS": 15.0,
    "STREAMING_RETRY_AFTER_SECONDS": 1,
    "STREAMING_EVENT_LOG": True,
    "STREAMING_LOG_ON_LOOP": True,
    "STREAMING_LEASE_SECONDS": 30.0,
    "STREAMING_POLL_SECONDS": 0.5,
    "STREAMING_PUSH": True,
    "STREAMING_BATCH_SECONDS": 0.01,
    "STREAMING_OVERFLOW_NOTICE": "overflow",
    "STREAMING_ACCESS": "signed",
    "STREAMING_URL_MAX_AGE": 3600.0,
}
OVERFLOW_NOTICES = ("overflow", "error", "close")
ACCESS_MODES = ("signed", "open")


def _positive(name: str, kind: type) -> int | float:
    value = getattr(settings, name, DEFAULTS[name])
    number = isinstance(value, int) if kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not number or not math.isfinite(value) or value <= 0:
        noun = "a positive integer" if kind is int else "a positive finite number"
        raise ImproperlyConfigured(f"{name} must be {noun}, got {value!r}")
    return kind(value)


def _non_negative(name: str) -> float:
    value = getattr(settings, name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ImproperlyConfigured(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def _flag(name: str) -> bool:
    value = getattr(settings, name, DEFAULTS[name])
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{name} must be True or False, got {value!r}")
    return value


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = getattr(settings, name, DEFAULTS[name])
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@lru_cache(maxsize=1)
def streaming_settings() -> StreamingSettings:
    return StreamingSettings(
        client_buffer=_positive("STREAMING_CLIENT_BUFFER", int),
        client_buffer_bytes=_positive("STREAMING_CLIENT_BUFFER_BYTES", int),
        max_streams=_positive("STREAMING_MAX_STREAMS", int),
        keepalive_seconds=_positive("STREAMING_KEEPALIVE_SECONDS", float),
        retry_after_seconds=_positive("STREAMING_RETRY_AFTER_SECONDS", int),
        event_log=_flag("STREAMING_EVENT_LOG"),
        log_on_loop=_flag("STREAMING_LOG_ON_LOOP"),
        lease_seconds=_positive("STREAMING_LEASE_SECONDS", float),
        poll_seconds=_positive("STREAMING_POLL_SECONDS", float),
        push=_flag("STREAMING_PUSH"),
        batch_seconds=_non_negative("STREAMING_BATCH_SECONDS"),
        overflow_notice=_choice("STREAMING_OVERFLOW_NOTICE", OVERFLOW_NOTICES),
        access=_choice("STREAMING_ACCESS", ACCESS_MODES),
        url_max_age=_positive("STREAMING_URL_MAX_AGE", float),
    )


def reload_settings() -> None:
    """Forget cached settings (tests that override them call this)."""
    streaming_settings.cache_clear()
