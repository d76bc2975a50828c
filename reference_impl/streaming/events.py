"""The events clients read: what a task sends, its terminal event, and the overflow notice."""

from __future__ import annotations

from typing import Any

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


def overflow_event(limit: int) -> dict[str, Any]:
    """What a dropped client reads last."""
    return {"type": OVERFLOW, "data": {"reason": "client fell behind", "limit": limit},
            "timestamp": None, "id": None}

