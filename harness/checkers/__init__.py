"""One checker per spec clause, and `check_all` to run them all on a history.

Each clause's checker lives in the module named by its ID (``S7.2`` -> ``s7_2_restart_replay``), and
exposes ``CLAUSE_ID`` and a pure ``check(history) -> ClauseResult``.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping

from harness import spec
from harness.checkers import (
    s1_identity,
    s2_orphans,
    s3_replay,
    s4_single_execution,
    s5_completion,
    s6_failure,
    s7_2_restart_replay,
    s7_3_shutdown,
    s7_restart,
    s8_2_bounded_buffers,
    s8_hygiene,
    w1_headers,
    w2_framing,
    w3_terminal_ends,
    w4_bad_requests,
    w5_resume,
    w6_shutdown,
    w7_access,
)
from harness.checkers.base import Checker, ClauseResult, Judge, Verdict, Violation
from harness.history import History

MODULES = (
    s1_identity, s2_orphans, s3_replay, s4_single_execution, s5_completion, s6_failure,
    s7_restart, s7_2_restart_replay, s7_3_shutdown, s8_hygiene, s8_2_bounded_buffers,
)

CHECKERS: dict[str, Checker] = {m.CLAUSE_ID: m.check for m in MODULES}
"""Clause ID -> checker, in spec order."""

WIRE_MODULES = (w1_headers, w2_framing, w3_terminal_ends, w4_bad_requests, w5_resume, w6_shutdown, w7_access)
WIRE_CHECKERS: dict[str, Checker] = {m.CLAUSE_ID: m.check for m in WIRE_MODULES}
"""The wire clauses' checkers (`harness.spec.WIRE_CLAUSES`), judged in the HTTP mode only."""
UNOBSERVABLE = frozenset({"S1", "S8", "S8.2"})
"""Clauses a history recorded over the wire cannot show (Python objects, resource counts, buffer
sizes): UNKNOWN there, never PASS."""


def check_wire(history: History) -> list[ClauseResult]:
    """Every S clause and every wire clause on a history recorded over the wire."""
    results = []
    for clause_id, checker in {**CHECKERS, **WIRE_CHECKERS}.items():
        if clause_id in UNOBSERVABLE:
            results.append(ClauseResult(
                clause=clause_id, level=spec.clause(clause_id).level, verdict=Verdict.UNKNOWN,
                notes=["not observable over the wire (Python objects, resource counts and buffer "
                       "sizes are inside the server): judged by --mode inproc"],
            ))
        else:
            results.append(run_checker(clause_id, checker, history))
    return results


def run_checker(clause_id: str, checker: Checker, history: History) -> ClauseResult:
    """Run one checker; a checker that raises yields UNKNOWN with the traceback, never a pass."""
    try:
        return checker(history)
    except Exception as exc:
        return ClauseResult(
            clause=clause_id,
            level=spec.clause(clause_id).level,
            verdict=Verdict.UNKNOWN,
            notes=[f"the checker crashed: {type(exc).__name__}: {exc}"],
            error=traceback.format_exc(),
        )


def check_all(history: History, checkers: Mapping[str, Checker] | None = None) -> list[ClauseResult]:
    """Every clause's verdict on `history`, in spec order (`checkers` replaces the registry)."""
    registry = CHECKERS if checkers is None else checkers
    return [run_checker(clause_id, checker, history) for clause_id, checker in registry.items()]


__all__ = [
    "CHECKERS", "UNOBSERVABLE", "WIRE_CHECKERS", "Checker", "ClauseResult", "Judge", "Verdict", "Violation",
    "check_all", "check_wire", "run_checker",
]
