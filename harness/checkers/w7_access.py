"""W7: a client the implementation is configured to refuse gets a 4xx and nothing of the task, the
same answer as for a task that does not exist; an implementation with no way to refuse fails."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import over_the_wire, requests_of
from harness.history import History, Invoke, Response

CLAUSE_ID = "W7"


def _answer(invoke: Invoke, head: Response) -> tuple[int, str]:
    """What a client can compare between two refusals: the status and the body, with the id of the
    task the path named blanked (an answer may echo the path)."""
    path = invoke.args["path"]
    body = (head.body or "").replace(path, "<path>")
    pk = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return head.status, body.replace(pk, "<id>") if pk else body


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    intrusions = [r for r in history.records if isinstance(r, Invoke) and r.op == "intrude"]
    if not intrusions:
        judge.cannot_tell("no refused requests were made (no intrude steps)")
        return judge.result()
    if any(r.args.get("how") is None for r in intrusions):
        judge.fail("the implementation offers no way to refuse a client: its adapter names no request "
                   "it refuses (refused_paths), so any client that can count ids reads every task",
                   next(r.index for r in intrusions if r.args.get("how") is None))
        return judge.result()
    answers: dict[tuple[str, bool], tuple[Invoke, Response]] = {}
    for invoke, head in requests_of(history, "intrude"):
        if head is None:
            continue  # no answer at all: W4's and W1's concern, not a leak
        judge.saw("refused requests")
        answers[(invoke.args["how"], invoke.args["missing"])] = (invoke, head)
        if not invoke.args["missing"] and not 400 <= head.status < 500:
            given = f" and {len(head.body)} characters of it" if head.body else ""
            judge.fail(f"a client with {invoke.args['how']} ({invoke.args['path']}) was answered "
                       f"{head.status}{given}, not refused with a 4xx", invoke.index, head.index)
    for (how, missing), (invoke, head) in answers.items():
        twin = answers.get((how, True))
        if missing or twin is None or not 400 <= head.status < 500:
            continue
        if _answer(invoke, head) != _answer(*twin):
            judge.fail(f"a client with {how} can tell the task exists: refused with {head.status} "
                       f"{head.body!r}, but {twin[1].status} {twin[1].body!r} for a task that does not",
                       invoke.index, head.index, twin[1].index)
    return judge.result()
