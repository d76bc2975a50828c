"""How the harness reads what a client's queue hands it: the reference's conventions, or an adapter's.

An implementation may shape its events as it likes, and may tell a slow client it was dropped in
its own way (an ``overflow`` event, an ``error`` event with a reason, a sentinel that ends the
stream). The spec fixes what each item conveys (`harness.spec.READ_KINDS`, SPEC.md "What a client
reads"); an adapter says how its items read with two optional hooks, each falling back to the
reference's conventions here:

- ``classify(event) -> str``: the item's kind, one of `ITEM_KINDS`;
- ``event_parts(event) -> (event_type, data)``: the item's type and the data its task sent (the
  probe's sequence number is ``data["n"]``), for the kinds that are deliveries.

Both return plain values, so an adapter implements them without importing streamspec. The runner
(`harness.records.record_read`) and the standalone reproduction scripts read every item through a
`Conventions`; the checkers only see the records that reading made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import AdapterError
from harness.spec import READ_KINDS

ITEM_KINDS: frozenset[str] = frozenset(k.name for k in READ_KINDS)
"""What `classify` may answer: "event", "complete", "error", "final_state", "overflow", "closed"."""
OVERFLOW = "overflow"
"""The type of the reference's overflow notice."""


def event_parts(event: Any) -> tuple[Any, Any]:
    """The reference's shape: a dict with the event's ``type`` and its task's ``data``."""
    if isinstance(event, dict):
        return event.get("type"), event.get("data")
    return None, None


def classify(event: Any) -> str:
    """The reference's conventions (upstream's too): the types ``complete`` and ``error`` are the
    terminal event, ``final_state`` a final state, ``overflow`` the overflow notice; anything else
    is one of the task's events."""
    event_type, _ = event_parts(event)
    if event_type == OVERFLOW:
        return "overflow"
    if event_type in ("complete", "error", "final_state"):
        return event_type
    return "event"


def probe_seq(data: Any) -> int | None:
    """The probe's sequence number in the data its task sent (``{"n": 3}``), if there is one."""
    n = data.get("n") if isinstance(data, dict) else None
    return n if isinstance(n, int) else None


@dataclass(frozen=True, slots=True)
class Conventions:
    """How one implementation's client items read (see the module docstring)."""

    classify: Callable[[Any], str] = classify
    event_parts: Callable[[Any], tuple[Any, Any]] = event_parts

    @classmethod
    def of(cls, adapter: Any) -> Conventions:
        """`adapter`'s own hooks where it has them, the reference's conventions where not."""
        hooks = {}
        for name in ("classify", "event_parts"):
            hook = getattr(adapter, name, None)
            if hook is None:
                continue
            if not callable(hook):
                raise AdapterError(f"{getattr(adapter, 'name', adapter)!r}: {name} must be callable")
            hooks[name] = hook
        return cls(**hooks)

    def seq_of(self, event: Any) -> int | None:
        """The probe's sequence number `event` carries (a stored event too), if any."""
        return probe_seq(self.event_parts(event)[1])


DEFAULT_CONVENTIONS = Conventions()
"""The reference's conventions, for an adapter with neither hook."""
