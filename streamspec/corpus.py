"""Failure documents, the regression corpus, and baselines of expected failures.

A **failure document** (``S1-identity.json`` in a report folder, or a corpus entry) holds one minimal
failing run: the clause, the implementation, the program and its choice tape (what `streamspec
replay` reruns), and the recorded history with the violations (what the rerun is compared with).

The **corpus** keeps failure documents by implementation, named by clause and content:
``corpus/<sut>/S1-<hash>.json``. `streamspec verify` replays them first, so a failure found once is
checked again on every later run whatever the search finds this time, and adds each new minimal
failure it finds. (The Hypothesis database is only a cache; these files are meant to be committed.)

A **baseline** (``baselines/<sut>.json``) lists the clauses an implementation is known to fail. With
``--baseline``, verify fails on a failure the baseline does not list (new) and on a listed clause that
now passes (stale), and passes when the failures are exactly the known ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import spec
from harness.errors import CorpusError, TapeError

FAILURE_FORMAT = "streamspec.failure"
BASELINE_FORMAT = "streamspec.baseline"
VERSION = 1


def folder_name(name: str) -> str:
    """A folder name for an implementation (``upstream``; ``pkg.mod:Adapter`` -> ``pkg.mod-Adapter``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "sut"


# -- failure documents --------------------------------------------------------------------------


def failure_document(failure: Any, *, sut: str, versions: dict[str, str], outcome: Any | None = None) -> dict:
    """The JSON document of a failure (`failure` is a `scenarios.Failure`)."""
    outcome = outcome if outcome is not None else failure.outcome
    c = spec.clause(failure.clause)
    doc: dict[str, Any] = {"format": FAILURE_FORMAT, "version": VERSION, "clause": c.id, "title": c.title,
                           "level": str(c.level), "sut": sut}
    doc.update({k: v for k, v in failure.to_dict().items() if k not in ("clause", "sut")})
    doc["implementation"] = dict(versions)
    if outcome is not None:
        result = outcome.result(c.id)
        doc["violations"] = [v.to_dict() for v in result.violations]
        doc["history"] = outcome.history.to_dict()
    return doc


def content_hash(doc: dict[str, Any]) -> str:
    """Ten hex digits over what makes the run: clause, program, tape."""
    key = json.dumps(
        {"clause": doc["clause"], "program": doc["program"], "tape": doc["tape"]},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def read_document(path: Path) -> dict[str, Any]:
    """Read and check a failure document; CorpusError (one line) if it is not a usable one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CorpusError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FAILURE_FORMAT:
        raise CorpusError(f'{path} is not a streamspec failure document (no "format": "{FAILURE_FORMAT}")')
    if doc.get("version") != VERSION:
        raise CorpusError(
            f"{path} has version {doc.get('version')!r}; this streamspec reads version {VERSION}"
        )
    missing = [k for k in ("clause", "sut", "program", "tape", "family", "seed") if k not in doc]
    if missing:
        raise CorpusError(f"{path} lacks {', '.join(missing)}")
    if doc["clause"] not in spec.BY_ID:
        raise CorpusError(f"{path} names an unknown clause {doc['clause']!r}")
    if not isinstance(doc["program"], list) or not isinstance(doc["tape"], dict):
        raise CorpusError(f"{path}: 'program' must be a list and 'tape' an object")
    return doc


def write_json(path: Path, data: Any) -> None:
    """Indented JSON, with lists of plain values (tapes, evidence) kept on one line."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\n\s*([^\[\]{}]*?)\n\s*\]",
                  lambda m: "[" + ", ".join(item.strip() for item in m.group(1).split(",\n")) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


# -- the corpus ---------------------------------------------------------------------------------


@dataclass
class EntryResult:
    path: Path
    clause: str
    status: str
    """"still fails", "passes now", or "diverged: ..." (the run no longer follows its tape)."""
    failure: Any | None = None
    """A `scenarios.Failure` with the replayed outcome, when it still fails."""

    @property
    def fails(self) -> bool:
        return self.status == "still fails"


class Corpus:
    """The corpus folder of one implementation: ``<root>/<sut>/<clause>-<hash>.json``."""

    def __init__(self, root: Path, sut: str) -> None:
        self.root = root
        self.folder = root / folder_name(sut)

    def entries(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every entry, by name; CorpusError if one is unreadable (a corrupt file is not skipped silently)."""
        if not self.folder.is_dir():
            return []
        return [(path, read_document(path)) for path in sorted(self.folder.glob("*.json"))]

    def name_of(self, doc: dict[str, Any]) -> str:
        return f"{doc['clause']}-{content_hash(doc)}.json"

    def contains(self, doc: dict[str, Any]) -> bool:
        return (self.folder / self.name_of(doc)).exists()

    def add(self, doc: dict[str, Any]) -> Path | None:
        """Store `doc` (without its history: a replay recomputes it); None if it is there already."""
        path = self.folder / self.name_of(doc)
        if path.exists():
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        stored = {k: v for k, v in doc.items() if k != "history"}
        tmp = path.with_suffix(".tmp")
        write_json(tmp, stored)
        tmp.replace(path)
        return path

    def replay(self, adapter: Any, *, clauses: set[str] | None = None) -> list[EntryResult]:
        """Replay every entry (of `clauses`) against `adapter` (Django configured for it)."""
        import scenarios

        results = []
        for path, doc in self.entries():
            if clauses is not None and doc["clause"] not in clauses:
                continue
            try:
                outcome = scenarios.replay(doc, adapter=adapter)
            except TapeError as exc:
                first = str(exc).split(":")[0]
                results.append(EntryResult(path, doc["clause"], f"diverged: {first} (re-record it)"))
                continue
            if outcome.verdict(doc["clause"]) == "fail":
                failure = scenarios.Failure.from_document(doc, outcome, sut=adapter.name)
                results.append(EntryResult(path, doc["clause"], "still fails", failure))
            else:
                results.append(EntryResult(path, doc["clause"], "passes now"))
        return results


# -- baselines ----------------------------------------------------------------------------------


def read_baseline(path: Path) -> dict[str, str]:
    """Clause -> why it is expected to fail. CorpusError if the file is not a baseline."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CorpusError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CorpusError(f"baseline {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise CorpusError(f'{path} is not a streamspec baseline (no "format": "{BASELINE_FORMAT}")')
    expected = data.get("expected_failures")
    if not isinstance(expected, dict):
        raise CorpusError(f"baseline {path}: 'expected_failures' must map clause ids to reasons")
    unknown = [c for c in expected if c not in spec.BY_ID]
    if unknown:
        raise CorpusError(f"baseline {path} names unknown clauses: {', '.join(unknown)}")
    return {str(k): str(v) for k, v in expected.items()}


def compare(
    expected: dict[str, str], rows: list[dict[str, Any]], *, strict: bool
) -> tuple[list[str], list[str]]:
    """(new, stale): failures the baseline does not list (MUST ones, and SHOULD ones if `strict`),
    and listed clauses that now pass. A listed clause that was not judged (unknown, not run) is
    neither."""
    new = [
        r["clause"]
        for r in rows
        if r["verdict"] == "fail" and r["clause"] not in expected and (r["level"] == "MUST" or strict)
    ]
    stale = [r["clause"] for r in rows if r["clause"] in expected and r["verdict"] == "pass"]
    return new, stale


def write_baseline(
    path: Path,
    *,
    sut: str,
    versions: dict[str, str],
    rows: list[dict[str, Any]],
    previous: dict[str, str] | None = None,
) -> dict[str, str]:
    """Record the clauses failing now as the expected failures (keeping reasons already written)."""
    previous = previous or {}
    expected = {
        r["clause"]: previous.get(r["clause"]) or r.get("violation") or "known failure"
        for r in rows
        if r["verdict"] == "fail"
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        path,
        {
            "format": BASELINE_FORMAT,
            "version": VERSION,
            "sut": sut,
            "implementation": " ".join(
                filter(None, [versions.get("implementation", sut), versions.get("implementation_version")])
            ),
            "expected_failures": expected,
        },
    )
    return expected
