"""The wire clauses' checkers (W1-W7): each catches a planted bug in a history recorded over the
wire, passes a correct one, and is UNKNOWN (never PASS) on a history that was not recorded over the
wire. And the S clauses a wire history cannot show are UNKNOWN there, never PASS."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import spec
from harness.checkers import UNOBSERVABLE, WIRE_CHECKERS, check_wire
from harness.checkers.base import Verdict
from harness.history import HARNESS, Connections, History, Response, WireError
from tests.histories import GOOD_HEAD, Scenario, attached, happy_path, op_index, refused, wire_happy


def w1_not_an_event_stream() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    s.call("create", None, value="T1")
    op = s.invoke("attach", "T1", at="p0", client="c1", via=None)
    head = s.add(Response, "p0", client="c1", status=200, headers={"content-type": "application/json"},
                 after=0.01)
    s.complete(op, status="fail")
    return s.end(), (op_index(s, op), head)


def w1_head_held_back() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    s.call("create", None, value="T1")
    op = s.invoke("attach", "T1", at="p0", client="c1", via=None)
    head = s.add(Response, "p0", client="c1", status=200, headers=GOOD_HEAD, after=11.0)
    s.complete(op)
    return s.end(), (op_index(s, op), head)


def w1_cacheable() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    s.call("create", None, value="T1")
    op = s.invoke("attach", "T1", at="p0", client="c1", via=None)
    head = s.add(Response, "p0", client="c1", status=200, headers={"content-type": "text/event-stream"},
                 after=0.01)
    s.complete(op)
    return s.end(), (op_index(s, op), head)


def w1_refused_without_retry_after() -> tuple[History, tuple[int, ...]]:
    # Turned away, but not told when to come back: EventSource would retry at once, forever.
    s = Scenario()
    s.call("create", None, value="T1")
    op = s.invoke("attach", "T1", at="p0", client="c1", via=None)
    head = s.add(Response, "p0", client="c1", status=503, headers={"content-type": "text/plain"},
                 after=0.01)
    s.complete(op, status="fail")
    return s.end(), (op_index(s, op), head)


def test_a_refusal_under_load_with_retry_after_passes_w1():
    s = Scenario()
    s.call("create", None, value="T1")
    op = s.invoke("attach", "T1", at="p0", client="c1", via=None)
    s.add(Response, "p0", client="c1", status=503, headers={"content-type": "text/plain", "retry-after": "1"},
          after=0.01)
    s.complete(op, status="fail")
    result = WIRE_CHECKERS["W1"](s.end())
    assert result.verdict is Verdict.PASS and result.examined["refusals under load"] == 1, result


def w2_cut_event() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    s.call("create", None, value="T1")
    attached(s)
    bad = s.add(WireError, "p0", client="c1", problem="the stream ended in the middle of an event")
    s.end_stream("c1", "closed")
    return s.end(), (bad,)


def w3_open_after_end() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    s.call("create", None, value="T1")
    attached(s)
    s.enter("T1", "p0:obj1")
    end = s.broadcast("T1", "complete", to=["c1"]) + 1
    s.end_stream("c1")
    bad = s.add(WireError, "p0", client="c1", what="open_after_end", problem="still open 2 s after")
    return s.end(), (end, bad)


def w4_server_error() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    op = s.invoke("request", None, at="p0", client="r1", method="GET", path="/stream/a/B/-1", headers={})
    head = s.add(Response, "p0", client="r1", status=500, headers={}, after=0.01)
    s.complete(op)
    return s.end(), (op_index(s, op), head)


def w4_stream_for_a_delete() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    op = s.invoke("request", None, at="p0", client="r1", method="DELETE", path="/stream/a/B/1", headers={})
    head = s.add(Response, "p0", client="r1", status=200, headers=GOOD_HEAD, after=0.01)
    s.complete(op)
    return s.end(), (op_index(s, op), head)


def w4_hang() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    attached(s)
    op = s.invoke("request", None, at="p0", client="r1", method="GET", path="/stream/a/B/abc", headers={})
    s.complete(op, status="unknown", error="ReadTimeout")
    return s.end(), (op_index(s, op),)


def w6_hung_shutdown() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    attached(s)
    op = s.invoke("shutdown", None, at=HARNESS, process="p0")
    done = s.complete(op, value={"seconds": None})
    return s.end(), (done.invoke, done.complete)


def w6_connection_kept() -> tuple[History, tuple[int, ...]]:
    # A client that left, whose connection the server never let go (it did not watch for the
    # disconnect): still held when the harness counted.
    s = Scenario()
    attached(s)
    s.detach("c1", "T1")
    held = s.add(Connections, "p0", held=1, waited=2.0)
    return s.end(), (held,)


def test_w6_without_connection_counts_is_unknown():
    s = Scenario()
    attached(s)
    op = s.invoke("shutdown", None, at=HARNESS, process="p0")
    s.complete(op, value={"seconds": 0.3})
    result = WIRE_CHECKERS["W6"](s.end())
    assert result.verdict is Verdict.UNKNOWN and "connections after clients left" in result.notes[-1]


def _resumed(s: Scenario, after: int, header: bool = True) -> int:
    """c1 read events 1..`after`, dropped, and c2 reconnects for it; returns c2's attach index."""
    op = s.invoke("attach", "T1", at="p1", client="c2", via=None, resumes="c1", after_seq=after,
                  headers={"Last-Event-ID": str(after)} if header else {})
    s.add(Response, "p1", client="c2", status=200, headers=GOOD_HEAD, after=0.01)
    s.complete(op)
    return op_index(s, op)


def _dropped_after_two(s: Scenario) -> None:
    s.call("create", None, value="T1")
    attached(s)
    s.enter("T1", "p0:obj1")
    s.broadcast("T1", to=["c1"])
    s.broadcast("T1", to=["c1"])
    s.detach("c1", "T1")


def w5_duplicate_after_resume() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    _dropped_after_two(s)
    join = _resumed(s, 2)
    again = s.deliver("c2", "T1", 2)
    s.broadcast("T1", to=["c2"])
    return s.end(), (join, again)


def w5_gap_after_resume() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    _dropped_after_two(s)
    s.send("T1")
    join = _resumed(s, 2)
    s.send("T1")
    skipped = s.deliver("c2", "T1", 4)
    return s.end(), (join, skipped)


def w5_no_ids() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    _dropped_after_two(s)
    join = _resumed(s, 2, header=False)
    s.broadcast("T1", to=["c2"])
    return s.end(), (join,)


def w7_let_in() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    attached(s)
    event = 'event: progress\ndata: {"n": 1}\n\n'
    evidence = refused(s, "a tampered signature", (200, event), (404, "Task not found"))
    return s.end(), evidence


def w7_tells_the_task_exists() -> tuple[History, tuple[int, ...]]:
    # Refused, but 403 for a task that exists and 404 for one that does not: ids can be probed.
    s = Scenario()
    attached(s)
    op, head = refused(s, "no signature", (403, "Forbidden"), (404, "Task not found"))
    return s.end(), (op, head, head + 3)


def w7_no_way_to_refuse() -> tuple[History, tuple[int, ...]]:
    s = Scenario()
    attached(s)
    op = s.invoke("intrude", "T1", at="p0", how=None)
    s.complete(op, status="fail", error="the adapter names no request its implementation refuses")
    return s.end(), (op_index(s, op),)


WIRE_VIOLATIONS: list[tuple[str, Callable[[], tuple[History, tuple[int, ...]]], list[str]]] = [
    ("W1", w1_not_an_event_stream, ["client c1", "Content-Type 'application/json'"]),
    ("W1", w1_head_held_back, ["the head came 11.0 s after the request"]),
    ("W1", w1_cacheable, ["Cache-Control 'missing'"]),
    ("W1", w1_refused_without_retry_after, ["status 503", "Content-Type 'text/plain'"]),
    ("W2", w2_cut_event, ["client c1 could not read its stream", "middle of an event"]),
    ("W3", w3_open_after_end, ["client c1", "still open"]),
    ("W4", w4_server_error, ["GET /stream/a/B/-1", "answered 500, not 4xx"]),
    ("W4", w4_stream_for_a_delete, ["DELETE /stream/a/B/1", "answered 200"]),
    ("W4", w4_hang, ["GET /stream/a/B/abc", "no answer within the bound"]),
    ("W6", w6_hung_shutdown, ["p0 was still running 5 s after SIGTERM"]),
    ("W6", w6_connection_kept, ["p0 still held 1 connection(s) 2 s after every client had left"]),
    ("W5", w5_duplicate_after_resume, ["client c2 resumed T1 after event 2", "received event 2 again"]),
    ("W5", w5_gap_after_resume, ["its next event was 4: 3 lost"]),
    ("W5", w5_no_ids, ["none carried an id", "c2 could not resume"]),
    ("W7", w7_let_in, ["a tampered signature", "answered 200 and 32 characters", "not refused"]),
    ("W7", w7_tells_the_task_exists, ["can tell the task exists", "403", "404"]),
    ("W7", w7_no_way_to_refuse, ["no way to refuse a client"]),
]


@pytest.mark.parametrize(("clause", "make", "words"), WIRE_VIOLATIONS,
                         ids=[f"{c}-{m.__name__}" for c, m, _ in WIRE_VIOLATIONS])
def test_wire_checker_catches_planted_bug(clause, make, words):
    history, evidence = make()
    result = WIRE_CHECKERS[clause](History.from_json(history.to_json()))  # the records round-trip too
    assert result.verdict is Verdict.FAIL, result
    matching = [v for v in result.violations if all(w in v.explanation for w in words)]
    assert matching, [v.explanation for v in result.violations]
    assert matching[0].evidence == tuple(sorted(evidence)), matching[0]


def test_every_wire_clause_has_a_planted_bug():
    assert {c for c, _, _ in WIRE_VIOLATIONS} == {c.id for c in spec.WIRE_CLAUSES} == set(WIRE_CHECKERS)


def test_a_correct_wire_history_passes_every_wire_clause():
    results = {r.clause: r for r in check_wire(wire_happy())}
    for clause in WIRE_CHECKERS:
        assert results[clause].verdict is Verdict.PASS, results[clause]


def test_what_the_wire_cannot_show_is_unknown_never_pass():
    results = {r.clause: r for r in check_wire(wire_happy())}
    for clause in UNOBSERVABLE:
        assert results[clause].verdict is Verdict.UNKNOWN
        assert "not observable over the wire" in results[clause].notes[0]


@pytest.mark.parametrize("clause", sorted(WIRE_CHECKERS))
def test_wire_clauses_are_unknown_on_an_in_process_history(clause):
    result = WIRE_CHECKERS[clause](happy_path())
    assert result.verdict is Verdict.UNKNOWN
    assert "over the wire only" in result.notes[-1]


def test_a_refusal_that_echoes_the_path_is_the_same_answer_for_a_missing_task():
    s = Scenario()
    attached(s)
    refused(s, "an expired signature", (404, "No task at /stream/a/B/7"),
            (404, "No task at /stream/a/B/1000007"))
    assert WIRE_CHECKERS["W7"](s.end()).verdict is Verdict.PASS


def test_w7_without_refused_requests_is_unknown():
    s = Scenario()
    attached(s)
    result = WIRE_CHECKERS["W7"](s.end())
    assert result.verdict is Verdict.UNKNOWN and "no refused requests" in result.notes[-1]


def test_a_fault_excuses_a_broken_answer():
    # A server the harness killed cannot be blamed for the head it never finished.
    s = Scenario()
    op = s.invoke("attach", "T1", at="p0", client="c1", via=None)
    s.crash("p0")
    s.add(Response, "p0", client="c1", status=502, headers={}, after=0.01)
    s.complete(op, status="fail")
    result = WIRE_CHECKERS["W1"](s.end())
    assert result.verdict is not Verdict.FAIL, result


def test_a_clean_resume_passes_w5_and_s3():
    # Resuming after event 2 with event 3 sent meanwhile: 3 comes first, not the latest replayed
    # (S3 accepts it for a resuming client), and nothing twice.
    s = Scenario()
    _dropped_after_two(s)
    s.send("T1")
    _resumed(s, 2)
    s.deliver("c2", "T1", 3)
    s.broadcast("T1", to=["c2"])
    history = s.end()
    results = {r.clause: r for r in check_wire(history)}
    assert results["W5"].verdict is Verdict.PASS, results["W5"]
    assert results["S3"].verdict is Verdict.PASS, results["S3"]


def test_a_bad_last_event_id_may_be_ignored_but_never_answered_with_a_5xx():
    def answered(status: int) -> History:
        s = Scenario()
        op = s.invoke("request", None, at="p0", client="r1", method="GET", path="/stream/a/B/1",
                      headers={"Last-Event-ID": "abc"}, may_stream=True)
        s.add(Response, "p0", client="r1", status=status, headers=GOOD_HEAD, after=0.01)
        s.complete(op)
        return s.end()

    assert WIRE_CHECKERS["W4"](answered(200)).verdict is Verdict.PASS
    assert WIRE_CHECKERS["W4"](answered(400)).verdict is Verdict.PASS
    failed = WIRE_CHECKERS["W4"](answered(500))
    assert failed.verdict is Verdict.FAIL and "answered 500" in failed.violations[0].explanation
