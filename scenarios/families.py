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

from scenarios.targets import TAKEOVER

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
    targets: tuple[str, ...] = ()
    """Labels of `scenarios.targets.SCORES` that steer this family's generation (Hypothesis
    `target()`): toward states that take several specific steps in a row."""
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
            "starts",
            "a new task's first start raced: the row started, looked up, reloaded and joined at the "
            "same time, in one process or two",
            # Only concurrent groups: a lone start or lookup would start the task and close the
            # window (S1's lookup in flight as the task starts, S4's two starts) before any race.
            frozenset({"create", "concurrently"}),
            frozenset({"start", "lookup", "reload", "attach", "release"}),
            max_processes=2,
            clauses=frozenset({"S1", "S3", "S4"}),
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
            targets=(TAKEOVER,),
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
            "slow_readers",
            "a client that stopped reading while its task sends, in small floods and in bursts past "
            "any buffer's bound; other clients join and stop reading too",
            # Every example starts with the stalled client of a running task: a backlog grows only
            # from there, and few random programs reach that state and keep it. Nothing here takes
            # the backlog away before it is measured: no detach, no lookup (an implementation that
            # runs a looked-up copy sends to that copy's clients: the joins family's concern), no
            # end before the run settles (the completion family ends tasks under stalled clients).
            frozenset({"attach", "stall", "flood", "release", "concurrently"}),
            frozenset({"attach", "release", "flood"}),
            budget=0.5,
            clauses=frozenset({"S2", "S3", "S8.2"}),
            opening=({"op": "create", "process": 0}, {"op": "start", "obj": 0, "process": 0},
                     {"op": "attach", "obj": 0, "process": 0}, {"op": "stall", "client": 0}),
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
