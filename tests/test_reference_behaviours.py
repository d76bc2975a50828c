"""Each probe behaviour, lookup spelling and fault: a planted bug is caught, the reference passes.

The programs are fixed (the plain FIFO schedule); the mutants are those of `tests.mutants`, each
the bug an implementation we did not write could have for that behaviour.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.adapters import AdapterError, check_process
from harness.adapters.reference import ReferenceAdapter, ReferenceProcess
from scenarios.program import run_program
from tests.mutants import BY_NAME

CREATE, START = {"op": "create", "process": 0}, {"op": "start", "obj": 0, "process": 0}
ATTACH = {"op": "attach", "obj": 0, "process": 0}
RELEASE = {"op": "release", "task": 0}


def failed(program: list[dict[str, Any]], adapter: Any = None) -> list[str]:
    outcome = run_program(adapter or ReferenceAdapter(), program)
    return [r.clause for r in outcome.results if str(r.verdict) == "fail"]


CASES = [
    # (behaviour, program, the mutant that mishandles it, a clause it must then fail)
    ("return a value, no terminal event",
     [CREATE, ATTACH, START, RELEASE, {"op": "finish_ok", "task": 0, "how": "value"}],
     "no_terminal_without_complete", "S5"),
    ("return None, no terminal event",
     [CREATE, ATTACH, START, {"op": "finish_ok", "task": 0, "how": "none"}],
     "no_terminal_without_complete", "S5"),
    ("mark_completed called by the task",
     [CREATE, ATTACH, START, RELEASE, {"op": "finish_ok", "task": 0, "how": "mark_completed"}],
     "no_terminal_without_complete", "S5"),
    ("the task's own CancelledError",
     [CREATE, ATTACH, START, RELEASE, {"op": "finish_fail", "task": 0, "how": "cancelled"}],
     "own_cancellation_escapes", "S6"),
    ("a graceful shutdown mid-task",
     [{"op": "spawn"}, CREATE, START, RELEASE, {"op": "lookup", "task": 0, "process": 1},
      {"op": "attach", "obj": 1, "process": 1}, {"op": "shutdown", "process": 0}],
     "shutdown_fails_the_task", "S7.3"),
    ("a lookup spelled another way while the task runs",
     [CREATE, START, RELEASE, {"op": "lookup", "task": 0, "process": 0, "spelling": 1}],
     "lookup_keyed_on_raw_strings", "S1"),
]


@pytest.mark.parametrize(("behaviour", "program", "mutant", "clause"), CASES, ids=[c[0] for c in CASES])
def test_the_reference_handles_it_and_the_planted_bug_is_caught(behaviour, program, mutant, clause):
    assert failed(program) == [], behaviour
    with BY_NAME[mutant].patched():
        assert clause in failed(program), f"{mutant} not caught on: {behaviour}"


def test_a_base_exception_is_a_failure():
    program = [CREATE, ATTACH, START, RELEASE, {"op": "finish_fail", "task": 0, "how": "base_exception"}]
    outcome = run_program(ReferenceAdapter(), program)
    assert [r.clause for r in outcome.results if str(r.verdict) == "fail"] == []
    errors = [d for d in outcome.history.deliveries("c1") if d.event_type == "error"]
    assert errors, "the client was not told the task failed"


def test_a_burst_past_the_spec_bound_ends_a_stalled_client_with_a_notice():
    burst = {"op": "release", "task": 0, "count": 1040}
    program = [CREATE, ATTACH, START, {"op": "stall", "client": 0}, burst]
    outcome = run_program(ReferenceAdapter(), program)
    assert [r.clause for r in outcome.results if str(r.verdict) == "fail"] == []
    assert outcome.history.stream_end("c1").reason == "overflow"
    with BY_NAME["unbounded_buffers"].patched():
        assert "S8.2" in failed(program)


class StrictAdapter(ReferenceAdapter):
    """An implementation whose lookup accepts only the canonical spelling, and says so."""

    name = "strict"

    def new_process(self, name: str) -> ReferenceProcess:
        process = ReferenceProcess(name)
        lookup = process.lookup

        async def strict(app_label: str, model_name: str, pk: str) -> Any:
            if model_name != "ProbeTask" or pk != pk.lstrip("0"):
                return None  # a 404 for any other spelling: strict, not wrong
            return await lookup(app_label, model_name, pk)

        process.lookup = strict
        return process

    def spellings(self, app_label: str, model_name: str, pk: str) -> list[tuple[str, str, str]]:
        return [(app_label, model_name, pk)]


def test_an_implementation_with_other_spelling_rules_passes_when_its_adapter_says_so():
    program = [CREATE, START, RELEASE, {"op": "lookup", "task": 0, "process": 0, "spelling": 3}]
    assert failed(program, StrictAdapter()) == []

    class Unsaid(StrictAdapter):
        spellings = None  # the default rules: the harness tries spellings it refuses

    assert "S1" in failed(program, Unsaid())


def test_an_adapter_with_the_old_lookup_signature_is_refused_with_what_to_change():
    class Old:
        async def lookup(self, model: type, pk: Any) -> Any:
            return None

    with pytest.raises(AdapterError, match=r"lookup\(app_label, model_name, pk\)"):
        check_process(Old())
