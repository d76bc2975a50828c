"""streamspec's engine: drive an implementation through an adapter on a deterministic event loop,
record what happens as a history, and check every clause of the spec on it.

The public API is what `__all__` lists; everything else may change without notice.
"""

from harness.adapters import Adapter, SutProcess, load_adapter
from harness.checkers import CHECKERS, ClauseResult, Verdict, Violation, check_all
from harness.choice import ChoiceSource, FifoChoices, HypothesisChoices, RandomChoices, Tape, TapeChoices
from harness.driver import Outcome, RunDriver, run_scenario
from harness.errors import (
    AdapterError,
    BoundExceeded,
    ConfigError,
    Deadlock,
    SchedulerError,
    StreamspecError,
    TapeError,
    TapeExhausted,
    TapeMismatch,
)
from harness.history import History, HistoryError
from harness.runner import Run
from harness.scheduler import ControlledLoop, RunResult, SimProcess, crash, run, spawn_process
from harness.spec import CLAUSES, Clause, Level, Severity, clause

__all__ = [
    "CHECKERS",
    "CLAUSES",
    "Adapter",
    "AdapterError",
    "BoundExceeded",
    "ChoiceSource",
    "Clause",
    "ClauseResult",
    "ConfigError",
    "ControlledLoop",
    "Deadlock",
    "FifoChoices",
    "History",
    "HistoryError",
    "HypothesisChoices",
    "Level",
    "Outcome",
    "RandomChoices",
    "Run",
    "RunDriver",
    "RunResult",
    "SchedulerError",
    "Severity",
    "SimProcess",
    "StreamspecError",
    "SutProcess",
    "Tape",
    "TapeChoices",
    "TapeError",
    "TapeExhausted",
    "TapeMismatch",
    "Verdict",
    "Violation",
    "check_all",
    "clause",
    "crash",
    "load_adapter",
    "run",
    "run_scenario",
    "spawn_process",
]
