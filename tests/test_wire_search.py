"""The HTTP mode's search loop, on a fake run (no servers): what it keeps, shrinks, re-runs and
reports. The real thing runs in tests/test_wire_mode.py and in tox's verify-http env."""

from __future__ import annotations

import itertools

import pytest

import scenarios.wire as wire
from harness import spec
from harness.checkers.base import ClauseResult, Verdict
from harness.history import History

ALL = [c.id for c in (*spec.CLAUSES, *spec.WIRE_CLAUSES)]


def _results(failing: set[str]) -> list[ClauseResult]:
    return [ClauseResult(c, spec.clause(c).level, Verdict.FAIL if c in failing else Verdict.PASS)
            for c in ALL]


def _fake(judge):
    """A run_wire_program that judges a program with `judge(program) -> failing clauses`."""
    def run(adapter, sut, database_url, log_dir, program):
        return History([]), _results(judge(program)), {"p0": "log"}
    return run


def _two_servers_both_attached(program):
    """The fake bug: a client on the second server of two (as upstream's double run needs)."""
    return {"S4"} if any(s["op"] == "attach" and s["process"] == 1 for s in program) else set()


def test_a_failure_is_shrunk_and_reproduced(monkeypatch):
    monkeypatch.setattr(wire, "run_wire_program", _fake(_two_servers_both_attached))
    result = wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="ci", seed=3)
    failure = result.failures["S4"]
    # Shrunk to its essence: two servers and a client on the second, nothing else.
    assert failure.program == [{"op": "servers", "count": 2}, {"op": "attach", "process": 1}]
    assert (failure.reproduced, failure.reruns, failure.flaky, failure.shrunk) == (3, 3, False, True)
    assert result.verdict("S4") == "fail" and result.verdict("S2") == "pass"


def test_the_same_seed_draws_the_same_programs(monkeypatch):
    drawn: list[list[list[dict]]] = [[], []]
    for run in drawn:
        monkeypatch.setattr(wire, "run_wire_program", _fake(lambda p, run=run: run.append(p) or set()))
        wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="dev", seed=11)
    # The situations first, then the drawn programs: the same, in the same order, each time.
    assert drawn[0] == drawn[1] and drawn[0][:len(wire.SITUATIONS)] == wire.SITUATIONS
    assert len(drawn[0]) == len(wire.SITUATIONS) + wire.WIRE_PROFILES["dev"].max_examples


def test_every_situation_a_report_shows_is_run_whatever_the_draw(monkeypatch):
    # Each kind of situation has its program among the ones run first, so every report shows it.
    assert all(any(shows(p) for p in wire.SITUATIONS) for shows in wire.OBSERVED.values())
    monkeypatch.setattr(wire, "run_wire_program", _fake(lambda program: set()))
    result = wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="dev", seed=5)
    assert set(result.observations) == set(wire.OBSERVED)


def test_a_failure_that_does_not_come_back_is_flaky_never_a_pass(monkeypatch):
    calls = itertools.count()

    def sometimes(program):
        # The bug shows the first time its program runs, then only every other time.
        failing = _two_servers_both_attached(program)
        return failing if failing and next(calls) % 2 == 0 else set()

    monkeypatch.setattr(wire, "run_wire_program", _fake(sometimes))
    result = wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="ci", seed=3)
    if "S4" in result.failures:
        failure = result.failures["S4"]
        assert failure.flaky and failure.reproduced < failure.reruns
        assert result.verdict("S4") == "fail"
    else:
        pytest.fail(f"the failure was lost: {result.verdicts.get('S4')}")


def test_a_clause_failing_beside_another_keeps_its_evidence(monkeypatch):
    shown = itertools.count()

    def both(program):
        # W1 fails once only, beside S4's first failure: no later round finds it again, yet its
        # FAIL must come with the example that showed it.
        failing = _two_servers_both_attached(program)
        return failing | {"W1"} if failing and next(shown) == 0 else failing

    monkeypatch.setattr(wire, "run_wire_program", _fake(both))
    result = wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="ci", seed=3,
                              clauses={"S4", "W1"})
    assert set(result.failures) == {"S4", "W1"}
    assert result.failures["S4"].shrunk and not result.failures["W1"].shrunk
    assert result.failures["W1"].program and result.failures["W1"].flaky  # it never came back


def test_only_the_clauses_asked_for_are_searched(monkeypatch):
    monkeypatch.setattr(wire, "run_wire_program", _fake(_two_servers_both_attached))
    result = wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="ci", seed=3,
                              clauses={"W4"})
    assert result.failures == {}


def test_the_search_keeps_an_example_of_each_kind_of_fault(monkeypatch):
    monkeypatch.setattr(wire, "run_wire_program", _fake(lambda program: set()))
    result = wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="ci", seed=3)
    assert result.observations and set(result.observations) <= set(wire.OBSERVED)
    for kind, (program, _) in result.observations.items():
        assert wire.OBSERVED[kind](program), (kind, program)


def test_a_client_timeline_tells_what_each_client_saw():
    from harness.wire.timeline import client_timeline
    from tests.histories import wire_happy

    lines = client_timeline(wire_happy())
    assert [line.split("s  ", 1)[1] for line in lines] == [
        "c1: attach on p0",
        "c1 on p0: HTTP 200 text/event-stream; charset=utf-8 after 0.010s",
        "p0: process() of T1 begins",
        "c1: progress #1",
        "c1: complete #2",
        "c1: stream ended (terminal)",
        "r1 on p0: HTTP 400  after 0.010s",
        "r15: a request with no signature on p0",
        "r15 on p0: HTTP 404  after 0.010s",
        "r18: a request with no signature for a task that does not exist on p0",
        "r18 on p0: HTTP 404  after 0.010s",
    ]


def test_a_server_that_does_not_start_stops_the_search_with_its_reason(monkeypatch):
    from harness.errors import ConfigError

    calls = []

    def broken(adapter, sut, database_url, log_dir, program):
        calls.append(program)
        raise ConfigError("server p0 (serve) exited with code 3 before answering /health:\nno such command")

    monkeypatch.setattr(wire, "run_wire_program", broken)
    with pytest.raises(ConfigError, match="exited with code 3"):
        wire.search_wire(None, "fake", "sqlite://", "/nonexistent", profile="ci", seed=3)
    assert len(calls) == 1  # not shrunk as if it were a failure of the implementation


class _Calls:
    """A stand-in `WireRun` that notes each call; what it returns can be awaited or not."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, args))
            return _Done()

        return call


class _Done:
    def __await__(self):
        return iter(())


def test_every_wire_step_is_performed_by_the_code_a_script_shows():
    import asyncio

    from hypothesis import given, settings

    from harness.errors import UsageError
    from harness.wire.steps import CALLS, call_of, describe, perform
    from scenarios.wire import wire_programs

    seen: set[str] = set()

    @settings(max_examples=200, database=None)
    @given(wire_programs(8))
    def walk(program):
        for step in program[1:]:
            seen.add(step["op"])
            assert describe(step)
            run = _Calls()
            asyncio.run(perform(run, "T1", step))
            shown = call_of(step)
            # The statements performed are the ones the script shows, call for call.
            assert [name for name, _ in run.calls] == [
                part.split("run.", 1)[1].split("(", 1)[0] for part in shown.split(";")], (step, shown)

    walk()
    assert seen == set(CALLS), "a step the search draws has no call, or a call no step uses"
    with pytest.raises(UsageError, match="unknown wire step"):
        call_of({"op": "teleport"})
