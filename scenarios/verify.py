"""`verify`: run the families' state machines against an implementation; `replay` a failure.

For each family, Hypothesis searches with the family's state machine for examples failing a clause
that is still to be found. A violation is keyed by its clause and by whether it spans several
simulated processes ("S4" and "S4:processes"); each key raises its own exception type, so Hypothesis
keeps and shrinks one minimal example per key. When a search round ends, the keys it found are
dropped from the targets and the next round (a seed derived from the run's seed) looks for the
others, until every key is found or the family's budget is spent; shrinking past the budget is cut
short, keeping the smallest failing example found so far. Deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from harness import spec
from harness.adapters import Adapter, load_adapter
from harness.bounds import RUN_MAX_STEPS
from harness.checkers import CHECKERS
from harness.choice import Tape, TapeChoices
from harness.driver import Outcome
from harness.errors import TapeError
from scenarios.families import FAMILIES, PROFILES, Profile
from scenarios.machine import (
    ACROSS,
    BudgetExhausted,
    ClauseViolation,
    Found,
    Search,
    Stats,
    all_keys,
    machine_factory,
)
from scenarios.program import op_count, run_program, validate_program

__all__ = ["ClauseSummary", "Failure", "NondeterministicRun", "VerifyResult", "replay", "verify"]


@dataclass
class Failure:
    """The minimal failing example found for one clause: a program and the tape that replays it."""

    clause: str
    family: str
    seed: int
    program: list[dict[str, Any]]
    """JSON-able steps, in order, concurrent groups nested (see `scenarios.program`)."""
    tape: Tape
    outcome: Outcome | None
    """The run's history and every clause's result (`replay` gives the same history)."""
    examples_to_first: int
    seconds_to_first: float
    sut: str = "reference"
    max_steps: int = RUN_MAX_STEPS
    """The scheduler bound the example ran with (a replay needs it to end at the same point)."""
    shrunk_for: str | None = None
    """None if Hypothesis shrank the example for this failure; else what it shrank it for (the
    example fails this clause too, and is kept because nothing smaller was found for it)."""
    key: str = ""
    """The violation key: the clause id, or ``<id>:processes`` when the violation spans several
    simulated processes (e.g. two processes on one database running the task at once)."""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = self.clause

    @property
    def across_processes(self) -> bool:
        return self.key.endswith(ACROSS)

    @property
    def operations(self) -> int:
        """Operations in the program (a concurrent group counts its members)."""
        return op_count(self.program)

    @property
    def steps(self) -> int:
        """Top-level program steps (a concurrent group counts once)."""
        return len(self.program)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "family": self.family,
            "seed": self.seed,
            "sut": self.sut,
            "max_steps": self.max_steps,
            "shrunk_for": self.shrunk_for,
            "key": self.key,
            "operations": self.operations,
            "program": self.program,
            "tape": self.tape.to_dict(),
            "examples_to_first": self.examples_to_first,
            "seconds_to_first": self.seconds_to_first,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, adapter: Adapter | None = None) -> Failure:
        """Rebuild a failure; its outcome is re-derived by replaying the program."""
        validate_program(d["program"])
        failure = cls(
            clause=str(d["clause"]), family=str(d["family"]), seed=int(d["seed"]),
            program=list(d["program"]), tape=Tape.from_dict(d["tape"]), outcome=None,
            examples_to_first=int(d["examples_to_first"]), seconds_to_first=float(d["seconds_to_first"]),
            sut=str(d.get("sut", "reference")), max_steps=int(d.get("max_steps", RUN_MAX_STEPS)),
            shrunk_for=d.get("shrunk_for"), key=str(d.get("key") or d["clause"]),
        )
        failure.outcome = replay(failure, adapter=adapter)
        return failure


@dataclass
class ClauseSummary:
    clause: str
    verdict: str
    """"fail" if an example failed it; else "pass" if some example judged it PASS; else "unknown"."""
    examples: int
    """Examples whose history was judged on this clause (every example judges every clause)."""
    failure: Failure | None = None
    """The smallest failing example found (within one process or across processes)."""
    verdicts: dict[str, int] = field(default_factory=dict)
    """Verdict -> examples."""
    variants: dict[str, Failure] = field(default_factory=dict)
    """Violation key -> its smallest failing example: ``"S4"`` (within one process) and
    ``"S4:processes"`` (the violation spans several simulated processes), when found."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "level": str(spec.clause(self.clause).level),
            "verdict": self.verdict,
            "examples": self.examples,
            "verdicts": dict(self.verdicts),
            "failure": self.failure.to_dict() if self.failure else None,
            "variants": {k: f.to_dict() for k, f in self.variants.items()},
        }


@dataclass
class VerifyResult:
    sut: str
    profile: str
    seed: int
    seconds: float
    examples: dict[str, int]
    """Family -> examples run (generation and shrinking)."""
    clauses: dict[str, ClauseSummary]
    """Every clause of the spec, in spec order."""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [c for c, s in self.clauses.items() if s.verdict == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "sut": self.sut,
            "profile": self.profile,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "examples": dict(self.examples),
            "clauses": {c: s.to_dict() for c, s in self.clauses.items()},
            "stats": self.stats,
        }


PASS_SHARES = (0.25, 1.0)
"""Shares of each family's budget spent by the end of each pass over the families. A first pass
gives every family a quarter of its budget, so a bug that only a family late in the order reaches
is found early; the second pass spends the rest."""


def _round_seed(seed: int, family: str, round_: int) -> int:
    digest = hashlib.sha256(f"{seed}:{family}:{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _hypothesis_settings(profile: Profile, max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=profile.stateful_step_count,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )


class NondeterministicRun(TapeError):
    """The implementation did not repeat a run given the same decisions (Hypothesis found a
    failure that did not fail again, or the same choices led elsewhere): its runs cannot be
    replayed, so nothing it is reported to fail could be reproduced."""


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


def _to_failure(found: Found, *, seed: int, adapter: Adapter, max_steps: int,
                first: tuple[int, float], shrunk_for: str | None = None) -> Failure:
    return Failure(
        clause=found.key.split(":")[0], family=found.family, seed=seed, program=found.program,
        tape=found.outcome.tape, outcome=found.outcome, examples_to_first=first[0],
        seconds_to_first=round(first[1], 3), sut=adapter.name, max_steps=max_steps, shrunk_for=shrunk_for,
        key=found.key,
    )


def _size(failure: Failure) -> tuple[int, int, int]:
    return (failure.operations, failure.steps, failure.tape.deviations)


def _found_size(found: Found) -> tuple[int, int, int]:
    return (op_count(found.program), len(found.program), found.outcome.tape.deviations)


def verify(adapter: Adapter, *, families: list[str] | None = None, profile: str = "ci",
           seed: int | None = None, clauses: set[str] | None = None,
           progress: Callable[[str], None] | None = None,
           on_example: Callable[[str, list[dict[str, Any]], Outcome], None] | None = None) -> VerifyResult:
    """Search every family for violations of `clauses` (all by default) and summarise.

    `seed` None picks one at random (it is in the result and in the progress messages: pass it back
    to repeat the run). `progress` receives one line per search round. `on_example` is called with
    (family, program, outcome) after every example (its outcome's tape replays it).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    names = list(FAMILIES) if families is None else list(families)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}: use some of {', '.join(FAMILIES)}")
    wanted = set(CHECKERS) if clauses is None else set(clauses)
    bad = wanted - set(CHECKERS)
    if bad:
        raise ValueError(f"unknown clauses {sorted(bad)}: use some of {', '.join(CHECKERS)}")
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    say = progress or (lambda _line: None)
    say(f"verify {adapter.name}: profile {profile}, seed {seed}, families {', '.join(names)}")

    stats = Stats()
    started = time.perf_counter()
    keys = all_keys(wanted)
    failures: dict[str, Failure] = {}
    fallbacks: dict[str, Failure] = {}
    first: dict[str, tuple[int, float]] = {}
    generated = dict.fromkeys(names, 0)
    rounds = dict.fromkeys(names, 0)
    finished: set[str] = set()
    for share in PASS_SHARES:
        for family in names:
            while family not in finished and rounds[family] < prof.max_rounds:
                round_ = rounds[family]
                targets = frozenset(keys - set(failures))
                spent = stats.examples[family]
                to_generate = int(prof.max_examples * FAMILIES[family].budget * share) - generated[family]
                if not targets:
                    finished.add(family)
                    break
                if to_generate <= 0:
                    break  # this pass's share of the budget is spent: the next pass goes on
                rounds[family] += 1
                # Machines made, not examples judged: Hypothesis aborts some (a shrink candidate that
                # runs out of data), hence the slack on generation.
                # The bound counts the family's whole remaining budget, not this pass's share:
                # Hypothesis stops generating at the share, and shrinking a failure found early in
                # a first pass gets as many examples as it would have in one long pass.
                remaining = int(prof.max_examples * FAMILIES[family].budget) - generated[family]
                search = Search(adapter, FAMILIES[family], prof, targets, stats, started,
                                limit=2 * remaining + prof.shrink_examples, on_example=on_example)
                search.first.update(first)
                factory = hypothesis_seed(_round_seed(seed, family, round_))(machine_factory(search))
                exhausted = False
                try:
                    run_state_machine_as_test(factory, settings=_hypothesis_settings(prof, to_generate))
                except BudgetExhausted:
                    exhausted = True  # shrinking was cut short: the smallest example so far is kept
                except Flaky as exc:
                    raise NondeterministicRun(
                        f"{adapter.name} behaved differently on the same scheduling decisions in family "
                        f"{family} (seed {seed}): something it does depends on more than the decisions "
                        "(wall-clock time, object ids such as iterating a set of objects, a thread of its "
                        f"own). Hypothesis says: {type(exc).__name__}: {exc}"
                    ) from exc
                except BaseException as exc:  # the minimal failing example, or a real error
                    if _violations(exc) is None:
                        raise
                for key, value in search.first.items():
                    first.setdefault(key, value)
                made = search.examples if search.before_failure is None else search.before_failure
                generated[family] += made
                hits = {k: h for k, h in search.found.items() if k in targets}
                for key, hit in search.also.items():
                    if key in targets and (key not in hits or _found_size(hit) < _found_size(hits[key])):
                        hits[key] = hit
                if not hits:
                    say(f"  {family} round {round_ + 1}: {stats.examples[family] - spent} examples, "
                        "nothing found")
                    if share == PASS_SHARES[-1]:
                        finished.add(family)
                    break
                # Hypothesis shrank one failure (allowing slips to any smaller one): the smallest.
                key = min(hits, key=lambda k: (_found_size(hits[k]), _key_order(k)))
                hit = hits.pop(key)
                failures[key] = _to_failure(hit, seed=seed, adapter=adapter, max_steps=prof.max_steps,
                                            first=first[key], shrunk_for="budget" if exhausted else None)
                say(f"  {family} round {round_ + 1}: {stats.examples[family] - spent} examples, "
                    f"{key} failed, "
                    f"shrunk to {op_count(hit.program)} operations (first after {first[key][0]} examples, "
                    f"{first[key][1]:.1f}s)" + (" (shrinking cut short)" if exhausted else ""))
                for other, hit in hits.items():  # seen on the way: kept in case nothing smaller turns up
                    candidate = _to_failure(hit, seed=seed, adapter=adapter, max_steps=prof.max_steps,
                                            first=first[other], shrunk_for="another violation")
                    old = fallbacks.get(other)
                    if old is None or _size(candidate) < _size(old):
                        fallbacks[other] = candidate
    for key, fallback in fallbacks.items():
        failures.setdefault(key, fallback)
    seconds = time.perf_counter() - started
    summary = stats.to_dict(seconds)
    summary["failures"] = {k: {"family": f.family, "operations": f.operations, "steps": f.steps,
                               "examples_to_first": f.examples_to_first,
                               "seconds_to_first": f.seconds_to_first, "shrunk_for": f.shrunk_for}
                           for k, f in sorted(failures.items(), key=lambda kv: _key_order(kv[0]))}
    result_clauses: dict[str, ClauseSummary] = {}
    for clause in CHECKERS:
        verdicts = summary["verdicts_by_clause"].get(clause, {})
        variants = {k: failures[k] for k in (clause, clause + ACROSS) if k in failures}
        failure = min(variants.values(), key=_size) if variants else None
        if clause not in wanted:
            verdict = "unknown"  # not searched for
        elif failure is not None:
            verdict = "fail"
        elif verdicts.get("pass"):
            verdict = "pass"
        else:
            verdict = "unknown"
        result_clauses[clause] = ClauseSummary(clause, verdict, sum(verdicts.values()), failure,
                                               dict(verdicts), variants)
    result = VerifyResult(adapter.name, profile, seed, seconds, dict(stats.examples), result_clauses, summary)
    say(f"verify {adapter.name}: {summary['examples']} examples in {seconds:.1f}s "
        f"({summary['examples_per_second']}/s), {summary['interleavings']} interleavings, "
        f"failed: {', '.join(result.failed) or 'none'} (seed {seed})")
    return result


def _key_order(key: str) -> tuple[int, int]:
    clause, _, across = key.partition(":")
    return list(CHECKERS).index(clause), bool(across)


def replay(failure: Failure | dict[str, Any], *, adapter: Adapter | None = None) -> Outcome:
    """Re-execute a failure's program with its tape: the same history, byte for byte.

    The adapter defaults to the one the failure names (Django must be configured for it, or is
    configured here with DATABASE_URL or a temporary SQLite database)."""
    if isinstance(failure, dict):
        program, tape = failure["program"], Tape.from_dict(failure["tape"])
        sut = str(failure.get("sut", "reference"))
        max_steps = int(failure.get("max_steps", RUN_MAX_STEPS))
    else:
        program, tape, sut, max_steps = failure.program, failure.tape, failure.sut, failure.max_steps
    validate_program(program)
    if adapter is None:
        adapter = load_adapter(sut)
        _ensure_django(adapter)
    return run_program(adapter, program, TapeChoices(tape), max_steps=max_steps)


def _ensure_django(adapter: Adapter) -> None:
    from django.conf import settings as django_settings

    if not django_settings.configured:
        from harness.django_setup import configure

        configure(adapter, os.environ.get("DATABASE_URL"))
