"""The search loop: one Hypothesis search over a state machine, and what it found.

Everything that searches goes through :func:`search_round`: `scenarios.verify` runs it per family
and round, and :func:`search_program` runs it on one fixed program (a regression program, a
test's race), whose operations are set and whose interleavings are searched. Each round gives the
smallest failing example (a :class:`~scenarios.failure.Failure`) per violation key it found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from harness.adapters import Adapter
from harness.bounds import RUN_MAX_STEPS
from harness.checkers import CHECKERS
from harness.errors import NondeterministicRun, UsageError
from scenarios.failure import Failure, size
from scenarios.families import Family, Profile
from scenarios.machine import (
    BudgetExhausted,
    ClauseViolation,
    ScenarioMachine,
    Search,
    Stats,
    all_keys,
    program_machine_factory,
)
from scenarios.program import validate_program

__all__ = ["checked_clauses", "hypothesis_settings", "key_order", "search_program", "search_round", "settled",
           "smallest_key"]


def hypothesis_settings(max_examples: int, stateful_step_count: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=stateful_step_count,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )


def _violations(exc: BaseException) -> list[ClauseViolation] | None:
    """The clause violations `exc` carries, or None if it carries anything else."""
    if isinstance(exc, ClauseViolation):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):  # several distinct failures, or a flaky one
        found: list[ClauseViolation] = []
        for inner in exc.exceptions:
            sub = _violations(inner)
            if sub is None:
                return None
            found.extend(sub)
        return found
    return None


def search_round(search: Search, factory: Callable[[], ScenarioMachine], *, seed: int, max_examples: int,
                 what: str) -> tuple[dict[str, Failure], bool]:
    """Run one Hypothesis search of `factory`'s machines, seeded with `seed`.

    Returns the smallest failing example per target key it raised (directly or, as a fallback,
    on the way to another key), and whether shrinking was cut short by the search's budget.
    `what` names the search in the error raised when the implementation is not deterministic."""
    exhausted = False
    try:
        steps = search.profile.stateful_step_count
        run_state_machine_as_test(hypothesis_seed(seed)(factory),
                                  settings=hypothesis_settings(max_examples, steps))
    except BudgetExhausted:
        exhausted = True  # shrinking was cut short: the smallest example so far is kept
    except Flaky as exc:
        raise NondeterministicRun(
            f"{search.adapter.name} behaved differently on the same scheduling decisions in {what}: "
            "something it does depends on more than the decisions (wall-clock time, object ids such as "
            "iterating a set of objects, a thread of its own). Hypothesis says: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    except BaseException as exc:  # the minimal failing example, or a real error
        if _violations(exc) is None:
            raise
    hits = {k: h for k, h in search.found.items() if k in search.targets}
    for key, hit in search.also.items():
        if key in search.targets and (key not in hits or size(hit) < size(hits[key])):
            hits[key] = hit
    return hits, exhausted


def key_order(key: str) -> tuple[int, int]:
    """Spec order of violation keys: by clause, the within-one-process key first."""
    clause, _, across = key.partition(":")
    return list(CHECKERS).index(clause), bool(across)


def checked_clauses(clauses: Collection[str] | None) -> set[str]:
    """The clauses a search is after (every clause for None); UsageError for an unknown one."""
    wanted = set(CHECKERS) if clauses is None else set(clauses)
    unknown = sorted(wanted - set(CHECKERS))
    if unknown:
        raise UsageError(f"unknown clauses {unknown}: use some of {', '.join(CHECKERS)}")
    return wanted


def smallest_key(hits: dict[str, Failure]) -> str:
    """The key of the smallest failure a round raised (ties in spec order): the one Hypothesis
    shrank, allowing slips to any smaller one."""
    return min(hits, key=lambda k: (size(hits[k]), key_order(k)))


def settled(hit: Failure, first: tuple[int, float], shrunk_for: str | None) -> Failure:
    """`hit` as reported: with how soon its key first failed, and what it was shrunk for."""
    examples, seconds = first
    return replace(hit, examples_to_first=examples, seconds_to_first=round(seconds, 3), shrunk_for=shrunk_for)


def search_program(adapter: Adapter, program: list[dict[str, Any]], *,
                   clauses: Collection[str] | None = None, max_examples: int = 100, seed: int = 0,
                   max_steps: int = RUN_MAX_STEPS, name: str = "program") -> Failure | None:
    """Search the interleavings of one fixed program for a failure of `clauses` (all if None).

    The smallest failing run (a `Failure` whose family is `name`), or None if every example
    passed. Deterministic for a seed."""
    validate_program(program)
    wanted = checked_clauses(clauses)
    family = Family(name, "a fixed program", frozenset(), frozenset())
    profile = Profile(name, max_examples=max_examples, stateful_step_count=1, max_steps=max_steps)
    search = Search(adapter, family, profile, all_keys(wanted), Stats(), time.perf_counter(), seed=seed)
    hits, exhausted = search_round(search, program_machine_factory(search, program), seed=seed,
                                   max_examples=max_examples, what=f"program {name} (seed {seed})")
    if not hits:
        return None
    key = smallest_key(hits)
    return settled(hits[key], search.first[key], "budget" if exhausted else None)
