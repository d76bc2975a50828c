"""The search: scenario families, the state machine, the search loop and its one failure type.

Public interface:

- ``PROFILES``: ``"dev"``, ``"ci"``, ``"thorough"`` -> :class:`Profile`
- ``FAMILIES``: ``"joins"``, ``"reloads"``, ``"restarts"``, ``"completion"``, ``"failure"`` -> :class:`Family`
- ``verify(adapter, *, families=None, profile="ci", seed=None, clauses=None, progress=None, fail_fast=False,
  jobs=1, sut=None) -> VerifyResult``: `jobs` worker processes run family passes ahead (`scenarios.parallel`)
- ``search_program(adapter, program, *, clauses=None, max_examples=100, seed=0) -> Failure | None``:
  the interleavings of one fixed program, searched by the same loop as the families
- ``replay(failure) -> Outcome``: re-executes a failure's program with its tape (same history)
- :class:`Failure`, :class:`ClauseSummary`, :class:`VerifyResult`
- ``run_program(adapter, program, choices)`` and ``execute(session, step)``: programs as JSON steps
- ``REGRESSIONS``: explicit programs (the seed's flow, the lookup-versus-start race)
- ``profile_from_env()``: the profile named by ``STREAMSPEC_PROFILE``

The search sits on the engine (`harness`) and imports nothing of the application (`streamspec`).
"""

from __future__ import annotations

from harness.errors import NondeterministicRun
from scenarios.failure import Failure, replay
from scenarios.families import FAMILIES, PROFILE_ENV, PROFILES, Family, Profile, profile_from_env
from scenarios.program import Session, execute, op_count, run_program, validate_program
from scenarios.regressions import REGRESSIONS
from scenarios.search import search_program
from scenarios.verify import ClauseSummary, VerifyResult, verify

__all__ = [
    "FAMILIES",
    "PROFILES",
    "PROFILE_ENV",
    "REGRESSIONS",
    "ClauseSummary",
    "Failure",
    "Family",
    "NondeterministicRun",
    "Profile",
    "Session",
    "VerifyResult",
    "execute",
    "op_count",
    "profile_from_env",
    "replay",
    "run_program",
    "search_program",
    "validate_program",
    "verify",
]
