"""The harness's exception hierarchy.

Every error streamspec raises on purpose, in every layer (engine, search, application), derives
from :class:`StreamspecError` and is defined here, so a caller can tell "the harness found (or
hit) something" apart from a bug in the code under test. Two kinds of exception live elsewhere on
purpose: the probe task's own failure (`harness.probe.gates.ProbeFailure`, an error of the task
under test) and the search's control flow for Hypothesis (`scenarios.machine.ClauseViolation`,
`BudgetExhausted`). Keep this module flat and dependency-free.
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


class NondeterministicRun(TapeError):
    """The implementation did not repeat a run given the same decisions (Hypothesis found a
    failure that did not fail again, or the same choices led elsewhere): its runs cannot be
    replayed, so nothing it is reported to fail could be reproduced."""


# --- configuration, usage and adapters -------------------------------------------------------


class ConfigError(StreamspecError):
    """The harness or Django is configured wrongly (settings, database URL, missing app...)."""


class UsageError(ConfigError, ValueError):
    """Bad input from the user: an unknown profile, family or clause, a malformed program, a bad
    option. The command line reports it in one line and exits 2; a ValueError for API callers."""


class CorpusError(ConfigError):
    """A corpus entry, replay file or baseline that cannot be used (unreadable, wrong format)."""


class AdapterError(StreamspecError):
    """An adapter cannot drive the implementation under test (missing hook, wrong shape...)."""
