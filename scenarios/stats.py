"""What a verify run explored: examples, interleavings, operation pairs, verdicts, run ends."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from typing import Any

from harness.checkers import CHECKERS
from harness.driver import Outcome
from scenarios.program import iter_ops

__all__ = ["Stats"]

CLAUSE_IDS = tuple(CHECKERS)


@dataclass
class Stats:
    """What a verify run explored."""

    examples: Counter = field(default_factory=Counter)
    """Family -> examples run (generation and shrinking)."""
    tapes: dict[str, set[str]] = field(default_factory=dict)
    """Family -> digests of distinct tapes (interleavings)."""
    sequential_pairs: set[tuple[str, str]] = field(default_factory=set)
    concurrent_pairs: set[tuple[str, str]] = field(default_factory=set)
    violations: Counter = field(default_factory=Counter)
    """Clause -> examples whose history failed it."""
    verdicts: dict[str, Counter] = field(default_factory=dict)
    """Clause -> verdict -> examples."""
    ends: Counter = field(default_factory=Counter)
    """How examples' runs ended: done, bound, hang."""
    operations: int = 0

    def total(self) -> int:
        return sum(self.examples.values())

    def note(self, family: str, program: list[dict[str, Any]], outcome: Outcome) -> None:
        self.examples[family] += 1
        digest = hashlib.blake2b(repr(outcome.tape.choices).encode(), digest_size=12).hexdigest()
        self.tapes.setdefault(family, set()).add(digest)
        leaves = [s["op"] for s in iter_ops(program)]
        self.operations += len(leaves)
        self.sequential_pairs.update(pairwise(leaves))
        for step in program:
            if step["op"] == "concurrently":
                ops = sorted(s["op"] for s in step["steps"])
                self.concurrent_pairs.update(combinations(ops, 2))
        for result in outcome.results:
            verdict = str(result.verdict)
            self.verdicts.setdefault(result.clause, Counter())[verdict] += 1
            if verdict == "fail":
                self.violations[result.clause] += 1
        end = outcome.history.run_end
        self.ends[end.reason if end is not None else "none"] += 1

    def merge(self, other: Stats) -> None:
        """Add what `other` explored (a worker's family pass) to this run's."""
        self.examples.update(other.examples)
        for family, tapes in other.tapes.items():
            self.tapes.setdefault(family, set()).update(tapes)
        self.sequential_pairs |= other.sequential_pairs
        self.concurrent_pairs |= other.concurrent_pairs
        self.violations.update(other.violations)
        for clause, verdicts in other.verdicts.items():
            self.verdicts.setdefault(clause, Counter()).update(verdicts)
        self.ends.update(other.ends)
        self.operations += other.operations

    def to_dict(self, seconds: float) -> dict[str, Any]:
        total = self.total()
        return {
            "examples": total,
            "examples_per_family": dict(self.examples),
            "examples_per_second": round(total / seconds, 1) if seconds > 0 else None,
            "operations": self.operations,
            "interleavings": sum(len(t) for t in self.tapes.values()),
            "interleavings_per_family": {f: len(t) for f, t in self.tapes.items()},
            "operation_pairs": len(self.sequential_pairs) + len(self.concurrent_pairs),
            "sequential_pairs": sorted("→".join(p) for p in self.sequential_pairs),
            "concurrent_pairs": sorted("‖".join(p) for p in self.concurrent_pairs),
            "violations_by_clause": {c: self.violations.get(c, 0) for c in CLAUSE_IDS},
            "verdicts_by_clause": {c: dict(self.verdicts.get(c, {})) for c in CLAUSE_IDS},
            "run_ends": dict(self.ends),
        }
