"""The scenario generators (issue 4): programs, replay, the families' state machines, verify.

Fast tests use explicit programs or the ``dev`` profile. ``test_ci_profile_verdicts`` runs the
``ci`` profile against upstream (minutes): it must find the listed clauses, each shrunk to at most 8
operations. Against the reference it runs the profile STREAMSPEC_PROFILE selects (``ci`` if unset)
and must find nothing. Both sides always assert.
"""

from __future__ import annotations

import json

import pytest

from harness.choice import RandomChoices, TapeChoices
from harness.spec import CLAUSES, MAX_CLIENT_BUFFER
from scenarios import (
    FAMILIES,
    PROFILES,
    REGRESSIONS,
    Failure,
    op_count,
    profile_from_env,
    replay,
    run_program,
    search_program,
    validate_program,
    verify,
)

SEED = 20240601
ACCEPTANCE = ("S1", "S2", "S3", "S4", "S6", "S7", "S8.2")
"""Clauses the ci profile must find against upstream 0.2.1 (issue 4's acceptance; S8.2 since the
slow_readers family)."""


# -- explicit regression programs ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_program(sut_adapter, name):
    """The seed's flow and the lookup-versus-start race, with their interleavings searched."""
    regression = REGRESSIONS[name]
    found = search_program(sut_adapter, regression.program, max_examples=100, seed=SEED)
    if sut_adapter.name == "upstream":
        if not regression.upstream:
            assert found is None, found.outcome.explain()
            return
        assert found is not None, f"{name}: no interleaving failed {sorted(regression.upstream)}"
        assert set(found.clauses) & regression.upstream, found.outcome.explain()
        replayed = run_program(sut_adapter, regression.program, TapeChoices(found.outcome.tape))
        assert replayed.history.to_json() == found.outcome.history.to_json()
        return
    assert found is None, f"{name} failed on {sut_adapter.name}:\n{found.outcome.explain()}"


def test_lookup_vs_start_race_is_a_concurrent_group():
    """The race program names no ordering: one group, the scheduler decides."""
    program = REGRESSIONS["lookup_vs_start"].program
    assert [s["op"] for s in program] == ["create", "concurrently"]
    assert {s["op"] for s in program[1]["steps"]} == {"start", "lookup"}


# -- programs and replay ---------------------------------------------------------------------------


PROGRAM = [
    {"op": "create", "process": 0},
    {"op": "attach", "obj": 0, "process": 0},
    {"op": "concurrently", "steps": [
        {"op": "start", "obj": 0, "process": 0},
        {"op": "lookup", "task": 0, "process": 0},
        {"op": "release", "task": 0},
    ]},
    {"op": "reload", "task": 0, "process": 0},
    {"op": "attach", "obj": 2, "process": 0},
    {"op": "spawn"},
    {"op": "lookup", "task": 0, "process": 1},
    {"op": "finish_ok", "task": 0},
]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_program_replays_byte_for_byte(sut_adapter, seed):
    outcome = run_program(sut_adapter, PROGRAM, RandomChoices(seed))
    assert op_count(PROGRAM) == 10
    failure = Failure(clause="S2", family="explicit", seed=seed, program=PROGRAM, tape=outcome.tape,
                      outcome=outcome, examples_to_first=1, seconds_to_first=0.0, sut=sut_adapter.name)
    again = replay(failure, adapter=sut_adapter)
    assert again.history.to_json() == outcome.history.to_json()
    # Through JSON, as a report stores it.
    restored = Failure.from_dict(json.loads(json.dumps(failure.to_dict())), adapter=sut_adapter)
    assert restored.outcome.history.to_json() == outcome.history.to_json()
    assert restored.to_dict() == failure.to_dict()


def test_state_machine_examples_replay_byte_for_byte(sut_adapter):
    """The tape of a state-machine example holds every decision of the example: replaying its
    program with it gives the same history."""
    seen = []
    verify(sut_adapter, families=["restarts"], profile="dev", seed=SEED, clauses={"S8.2"},
           on_example=lambda family, program, outcome: seen.append((program, outcome)))
    assert len(seen) >= 20
    multi_step = [(p, o) for p, o in seen if len(p) >= 3 and len(o.tape) > 0][:8]
    assert multi_step, "no example with several steps and scheduling decisions"
    for program, outcome in multi_step:
        again = replay({"program": program, "tape": outcome.tape.to_dict(), "sut": sut_adapter.name,
                        "max_steps": PROFILES["dev"].max_steps}, adapter=sut_adapter)
        assert again.history.to_json() == outcome.history.to_json(), json.dumps(program)


# -- families and statistics -----------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_runs_alone(sut_adapter, family):
    result = verify(sut_adapter, families=[family], profile="dev", seed=SEED, clauses={"S8.2"})
    assert set(result.examples) == {family}
    # Its share of the profile, unless it found the clause it looked for first (slow_readers finds
    # S8.2 in upstream within a few examples).
    share = int(PROFILES["dev"].max_examples * min(FAMILIES[family].budget, 1.0)) // 2
    assert result.examples[family] >= share or result.clauses["S8.2"].verdict == "fail", result.examples
    assert result.stats["interleavings_per_family"][family] > 1
    assert result.clauses["S8.2"].verdict in ("pass", "fail")


def test_stats_and_result_shape(sut_adapter):
    result = verify(sut_adapter, families=["joins", "completion"], profile="dev", seed=SEED,
                    clauses={"S8.2"})
    assert result.sut == sut_adapter.name and result.profile == "dev" and result.seed == SEED
    assert list(result.clauses) == [c.id for c in CLAUSES]
    stats = result.stats
    for key in ("examples", "examples_per_family", "examples_per_second", "interleavings",
                "operation_pairs", "sequential_pairs", "concurrent_pairs", "violations_by_clause",
                "verdicts_by_clause", "run_ends", "failures"):
        assert key in stats, key
    assert stats["examples"] == sum(result.examples.values()) > 0
    assert stats["examples_per_second"] > 0
    assert stats["operation_pairs"] == len(stats["sequential_pairs"]) + len(stats["concurrent_pairs"])
    assert stats["concurrent_pairs"], "no concurrent group was explored"
    assert set(stats["violations_by_clause"]) == {c.id for c in CLAUSES}
    # Only S8.2 was searched for: the others are not judged as results.
    assert all(s.verdict == "unknown" for c, s in result.clauses.items() if c != "S8.2")
    json.dumps(result.to_dict())


def test_verify_is_deterministic_for_a_seed(sut_adapter):
    runs = [verify(sut_adapter, families=["reloads"], profile="dev", seed=SEED) for _ in range(2)]
    a, b = (r.to_dict() for r in runs)
    for run in (a, b):
        run.pop("seconds")
        run["stats"].pop("examples_per_second")
        for summary in run["clauses"].values():
            for failure in [summary["failure"], *summary["variants"].values()]:
                if failure:
                    failure.pop("seconds_to_first")
        for failure in run["stats"]["failures"].values():
            failure.pop("seconds_to_first")
    assert a == b


def test_profiles_and_env(monkeypatch):
    assert set(PROFILES) == {"dev", "ci", "thorough"}
    assert PROFILES["dev"].max_examples < PROFILES["ci"].max_examples < PROFILES["thorough"].max_examples
    monkeypatch.setenv("STREAMSPEC_PROFILE", "thorough")
    assert profile_from_env() == "thorough"
    monkeypatch.delenv("STREAMSPEC_PROFILE")
    assert profile_from_env() == "dev"
    monkeypatch.setenv("STREAMSPEC_PROFILE", "nope")
    with pytest.raises(ValueError):
        profile_from_env()


def test_unknown_names_are_refused(sut_adapter):
    with pytest.raises(ValueError):
        verify(sut_adapter, families=["nope"], profile="dev")
    with pytest.raises(ValueError):
        verify(sut_adapter, profile="nope")
    with pytest.raises(ValueError):
        verify(sut_adapter, profile="dev", clauses={"S99"})


# -- the acceptance run ----------------------------------------------------------------------------


@pytest.mark.acceptance
@pytest.mark.timeout(3600)
def test_ci_profile_verdicts(sut_adapter):
    """ci against upstream finds S1, S2, S3, S4 across two processes, S6, S7 and S8.2, each shrunk to
    at most 8 operations besides its family's opening.
    The reference must pass the same search: the ci profile, or the one
    STREAMSPEC_PROFILE selects (the tox factor; dev keeps the default run fast)."""
    lines = []
    if sut_adapter.name != "upstream":
        profile = profile_from_env(default="ci")
        result = verify(sut_adapter, profile=profile, seed=SEED, progress=lines.append)
        failed = {c: s.failure.to_dict() for c, s in result.clauses.items() if s.verdict == "fail"}
        assert not failed, (f"{sut_adapter.name} failed the {profile} profile:\n" + "\n".join(lines)
                            + "\n" + json.dumps(failed, indent=1))
        assert sum(result.examples.values()) >= PROFILES[profile].max_examples
        return
    result = verify(sut_adapter, profile="ci", seed=SEED, progress=lines.append)
    summary = "\n".join(lines)
    for clause in ACCEPTANCE:
        assert result.clauses[clause].verdict == "fail", f"{clause} not found\n{summary}"
    s4_across = result.clauses["S4"].variants.get("S4:processes")
    assert s4_across is not None, f"S4 across two processes not found\n{summary}"
    # Two processes entered process() (the program may name one: a restart makes the other).
    entered = {r.process for r in s4_across.outcome.history.records if r.kind == "process_enter"}
    assert len(entered) >= 2, (entered, s4_across.program)
    for clause in ACCEPTANCE:
        failure = result.clauses[clause].failure
        # A family's opening steps (the takeovers family starts with a running task in one of three
        # processes) are fixed: shrinking is judged on the rest.
        fixed = len(FAMILIES[failure.family].opening)
        assert failure.operations - fixed <= 8, (clause, failure.program)
        again = replay(failure, adapter=sut_adapter)
        assert again.history.to_json() == failure.outcome.history.to_json()
        assert again.verdict(clause) == "fail"
    assert s4_across.operations <= 8, s4_across.program


STALLED_UNDER_A_FLOOD = [
    {"op": "create", "process": 0},
    {"op": "attach", "obj": 0, "process": 0},
    {"op": "start", "obj": 0, "process": 0},
    {"op": "stall", "client": 0},
    {"op": "release", "task": 0, "count": 12},
]


def test_a_stalled_client_under_a_flood_is_judged_by_s8_2(sut_adapter):
    outcome = run_program(sut_adapter, STALLED_UNDER_A_FLOOD)
    stall = next(r for r in outcome.history.records if getattr(r, "op", None) == "stall")
    assert stall.args == {"client": "c1"}
    assert outcome.verdict("S8.2") in ("pass", "fail")  # judged: the snapshot reports buffer sizes
    if sut_adapter.name == "reference":
        assert outcome.verdict("S8.2") == "pass"
        ends = [r for r in outcome.history.records if r.kind == "stream_end"]
        assert [(e.client, e.reason) for e in ends] == [("c1", "overflow")]  # dropped, openly


@pytest.mark.parametrize("count", [0, 2 * MAX_CLIENT_BUFFER + 1, "3", True, 1.5])
def test_a_release_count_out_of_range_is_refused(count):
    limit = 2 * MAX_CLIENT_BUFFER
    with pytest.raises(ValueError, match=f"release count must be an integer from 1 to {limit}"):
        validate_program([{"op": "create", "process": 0}, {"op": "release", "task": 0, "count": count}])


class _Documents:
    """An adapter stand-in that documents a client-buffer bound (or none)."""

    name = "documents"

    def __init__(self, limit):
        self._limit = limit

    def buffer_limit(self):
        return self._limit


@pytest.mark.parametrize(("limit", "burst"), [
    (None, MAX_CLIENT_BUFFER + 16),  # no bound of its own: past the spec's
    (0, MAX_CLIENT_BUFFER + 16),
    (2, 18),                         # the reference under the harness
    (100, 200),
    (MAX_CLIENT_BUFFER - 1, MAX_CLIENT_BUFFER + 16),
    (MAX_CLIENT_BUFFER, MAX_CLIENT_BUFFER + 16),
    (10 * MAX_CLIENT_BUFFER, MAX_CLIENT_BUFFER + 16),
])
def test_a_burst_goes_past_the_documented_bound_and_never_past_the_specs(limit, burst):
    from scenarios.floods import burst_size

    assert burst_size(_Documents(limit)) == burst
    assert burst_size(object()) == MAX_CLIENT_BUFFER + 16  # an adapter without the hook



@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_a_run_without_call_stacks_is_the_same_run(sut_adapter, name):
    """The search captures no call stacks (only reports read them): a report replays its failure
    with them, which is only sound if the run, and its history, are the same either way."""
    program = REGRESSIONS[name].program
    tape = run_program(sut_adapter, program, RandomChoices(7)).tape
    with_stacks = run_program(sut_adapter, program, TapeChoices(tape))
    without = run_program(sut_adapter, program, TapeChoices(tape), capture_stacks=False)
    assert without.stacks is None
    assert with_stacks.stacks is not None and with_stacks.stacks.runs
    assert without.history == with_stacks.history
