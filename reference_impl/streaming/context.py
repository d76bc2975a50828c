"""Which coordinator serves the running code.

A module of its own, below both the models and the coordinator: a `StreamTask` sends its events
through the current coordinator, and the coordinator runs `StreamTask`s, so neither may import the
other both ways (the reference's import graph has no cycle; `tests/test_reference_structure.py`).
The coordinator module installs the process-wide coordinator when it is imported, which the app's
`ready()` does.
"""

from __future__ import annotations

import contextvars
from typing import Any

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("streaming_coordinator", default=None)
_process_wide: Any = None


def current() -> Any:
    """The coordinator of the running context: the process-wide one unless a test harness runs
    several simulated processes in one interpreter, each activating its own."""
    found = _current.get() or _process_wide
    if found is None:
        raise RuntimeError(
            "no streaming coordinator: add reference_impl.streaming to INSTALLED_APPS (its ready() "
            "imports the coordinator)"
        )
    return found


def activate(coordinator: Any) -> contextvars.Token:
    """Make `coordinator` the current one in this context (and in tasks created from it)."""
    return _current.set(coordinator)


def install_process_wide(coordinator: Any) -> None:
    """The coordinator used where none was activated (one per server process)."""
    global _process_wide
    _process_wide = coordinator
