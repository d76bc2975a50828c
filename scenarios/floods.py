"""How many events one ``flood`` step releases: a few, or a burst past a client buffer's bound."""

from __future__ import annotations

from harness.adapters import Adapter
from harness.spec import MAX_CLIENT_BUFFER

__all__ = ["BURST", "BURST_DRAWS", "FLOOD_MAX", "FLOOD_MIN", "STALLED_BURST_DRAWS", "burst_size"]

FLOOD_MIN, FLOOD_MAX = 2, 12
"""Events one ``flood`` step releases at once: past a small documented client buffer (the
reference's under the harness is 2), short of making an example slow."""
BURST = MAX_CLIENT_BUFFER + 16
"""Events of a long burst for an implementation that documents no buffer bound of its own: past
the spec's bound on any client buffer (S8.2). See `burst_size` for one that documents a bound."""
BURST_DRAWS = 1
"""A flood's size is one draw: `FLOOD_MIN` to `FLOOD_MAX` events, or past them a `BURST`. Sizes
grow with the drawn value, so shrinking turns a burst into the smallest flood first. This many
values past the ordinary sizes are bursts: one flood in twelve."""
STALLED_BURST_DRAWS = FLOOD_MAX - FLOOD_MIN + 1
"""The same on a task with a client that stopped reading: one flood in two is a burst. Only there
does a burst tell anything (a reading client drains it), and it may cost a thousand sends."""


def burst_size(adapter: Adapter) -> int:
    """Events of a long burst against `adapter`'s implementation: past the bound on a client's
    buffer that it documents (`buffer_limit`), twice that bound and at least 16 events past it;
    `BURST` (past the spec's bound) where it documents none, or one at or past the spec's.

    Why not always `BURST`: S8.2 judges a buffer against the documented bound, so a burst past
    that bound tells what a burst past the spec's tells, at a fraction of the sends (18 instead of
    1,040 for the reference under the harness, which documents 2). A thousand-event burst was
    most of a ci search's time, spent in one family."""
    limit = getattr(adapter, "buffer_limit", None)
    limit = limit() if callable(limit) else None
    if not isinstance(limit, int) or limit <= 0 or limit >= MAX_CLIENT_BUFFER:
        return BURST
    return min(BURST, max(2 * limit, limit + 16))
