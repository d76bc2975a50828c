"""What `streamspec verify` writes: a report folder per implementation, and the index across them.

In a report folder (``reports/<sut>/``):

- ``summary.json`` / ``summary.md``: the conformance table (`streamspec.reports.summary`);
- ``junit.xml``: one test case per clause, for CI;
- per violated clause ``S1-identity.md`` (a bug report in the seed's structure,
  `streamspec.reports.bugreport`), ``S1-identity.json`` (the failure document `streamspec replay`
  reruns, `streamspec.corpus`), ``S1-identity.html`` (the failing run's timeline, a lane per client,
  `streamspec.reports.timeline`) and ``repro_S1.py`` (a standalone reproduction, `streamspec.repro`).

Beside the folders, ``index.html`` is the matrix of clauses against implementations
(`streamspec.reports.index`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import spec
from streamspec.corpus import failure_document, write_json
from streamspec.reports import bugreport, summary, timeline
from streamspec.reports.bugreport import slug
from streamspec.reports.index import write_index

__all__ = ["failure_files", "slug", "write_failure", "write_index", "write_summary"]


def failure_files(clause_id: str) -> dict[str, str]:
    """The names of a violated clause's files in a report folder."""
    from streamspec.repro import script_name

    stem = slug(clause_id)
    return {
        "report": f"{stem}.md",
        "failure": f"{stem}.json",
        "timeline": f"{stem}.html",
        "repro": script_name(clause_id),
    }


def write_failure(
    folder: Path,
    *,
    failure: Any,
    outcome: Any,
    adapter: Any,
    versions: dict[str, str],
    sut: str,
    make_repro: bool = True,
    say: Callable[[str], None] | None = None,
) -> tuple[dict[str, str], Any | None]:
    """Write the files of one violated clause into `folder`; returns (file names, the repro built)."""
    from streamspec.repro import build

    say = say or (lambda _line: None)
    c = spec.clause(failure.clause)
    files = failure_files(c.id)
    write_json(
        folder / files["failure"], failure_document(failure, sut=sut, versions=versions, outcome=outcome)
    )
    result = outcome.result(c.id)
    name = f"{versions['implementation']} {versions['implementation_version']}"
    (folder / files["timeline"]).write_text(
        timeline.render(
            outcome.history,
            title=f"{c.id} {c.title}: the failing run of {name}",
            violations=result.violations,
            note=f"Family {failure.family}, seed {failure.seed}; "
            f"replay it with `streamspec replay {files['failure']}`.",
        ),
        encoding="utf-8",
    )
    repro = None
    if make_repro:
        say(f"{c.id}: generating and checking {files['repro']}")
        repro = build(failure, adapter, folder)
        say(f"{c.id}: {files['repro']} " + ("reproduces it on its own" if repro.reproduced else repro.note))
    else:
        files.pop("repro")
    related = [r.clause for r in outcome.failed() if r.clause != c.id]
    (folder / files["report"]).write_text(
        bugreport.render(
            failure=failure,
            outcome=outcome,
            adapter=adapter,
            versions=versions,
            sut=sut,
            files=files,
            repro=repro,
            related=related,
        ),
        encoding="utf-8",
    )
    return files, repro


def write_summary(folder: Path, data: dict[str, Any]) -> None:
    """``summary.json``, ``summary.md`` and ``junit.xml``."""
    write_json(folder / "summary.json", data)
    (folder / "summary.md").write_text(summary.to_markdown(data), encoding="utf-8")
    (folder / "junit.xml").write_text(summary.to_junit(data), encoding="utf-8")
