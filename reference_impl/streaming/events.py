"""The events clients read: what a task sends, its terminal event, and the overflow notice."""

from __future__ import annotations

from typing import Any

from .conf import streaming_settings

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


def overflow_event(limit: int) -> dict[str, Any] | None:
    """What a dropped client reads last, as STREAMING_OVERFLOW_NOTICE says (S8.2): an ``overflow``
    event (the default); an ``error`` event whose data says ``"reason": "overflow"``, for clients
    that only know the terminal types; or None ("close"), which ends the client's stream without a
    word (an SSE stream closes, a `Subscription`'s iteration ends; a queue's reader gets the None)."""
    notice = streaming_settings().overflow_notice
    if notice == "close":
        return None
    if notice == "error":
        data = {"reason": OVERFLOW, "message": "client fell behind", "limit": limit}
        return {"type": "error", "data": data, "timestamp": None, "id": None}
    return {"type": OVERFLOW, "data": {"reason": "client fell behind", "limit": limit},
            "timestamp": None, "id": None}

