"""The history model: record validation, history shape checks, JSON round-trip and the queries."""

from __future__ import annotations

import json

import pytest

from harness.history import (
    FORMAT,
    HARNESS,
    KINDS,
    RECORD_TYPES,
    VERSION,
    Complete,
    Deliver,
    History,
    HistoryError,
    Invoke,
    PersistedTask,
    ProcessExit,
    RunEnd,
    Send,
    Snapshot,
    StreamEnd,
    WireError,
)
from tests.histories import Scenario, attached, failure, happy_path, restart, seed_issue_1, wire_happy

CANNED = {
    "happy_path": happy_path,
    "seed_issue_1": seed_issue_1,
    "restart": restart,
    "failure": failure,
    "seed_hang": lambda: seed_issue_1("hang"),
    "cut_short": lambda: happy_path(end=False),
    "sent_sends": lambda: sent_sends(),
    "wire": wire_happy,
    "wire_errors": lambda: wire_with_errors(),
}


def wire_with_errors() -> History:
    s = Scenario()
    attached(s)
    s.add(WireError, "p0", client="c1", problem="not UTF-8")
    return s.end("hang", ["c1"])


def sent_sends() -> History:
    """Sends whose completion is recorded: event 1's returned, event 2's was cut short."""
    s = Scenario()
    s.create("T1", "obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    s.send("T1")
    s.sent("T1", 1)
    s.send("T1")
    return s.end("hang")


# -- records -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Complete(index=0, time=0.0, process="p0", op_id="op1", status="maybe"),
        lambda: ProcessExit(index=0, time=0.0, process="p0", task="T1", obj="obj1", outcome="gone"),
        lambda: StreamEnd(index=0, time=0.0, process="p0", client="c1", reason="bored"),
        lambda: RunEnd(index=0, time=0.0, process=HARNESS, reason="tired"),
        lambda: Invoke(index=0, time=0.0, process="p0", op_id="op1", op="explode", task=None),
        lambda: PersistedTask(status="half-done"),
    ],
    ids=["status", "outcome", "stream-end", "run-end", "op", "persisted"],
)
def test_records_reject_values_outside_their_vocabulary(make):
    with pytest.raises(HistoryError):
        make()


def test_records_are_frozen():
    send = Send(index=0, time=0.0, process="p0", task="T1", seq=1, event_type="start")
    with pytest.raises(AttributeError):
        send.seq = 2  # type: ignore[misc]


def test_every_kind_is_registered_once():
    assert set(KINDS.values()) == set(RECORD_TYPES)
    assert len(KINDS) == len(RECORD_TYPES)


# -- shape validation ----------------------------------------------------------------------------


def _send(index: int, time: float = 0.0) -> Send:
    return Send(index=index, time=time, process="p0", task="T1", seq=index + 1, event_type="progress")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([_send(1)], "has index 1"),
        ([_send(0, time=2.0), _send(1, time=1.0)], "back in time"),
        ([Complete(index=0, time=0.0, process="p0", op_id="op9", status="ok")], "without a pending invoke"),
        ([RunEnd(index=0, time=0.0, process=HARNESS, reason="done"), _send(1)], "not the last record"),
    ],
    ids=["index", "time", "orphan-complete", "run-end-not-last"],
)
def test_malformed_histories_are_rejected(records, message):
    with pytest.raises(HistoryError, match=message):
        History(records)


def test_a_client_name_is_attached_once():
    s = Scenario()
    s.attach("c1", "T1", via="obj1")
    s.attach("c1", "T1", via="obj1")
    with pytest.raises(HistoryError, match="reused"):
        s.build()


def test_an_exit_needs_an_entry():
    s = Scenario()
    s.exit("T1", "obj1")
    with pytest.raises(HistoryError, match="never entered"):
        s.build()


# -- JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CANNED))
def test_json_round_trip(name):
    history = CANNED[name]()
    text = history.to_json()
    again = History.from_json(text)
    assert again == history
    assert again.to_json() == text  # stable: same history, same text


def test_json_covers_every_record_kind():
    kinds = {r.kind for name in CANNED for r in CANNED[name]()}
    assert kinds == set(KINDS)


def test_sent_records_round_trip_and_mark_when_a_send_completed():
    history = sent_sends()
    assert History.from_json(history.to_json()) == history
    first, second = history.sends("T1")[:2]
    assert history.sent_by(first) > first.index
    assert history.sent_by(second) == len(history.records)  # never returned: still in progress


def test_json_layout_is_stable_and_versioned():
    doc = json.loads(restart().to_json())
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    first = doc["records"][0]
    assert list(first)[:4] == ["index", "time", "process", "kind"]
    snap = next(r for r in doc["records"] if r["kind"] == "snapshot")
    assert list(snap["resources"]) == sorted(snap["resources"])
    assert snap["persisted"]["T1"] == {"status": "running", "error": None, "last_event_seq": 2}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "other", "version": VERSION, "records": []}, "not a"),
        ({"format": FORMAT, "version": VERSION + 1, "records": []}, "unsupported history version"),
        ({"format": FORMAT, "version": VERSION, "records": [{"kind": "teleport"}]}, "bad record"),
        ({"format": FORMAT, "version": VERSION, "records": [{"kind": "send", "index": 0}]}, "bad record"),
    ],
    ids=["format", "version", "kind", "fields"],
)
def test_from_json_rejects_foreign_documents(doc, message):
    with pytest.raises(HistoryError, match=message):
        History.from_json(json.dumps(doc))


# -- queries -------------------------------------------------------------------------------------


def test_operations_pair_invocations_with_completions():
    s = Scenario()
    pending = s.invoke("lookup", "T1")
    s.create("T1", "obj1")
    h = s.build()
    lookup, create = h.ops()
    assert (lookup.op_id, lookup.end, lookup.status) == (pending, None, None)
    assert (create.op, create.value, create.status) == ("create", "obj1", "ok")
    assert h.ops("create") == [create] and h.origin("obj1") == create and h.origin("obj9") is None


def test_a_run_ends_at_its_exit_or_at_the_crash_of_its_process():
    h = restart()
    first, second = h.runs("T1")
    crash = h.crashes()[0]
    assert (first.obj, first.process, first.end, first.outcome) == ("obj1", "p0", crash.index, "crashed")
    assert not first.finished and second.finished and second.process == "p1"
    assert h.runs_during("T1", crash.index + 1, None) == [second]
    assert h.runs_during("T1", 0, None, process="p1") == [second]


def test_a_run_without_exit_is_still_running():
    s = Scenario()
    s.enter("T1", "obj1")
    (run,) = s.build().runs("T1")
    assert run.end is None and run.active_at(10**6) and not run.finished


def test_sends_and_finish():
    h = seed_issue_1()
    assert [s.seq for s in h.sends("T1")] == [1, 2, 3, 4]
    assert h.latest_send_before("T1", 13).seq == 2
    assert h.latest_send_before("T1", 7) is None
    assert [s.seq for s in h.sends_between("T1", 9, 17)] == [3]
    finish = h.finish("T1")
    assert (finish.index, finish.outcome, finish.seq, finish.event_type) == (17, "ok", 4, "complete")


def test_finish_without_a_terminal_send_is_the_failing_exit():
    s = Scenario()
    s.enter("T1", "obj1")
    s.send("T1", "start")
    exit_index = s.exit("T1", "obj1", "error")
    finish = s.build().finish("T1")
    assert (finish.index, finish.outcome, finish.seq) == (exit_index, "error", None)
    synthesized = Deliver(
        index=9, time=9.0, process="p0", client="c1", task="T1", seq=None, event_type="error"
    )
    assert finish.is_terminal_delivery(synthesized)


def test_attachments_know_when_their_client_left():
    s = Scenario()
    s.attach("c1", "T1", via="obj1")
    s.attach("c2", "T1", via="obj1")
    s.attach("c3", "T1", via="obj1")
    leave = s.detach("c1")
    s.call("attach", "T1", status="fail", error="refused", client="c4", via="obj1")
    crash = s.crash("p0", clients=["c2"])
    h = s.build()
    by_client = {a.client: a for a in h.attachments()}
    assert set(by_client) == {"c1", "c2", "c3"}  # a failed attach is not a client
    assert by_client["c1"].left_at == leave.invoke and by_client["c1"].closed_at == leave.invoke + 1
    assert by_client["c2"].left_at == crash and by_client["c2"].stream_end.reason == "crashed"
    assert by_client["c3"].left_at == crash  # no stream end recorded, but its process is gone
    assert [a.client for a in h.attached_at("T1", leave.invoke - 1)] == ["c1", "c2", "c3"]
    assert [a.client for a in h.attached_at("T1", leave.invoke)] == ["c2", "c3"]
    assert h.attached_at("T1", crash) == []


def test_how_a_run_ended():
    assert happy_path().is_complete
    cut = happy_path(end=False)
    assert not cut.is_complete and cut.run_end is None
    hung = seed_issue_1("hang")
    assert not hung.is_complete and hung.stuck("c2") and not hung.stuck("c1")


def test_processes_tasks_and_snapshots():
    h = restart()
    assert h.processes() == ["p0", "p1"]  # the harness is not a simulated process
    assert h.tasks() == ["T1"]
    assert [s.process for s in h.snapshots()] == ["p1", "p1"]
    snap, row = h.persisted("T1")
    assert isinstance(snap, Snapshot) and row.status == "completed"
    assert h.crash_index("p0") == h.crashes()[0].index and h.crash_index("p1") is None
    assert h.of_kind(Send)[0].seq == 1 and len(h) == h.last_index + 1 and h[0].index == 0
