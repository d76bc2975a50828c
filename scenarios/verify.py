"""`verify`: run the families' state machines against an implementation and summarise.

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
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from harness import spec
from harness.adapters import Adapter
from harness.checkers import CHECKERS
from harness.driver import Outcome
from harness.errors import UsageError
from scenarios.failure import ACROSS, Failure, size
from scenarios.families import FAMILIES, PROFILES, Profile
from scenarios.machine import Search, Stats, all_keys, machine_factory
from scenarios.parallel import FamilyPass, WorkerPool, default_jobs, parallel_refusal
from scenarios.search import checked_clauses, key_order, search_round, settled, smallest_key

__all__ = ["ClauseSummary", "VerifyResult", "verify"]


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


def _check_arguments(profile: str, families: list[str] | None, clauses: set[str] | None
                     ) -> tuple[Profile, list[str], set[str]]:
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    names = list(FAMILIES) if families is None else list(families)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise UsageError(f"unknown families {unknown}: use some of {', '.join(FAMILIES)}")
    return PROFILES[profile], names, checked_clauses(clauses)


class _Verification:
    """One verify run's state, spent family by family and round by round (see the module doc)."""

    def __init__(self, adapter: Adapter, profile: Profile, names: list[str], wanted: set[str], seed: int,
                 say: Callable[[str], None],
                 on_example: Callable[[str, list[dict[str, Any]], Outcome], None] | None,
                 fail_fast: bool = False, pool: WorkerPool | None = None) -> None:
        self.adapter, self.profile, self.names, self.wanted, self.seed = adapter, profile, names, wanted, seed
        self.say, self.on_example, self.fail_fast, self.pool = say, on_example, fail_fast, pool
        self.stats = Stats()
        self.started = time.perf_counter()
        self.keys = all_keys(wanted)
        self.failures: dict[str, Failure] = {}
        self.fallbacks: dict[str, Failure] = {}
        self.first: dict[str, tuple[int, float]] = {}
        self.generated = dict.fromkeys(names, 0)
        self.rounds = dict.fromkeys(names, 0)
        self.finished: set[str] = set()
        self.halt: Callable[[Search], bool] | None = None
        """Set in a worker process (`scenarios.parallel`): when to stop a search round early."""

    # -- run ahead in worker processes (`scenarios.parallel`) ------------------------------------

    def _state(self) -> dict[str, Any]:
        """What a worker needs to run a family's passes as this process would run them next."""
        return {"profile": self.profile, "names": self.names, "wanted": self.wanted, "seed": self.seed,
                "fail_fast": self.fail_fast, "failures": sorted(self.failures), "first": dict(self.first),
                "generated": dict(self.generated), "rounds": dict(self.rounds),
                "finished": set(self.finished)}

    @classmethod
    def for_worker(cls, adapter: Adapter, state: dict[str, Any], say: Callable[[str], None]) -> _Verification:
        run = cls(adapter, state["profile"], state["names"], state["wanted"], state["seed"], say, None,
                  state["fail_fast"])
        # Only the keys matter here (they are no longer targets): a worker's finds are dropped.
        run.failures = dict.fromkeys(state["failures"])  # type: ignore[arg-type]
        run.first, run.generated, run.rounds = state["first"], state["generated"], state["rounds"]
        run.finished = state["finished"]
        return run

    def family_passes(self, family: str, shares: tuple[float, ...]) -> list[FamilyPass]:
        """A worker's passes of `family`, as this process would run them if no family found anything:
        each pass's rounds until one finds something (then the parent runs it again itself, and
        the later ones are not run) or the family is done for the pass."""
        passes = []
        for share in shares:
            said: list[str] = []
            self.say, self.stats = said.append, Stats()
            # One round at most: a round that found something is the parent's to run again.
            found = (family not in self.finished and self.rounds[family] < self.profile.max_rounds
                     and self._round(family, share))
            passes.append(FamilyPass(family, found, self.stats, self.generated[family], self.rounds[family],
                                     family in self.finished, said))
            if found:
                break
        return passes

    def _take(self, future: Any) -> list[FamilyPass] | None:
        """A worker's passes of a family, or None if this process must run them (the worker raised,
        or the pool broke: then it is not used again)."""
        try:
            passes: list[FamilyPass] = future.result()
        except BrokenProcessPool as exc:
            self.say(f"  the worker processes stopped ({exc}): the search goes on in this process")
            self._close_pool()
            return None
        except Exception:
            return None  # this process runs the same pass, and raises the same if it is the search's
        return passes

    def _close_pool(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close()

    # -- the passes ------------------------------------------------------------------------------

    def search(self) -> None:
        try:
            self._passes()
        finally:
            self._close_pool()
        for key, fallback in self.fallbacks.items():
            self.failures.setdefault(key, fallback)

    def _passes(self) -> None:
        """The passes over the families, in order; what the workers ran ahead is taken while
        nothing was found, and from the first find on this process runs the search itself."""
        ahead = self._run_ahead()
        for number, share in enumerate(PASS_SHARES):
            for family in self.names:
                done = self._ahead(ahead, family, number)
                if done is not None:
                    self._merge(done)
                    continue
                # From here on the workers' passes had targets that this family's finds may change.
                if ahead and self.pool is not None:
                    self.pool.abandon()
                ahead.clear()
                if self._family_pass_here(family, share):
                    return

    def _run_ahead(self) -> dict[str, Any]:
        """Every family's passes submitted to the workers (none without workers)."""
        if self.pool is None:
            return {}
        state = self._state()
        # The longest families first, so that no worker is left with one at the end; their
        # results are taken in family order, whatever order they finish in.
        order = sorted(self.names, key=lambda f: -FAMILIES[f].budget)
        return {f: self.pool.submit(f, PASS_SHARES, state) for f in order}

    def _ahead(self, ahead: dict[str, Any], family: str, number: int) -> FamilyPass | None:
        """The worker's pass `number` of `family` if it can be taken as it is."""
        future = ahead.get(family)
        passes = self._take(future) if future is not None else None
        if passes is None or number >= len(passes) or passes[number].found:
            return None
        return passes[number]

    def _merge(self, done: FamilyPass) -> None:
        for line in done.said:
            self.say(line)
        self.stats.merge(done.stats)
        self.generated[done.family], self.rounds[done.family] = done.generated, done.rounds
        if done.finished:
            self.finished.add(done.family)

    def _family_pass_here(self, family: str, share: float) -> bool:
        """`family`'s pass in this process; True when fail-fast stops the search."""
        while family not in self.finished and self.rounds[family] < self.profile.max_rounds:
            if not self._round(family, share):
                break
            if self.fail_fast:
                # The round that found a failure also shrank it: that report is what a fail-fast run
                # is for, and the rest of the budget would only add others.
                found = ", ".join(sorted(self.failures))
                self.say(f"  stopping at the first failure (fail-fast): {found}")
                return True
        return False

    def _budget(self, family: str, share: float) -> int:
        return int(self.profile.max_examples * FAMILIES[family].budget * share) - self.generated[family]

    def _round(self, family: str, share: float) -> bool:
        """One search round of `family`; False when the family is done for this pass."""
        round_ = self.rounds[family]
        targets = frozenset(self.keys - set(self.failures))
        spent = self.stats.examples[family]
        to_generate = self._budget(family, share)
        if not targets:
            self.finished.add(family)
            return False
        if to_generate <= 0:
            return False  # this pass's share of the budget is spent: the next pass goes on
        self.rounds[family] += 1
        # Machines made, not examples judged: Hypothesis aborts some (a shrink candidate that runs
        # out of data), hence the slack on generation. The bound counts the family's whole
        # remaining budget, not this pass's share: Hypothesis stops generating at the share, and
        # shrinking a failure found early in a first pass gets as many examples as it would have
        # in one long pass.
        search = Search(self.adapter, FAMILIES[family], self.profile, targets, self.stats, self.started,
                        limit=2 * self._budget(family, 1.0) + self.profile.shrink_examples,
                        on_example=self.on_example, seed=self.seed, halt=self.halt)
        search.first.update(self.first)
        hits, exhausted = search_round(search, machine_factory(search),
                                       seed=_round_seed(self.seed, family, round_), max_examples=to_generate,
                                       what=f"family {family} (seed {self.seed})")
        for key, value in search.first.items():
            self.first.setdefault(key, value)
        self.generated[family] += search.examples if search.before_failure is None else search.before_failure
        examples = self.stats.examples[family] - spent
        if not hits:
            self.say(f"  {family} round {round_ + 1}: {examples} examples, nothing found")
            if share == PASS_SHARES[-1]:
                self.finished.add(family)
            return False
        self._keep(family, round_, examples, hits, exhausted)
        return True

    def _keep(self, family: str, round_: int, examples: int, hits: dict[str, Failure],
              exhausted: bool) -> None:
        """Keep the failure Hypothesis shrank (allowing slips to any smaller one: the smallest);
        the others seen on the way are fallbacks in case nothing smaller turns up."""
        key = smallest_key(hits)
        hit = hits.pop(key)
        self.failures[key] = settled(hit, self.first[key], "budget" if exhausted else None)
        first = self.first[key]
        self.say(f"  {family} round {round_ + 1}: {examples} examples, {key} failed, "
                 f"shrunk to {hit.operations} operations (first after {first[0]} examples, "
                 f"{first[1]:.1f}s)" + (" (shrinking cut short)" if exhausted else ""))
        for other, hit in hits.items():
            candidate = settled(hit, self.first[other], "another violation")
            old = self.fallbacks.get(other)
            if old is None or size(candidate) < size(old):
                self.fallbacks[other] = candidate

    def result(self, profile_name: str) -> VerifyResult:
        seconds = time.perf_counter() - self.started
        summary = self.stats.to_dict(seconds)
        summary["fail_fast"] = self.fail_fast
        summary["failures"] = {k: {"family": f.family, "operations": f.operations, "steps": f.steps,
                                   "examples_to_first": f.examples_to_first,
                                   "seconds_to_first": f.seconds_to_first, "shrunk_for": f.shrunk_for}
                               for k, f in sorted(self.failures.items(), key=lambda kv: key_order(kv[0]))}
        clauses = {clause: self._clause_summary(clause, summary) for clause in CHECKERS}
        return VerifyResult(self.adapter.name, profile_name, self.seed, seconds, dict(self.stats.examples),
                            clauses, summary)

    def _clause_summary(self, clause: str, summary: dict[str, Any]) -> ClauseSummary:
        verdicts = summary["verdicts_by_clause"].get(clause, {})
        variants = {k: self.failures[k] for k in (clause, clause + ACROSS) if k in self.failures}
        failure = min(variants.values(), key=size) if variants else None
        if clause not in self.wanted:
            verdict = "unknown"  # not searched for
        elif failure is not None:
            verdict = "fail"
        elif verdicts.get("pass"):
            verdict = "pass"
        else:
            verdict = "unknown"
        return ClauseSummary(clause, verdict, sum(verdicts.values()), failure, dict(verdicts), variants)


def verify(adapter: Adapter, *, families: list[str] | None = None, profile: str = "ci",
           seed: int | None = None, clauses: set[str] | None = None,
           progress: Callable[[str], None] | None = None,
           on_example: Callable[[str, list[dict[str, Any]], Outcome], None] | None = None,
           fail_fast: bool = False, jobs: int = 1, sut: str | None = None) -> VerifyResult:
    """Search every family for violations of `clauses` (all by default) and summarise.

    `seed` None picks one at random (it is in the result and in the progress messages: pass it back
    to repeat the run). `progress` receives one line per search round. `on_example` is called with
    (family, program, outcome) after every example (its outcome's tape replays it). `fail_fast`
    stops the search after the first round that finds (and shrinks) a failure: the verdicts of the
    clauses it had not found yet then rest on the examples run until then.

    `jobs` > 1 runs the families' passes ahead in that many worker processes, each of which loads
    the adapter `sut` names (see `scenarios.parallel`); the result is the same as with one. Where
    workers cannot be used (an `on_example` callback, a DATABASE_URL) the search runs in this
    process and `progress` says why. 0 means one per core.
    """
    prof, names, wanted = _check_arguments(profile, families, clauses)
    if jobs < 0:
        raise UsageError(f"jobs {jobs}: give 0 (one per core) or more")
    jobs = min(jobs or default_jobs(), len(names))
    if jobs > 1 and not sut:
        raise UsageError("jobs > 1 needs sut: the name or module:Class the worker processes load the "
                         "adapter from")
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    say = progress or (lambda _line: None)
    say(f"verify {adapter.name}: profile {profile}, seed {seed}, families {', '.join(names)}")
    refusal = parallel_refusal(jobs, on_example, os.environ.get("DATABASE_URL"))
    if refusal is not None:
        say(f"  one process, not {jobs}: {refusal}")
        jobs = 1
    pool = WorkerPool(sut, jobs) if jobs > 1 and sut else None
    run = _Verification(adapter, prof, names, wanted, seed, say, on_example, fail_fast, pool)
    run.search()
    result = run.result(profile)
    result.stats["jobs"] = jobs
    say(f"verify {adapter.name}: {result.stats['examples']} examples in {result.seconds:.1f}s "
        f"({result.stats['examples_per_second']}/s), {result.stats['interleavings']} interleavings, "
        f"failed: {', '.join(result.failed) or 'none'} (seed {seed})")
    return result
