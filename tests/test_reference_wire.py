"""The reference over the wire: real `runserver_stream` processes, real SSE clients, kills, SIGTERM,
leavers, reconnections and hostile requests; every clause the wire can show holds."""

from __future__ import annotations

import pytest

from harness.checkers.base import Verdict
from tests.wire_support import run, steps

pytestmark = pytest.mark.http

KILL_AND_RESTART = [{"op": "servers", "count": 2}, *steps(
    ("attach", {"process": 0}), ("release", {"count": 1}), ("crash", {"process": 0}),
    ("attach", {"process": 1}), ("attach", {"process": 0}), ("release", {"count": 1}),
    ("finish_ok", {"how": "value"}),
)]

SIGTERM_OPEN_STREAMS = [{"op": "servers", "count": 1}, *steps(
    ("attach", {"process": 0}), ("attach", {"process": 0}), ("release", {"count": 1}),
    ("shutdown", {"process": 0}), ("attach", {"process": 0}),
)]

BAD_REQUESTS = [{"op": "servers", "count": 1},
                *({"op": "request", "process": 0, "which": i} for i in range(16))]

RECONNECT = [{"op": "servers", "count": 2}, *steps(
    ("attach", {"process": 0}), ("release", {"count": 2}), ("reconnect", {"client": 0, "process": 1}),
    ("release", {"count": 1}), ("wait", {"seconds": 0.6}),  # p1 relays the owner's events (polling)
    ("reconnect", {"client": 1, "process": 0}), ("finish_ok", {"how": "complete"}),
)]

CROWD = [{"op": "servers", "count": 2}, *steps(
    ("attach", {"process": 0}), ("release", {"count": 1}), ("crowd", {"process": 0, "count": 10}),
    ("attach", {"process": 1}), ("release", {"count": 1}), ("finish_ok", {"how": "complete"}),
)]

LEAVERS = [{"op": "servers", "count": 1}, *steps(
    ("attach", {"process": 0}), ("attach", {"process": 0}), ("release", {"count": 1}),
    ("detach", {"client": 0}), ("stall", {"client": 1}), ("release", {"count": 3}),
    ("finish_fail", {"how": "exception"}), ("attach", {"process": 0}),
)]


SPELLINGS = [{"op": "servers", "count": 1}, *steps(
    ("attach", {"process": 0}), ("release", {"count": 1}), ("attach", {"process": 0, "spelling": 1}),
    ("attach", {"process": 0, "spelling": 3}), ("release", {"count": 1}), ("finish_ok", {"how": "complete"}),
)]

REFUSALS = [{"op": "servers", "count": 2}, *steps(
    ("attach", {"process": 0}), ("release", {"count": 1}),
    *(("intrude", {"process": i % 2, "which": i}) for i in range(4)), ("finish_ok", {"how": "complete"}),
    ("intrude", {"process": 1, "which": 0}),  # a finished task is refused alike
)]


@pytest.mark.parametrize(
    "program", [KILL_AND_RESTART, SIGTERM_OPEN_STREAMS, BAD_REQUESTS, LEAVERS, RECONNECT, CROWD, REFUSALS,
                SPELLINGS],
    ids=["kill_and_restart", "sigterm_open_streams", "bad_requests", "leavers", "reconnect", "crowd",
         "refusals", "spellings"],
)
def test_the_reference_holds_every_observable_clause(sut_adapter, program):
    history, results, logs = run(sut_adapter, program)
    failed = {c: [v.explanation for v in r.violations]
              for c, r in results.items() if r.verdict is Verdict.FAIL}
    assert not failed, (failed, logs)
    assert history.is_complete
    assert results["W1"].verdict is Verdict.PASS or program is BAD_REQUESTS
    if program is CROWD:
        # The server's limit is 6 (the adapter's http_settings): of 11 clients there, 5 are refused.
        assert results["W1"].examined == {"stream requests": 12, "refusals under load": 5}, results["W1"]
    if program is BAD_REQUESTS:
        assert results["W4"].examined == {"bad requests": 16}, results["W4"]
    if program is SPELLINGS:
        # Three names of one row: one run, and each client gets every event from its join on.
        assert len([r for r in history.records if r.kind == "process_enter"]) == 1
        assert results["S2"].examined["clients"] == 3, results["S2"]
    if program is REFUSALS:
        # Each of the reference adapter's four refused requests, for the task and a missing one.
        assert results["W7"].verdict is Verdict.PASS and results["W7"].examined["refused requests"] == 10
    if program is RECONNECT:
        assert results["W5"].verdict is Verdict.PASS and results["W5"].examined["resumed streams"] == 2




def test_verify_over_http_passes_and_replaces_the_previous_reports(sut_adapter, tmp_path, capsys):
    import json

    from streamspec.cli import main

    out = tmp_path / "reports"
    out.mkdir()
    (out / "S4.md").write_text("a stale report of an earlier run")
    code = main(["verify", "--sut", sut_adapter.name, "--mode", "http", "--profile", "dev", "--seed", "0",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert not (out / "S4.md").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "http" and summary["exit_code"] == 0
    assert {row["clause"]: row["verdict"] for row in summary["clauses"]}["S1"] == "unknown"
    assert "over HTTP" in printed and f"reports: {out}" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]  # no temporary folder left beside it
