"""The harness's exception hierarchy.

Every error the harness raises on purpose derives from :class:`StreamspecError`, so a caller
can tell "the harness found (or hit) something" apart from a bug in the code under test.
Keep this module flat and dependency-free: other harness modules add their own classes here.
"""

from __future__ import annotations


class StreamspecError(Exception):
    """Base class of every error raised by the streamspec harness."""


# --- scheduler -------------------------------------------------------------------------------


class SchedulerError(StreamspecError):
    """The deterministic scheduler could not carry on with a run."""


class BoundExceeded(SchedulerError):
    """A run went past its step or virtual-time bound (a livelock, or a bound set too low).

    ``bound`` names the bound (``"max_steps"`` or ``"max_virtual_time"``), ``limit`` is its value;
    ``steps`` and ``virtual_time`` say where the run was when it stopped.
    """

    def __init__(self, message: str, *, bound: str, limit: float, steps: int, virtual_time: float) -> None:
        super().__init__(message)
        self.bound = bound
        self.limit = limit
        self.steps = steps
        self.virtual_time = virtual_time


class Deadlock(SchedulerError):
    """The main coroutine is not done but nothing can ever run again (a hang).

    ``waiting`` lists ``(task name, stack text)`` for every task that is still waiting, so the
    report shows where each one is stuck. The message contains the same, formatted.
    """

    def __init__(
        self, message: str, *, waiting: list[tuple[str, str]], steps: int, virtual_time: float
    ) -> None:
        super().__init__(message)
        self.waiting = waiting
        self.steps = steps
        self.virtual_time = virtual_time


class OffloadTimeout(SchedulerError):
    """A call sent to the worker thread did not return within the real-time limit."""


# --- choice tapes ----------------------------------------------------------------------------


class TapeError(StreamspecError):
    """Replaying a recorded tape failed: the run is not the one that was recorded."""


class TapeExhausted(TapeError):
    """The run asked for more scheduling decisions than the tape holds."""


class TapeMismatch(TapeError):
    """A recorded decision does not fit the decision the run asks for (other options or label)."""


# --- configuration and adapters (placeholders: their owners may refine the docstrings) ---------


class ConfigError(StreamspecError):
    """The harness or Django is configured wrongly (settings, database URL, missing app...)."""


class AdapterError(StreamspecError):
    """An adapter cannot drive the implementation under test (missing hook, wrong shape...)."""
