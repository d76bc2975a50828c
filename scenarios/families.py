"""Scenario families and run profiles.

A family is a state machine over a subset of the operations: which rules it may apply, which
operations may be launched together in one concurrent group, and how many tasks, clients and
simulated processes an example may have. No family names an ordering: which rule runs next, on
which entity, and how every concurrent group and background step interleaves is left to Hypothesis.

A profile bounds a search: examples per family, rule steps per example, scheduler steps per example.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["FAMILIES", "PROFILES", "PROFILE_ENV", "Family", "Profile", "profile_from_env"]


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    rules: frozenset[str]
    """Rules of the state machine this family applies (see `scenarios.machine.RULES`)."""
    group_ops: frozenset[str]
    """Operations that may be launched together in a ``concurrently`` step."""
    max_tasks: int = 2
    max_clients: int = 6
    max_processes: int = 1
    """Live simulated processes at most (``spawn`` adds one over the same database). An example
    starts with one to `max_processes` of them (drawn, shrinking toward one)."""
    budget: float = 1.0
    """Share of the profile's examples this family generates (the widest family gets more)."""
    clauses: frozenset[str] = frozenset()
    """The clauses this family is built to reach (its rules can produce their violations). Every
    clause is checked in every family; this declares intent, for the clause index in SPEC.md."""
    steer: bool = False
    """Steer generation toward takeovers (`scenarios.targets.takeover_progress`)."""
    opening: tuple[dict[str, Any], ...] = ()
    """Program steps every example begins with (then no processes are drawn at the start): a
    state the family's rules work from, which the search would otherwise rarely reach."""


_TASK_OPS = {"create", "start", "lookup", "attach", "detach", "release"}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "joins",
            "concurrent and late joiners: clients attach through the created or a looked-up object "
            "while the task starts, sends (in bursts too) and completes; clients that stop reading",
            frozenset(_TASK_OPS | {"stall", "flood", "finish_ok", "concurrently"}),
            frozenset({"start", "lookup", "attach", "detach", "release", "finish_ok"}),
            clauses=frozenset({"S1", "S2", "S3", "S4", "S5", "S8", "S8.2"}),
        ),
        Family(
            "reloads",
            "fresh instances loaded from the database (the seed's path) beside looked-up ones",
            frozenset(_TASK_OPS | {"reload", "finish_ok", "concurrently"}),
            frozenset({"start", "lookup", "reload", "attach", "release", "finish_ok"}),
            clauses=frozenset({"S1", "S2", "S3", "S4"}),
        ),
        Family(
            "restarts",
            "crashes, graceful shutdowns and restarts with running, finished and failed tasks; "
            "several processes on one database",
            frozenset(_TASK_OPS | {"reload", "finish_ok", "finish_fail", "crash", "shutdown", "restart",
                                   "spawn", "concurrently"}),
            frozenset({"start", "lookup", "reload", "attach", "release", "finish_ok", "crash", "shutdown"}),
            max_processes=2,
            budget=2.0,
            clauses=frozenset({"S2", "S3", "S4", "S6", "S7", "S7.2", "S7.3"}),
        ),
        Family(
            "takeovers",
            "a task running in one of three processes while clients join it anywhere; processes "
            "crash or shut down, and time passes past the lease: takeovers, resumed runs and the "
            "clients that join after them",
            # Few rules, so that the few steps of a takeover (an event, the owner's death, time
            # past the lease, a join elsewhere) come together often; the task ends when the run
            # settles, and the restarts family covers finishing and restarting.
            frozenset({"join", "release", "crash", "shutdown", "wait", "concurrently"}),
            frozenset({"lookup", "attach", "release", "crash", "wait"}),
            max_processes=3,
            budget=2.0,
            clauses=frozenset({"S2", "S3", "S4", "S7", "S7.2", "S7.3"}),
            steer=True,
            opening=({"op": "spawn"}, {"op": "spawn"}, {"op": "create", "process": 0},
                     {"op": "start", "obj": 0, "process": 0}),
        ),
        Family(
            "completion",
            "tasks completing while clients attach, detach, stop reading and look them up, and joiners "
            "after the end",
            frozenset(_TASK_OPS | {"stall", "flood", "finish_ok", "concurrently"}),
            frozenset({"start", "lookup", "attach", "detach", "release", "finish_ok"}),
            clauses=frozenset({"S2", "S5", "S8", "S8.2"}),
        ),
        Family(
            "failure",
            "tasks raising (exceptions, their own CancelledError, other BaseExceptions) while clients "
            "attach and look them up, and joiners after the failure",
            frozenset(_TASK_OPS | {"finish_fail", "concurrently"}),
            frozenset({"start", "lookup", "attach", "detach", "release", "finish_fail"}),
            clauses=frozenset({"S6", "S8"}),
        ),
    )
}


@dataclass(frozen=True)
class Profile:
    name: str
    max_examples: int
    """Examples Hypothesis generates per family (shrinking comes on top)."""
    stateful_step_count: int
    """Rule steps per example at most."""
    max_steps: int
    """Scheduler steps per example at most (a run past it ends as cut short, 'bound')."""
    shrink_examples: int = 0
    """Examples one round may spend shrinking its failure; when they run out the smallest failing
    example found so far is kept."""
    max_rounds: int = 4
    """Searches per family: each round shrinks one failure, the next one looks for the others."""


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("dev", max_examples=40, stateful_step_count=10, max_steps=5_000, shrink_examples=100,
                max_rounds=3),
        Profile("ci", max_examples=300, stateful_step_count=10, max_steps=10_000, shrink_examples=250,
                max_rounds=12),
        Profile("thorough", max_examples=5_000, stateful_step_count=16, max_steps=20_000,
                shrink_examples=1_000, max_rounds=24),
    )
}

PROFILE_ENV = "STREAMSPEC_PROFILE"


def profile_from_env(default: str = "dev") -> str:
    """The profile named by the environment variable STREAMSPEC_PROFILE, else `default`."""
    name = os.environ.get(PROFILE_ENV, "").strip() or default
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: use one of {', '.join(PROFILES)}")
    return name
