"""The streamspec specification as data: one `Clause` per requirement, in the order SPEC.md lists them.

SPEC.md is the document people read; this module is what the checkers, reports and tests read. The
clause table, the per-clause sections and what a client reads (`READ_KINDS`) of SPEC.md are rendered
from here (`python -m harness.spec` rewrites them between the GENERATED markers), and a test fails
if the two drift apart.

A requirement with a MUST part and a SHOULD part is split into two clauses (``S7`` and ``S7.2``) so
that a SHOULD failure is always reported as a SHOULD failure and never folded into a MUST pass.

Long: the bulk is the specification's own text, clause after clause, kept beside the code that
renders it into SPEC.md; split, one document would be scattered over modules that only make sense
together.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Level(StrEnum):
    """RFC 2119 requirement level. A MUST failure means non-conformance; a SHOULD failure is a
    deviation an implementation may justify, but it is still reported as a failure."""

    MUST = "MUST"
    SHOULD = "SHOULD"


class Severity(StrEnum):
    """How bad a violation is for users, independent of the level (used to order reports)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


HEAD_BOUND = 2.0
"""Seconds within which a stream request's response head must arrive (W1)."""
CLOSE_BOUND = 2.0
"""Seconds within which a stream must close after its terminal event (W3)."""
SHUTDOWN_BOUND = 5.0
"""Seconds a server may take to exit on SIGTERM (W6)."""
LEAVE_BOUND = 2.0
"""Seconds a server may take to close the connections of clients that left (W6)."""

MAX_CLIENT_BUFFER = 1024
"""Upper bound (events) on what any implementation may buffer for one client (S8.2). An
implementation documents its own bound, which must not exceed this one."""


@dataclass(frozen=True, slots=True)
class Clause:
    """One requirement of the specification."""

    id: str
    """``S<n>`` for a clause, ``S<n>.<m>`` for a sub-clause that splits off a part of ``S<n>``,
    ``W<n>`` for a wire clause (judged in the HTTP mode only)."""
    title: str
    level: Level
    severity: Severity
    requirement: str
    """The requirement in one sentence."""
    violation: str
    """What a checker counts as a violation."""
    rationale: str
    fix_hint: str
    judging: str
    """How the checker reads a history: concurrency windows, exemptions, what it cannot see."""
    needs_end: bool
    """True if judging a pass needs the end of the run (liveness): a history cut short by a bound
    or a hang then gives UNKNOWN instead of PASS. Violations seen in a prefix still count."""
    checker: str
    """Module under ``harness/checkers/`` that implements the clause's checker."""

    @property
    def parent(self) -> str | None:
        """The clause a sub-clause belongs to (``"S7"`` for ``"S7.2"``), None for a top-level one."""
        return self.id.split(".")[0] if "." in self.id else None

    @property
    def checker_path(self) -> str:
        return f"harness/checkers/{self.checker}.py"


CLAUSES: tuple[Clause, ...] = (
    Clause(
        id="S1",
        title="Identity",
        level=Level.MUST,
        severity=Severity.CRITICAL,
        requirement=(
            "While a task's process() runs in a process, every lookup of that task in the same process "
            "returns the very object executing process(), including a lookup that was already in flight "
            "when the task started, so a lookup never replaces the running instance."
        ),
        violation=(
            "A lookup whose invocation-to-completion window overlaps a run of the task in the lookup's "
            "process returns another object, returns nothing, or fails."
        ),
        rationale=(
            "Callers attach clients to whatever object a lookup returns. If that is not the running "
            "object, the client waits on an instance that never sends (issue #1), and a lookup that "
            "caches its own fresh copy over the running one makes every later lookup wrong too."
        ),
        fix_hint=(
            "Register the instance before process() is first awaited; a lookup that loaded the row "
            "re-checks the registry after its await and returns the registered instance instead of "
            "caching its own copy."
        ),
        judging=(
            "A lookup is constrained if, when it completes, a run of its task is active in the "
            "lookup's process; it must then return the object of a run that was active at some point "
            "between its invocation and its completion. A run that started during the lookup counts "
            "(the lookup raced with the start), one that ended during it frees the lookup to return a "
            "fresh object. Other lookups are unconstrained (identity only matters while the task runs; "
            "a lookup in another process cannot return the running object), and `reload` is not a "
            "lookup: it loads a fresh instance on purpose "
            "(S2 covers clients attached through it). Lookups that never completed, or completed with "
            "status unknown, are skipped."
        ),
        needs_end=False,
        checker="s1_identity",
    ),
    Clause(
        id="S2",
        title="No orphan clients",
        level=Level.MUST,
        severity=Severity.CRITICAL,
        requirement=(
            "A client attached through any instance of a task row (the created object, a looked-up "
            "one or a fresh load from the database, in any process) receives every event the task "
            "sends after its attach completed, and the terminal event."
        ),
        violation=(
            "A client misses an event sent after its attach completed, or the terminal event, although "
            "it had not detached, overflowed or lost its process first; or its stream was closed "
            "without a terminal event; or it received an event of another task."
        ),
        rationale=(
            "Applications obtain instances in many ways; if delivery depends on which Python object "
            "the client was attached through, some clients silently wait forever."
        ),
        fix_hint=(
            "Keep subscribers and the latest event in a per-task channel owned by the coordinator "
            "(keyed by model and primary key), not on the model instance; attaching through any "
            "instance registers with that channel."
        ),
        judging=(
            "An event is owed if it was sent after the attach completed and before the client left "
            "(detach invoked, stream ended with `detached`, `overflow` or `crashed`, or the client's "
            "process crashed). A client dropped with an overflow notice is excused the events it had "
            "not read either: they were discarded openly, and it can reconnect (S8.2). "
            "A missing owed event is a violation when the run ended `done`, when the "
            "run hung with the client listed as waiting, when the client's stream already ended, or "
            "when the client already received a later event; otherwise the result is UNKNOWN. The "
            "terminal event may arrive as the probe's terminal event or as a synthesized item read as "
            "`complete`, `error` or `final_state` (see \"What a client reads\")."
        ),
        needs_end=True,
        checker="s2_orphans",
    ),
    Clause(
        id="S3",
        title="Latest-event replay",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "A client that joins a task first receives the latest event sent before it joined (if "
            "any), then every later event in order, with no duplicate and no gap, however the join "
            "interleaves with sends."
        ),
        violation=(
            "A client's first event is neither the latest event sent before its attach was invoked "
            "nor one sent while the attach was in progress; or an event repeats, goes backwards or "
            "skips a number; or an event that was never sent arrives; or, in a finished run, the client "
            "never receives the latest event it joined after."
        ),
        rationale=(
            "Late joiners need the current state at once (progress, final result), and a stream that "
            "skips, repeats or reorders events cannot be rendered correctly."
        ),
        fix_hint=(
            "Under one per-task critical section, record the latest event and fan it out; an attach "
            "takes the same critical section to enqueue the latest event and register the client, so "
            "no send falls between the replay and the registration."
        ),
        judging=(
            "The attach takes effect at some point between its invocation and its completion, so the "
            "first event may be the latest event sent before the invocation or any event sent inside "
            "that window; if nothing was sent before the invocation, it may also be the first event "
            "sent after it. After that the probe's sequence numbers must go up by exactly one. Events "
            "sent by a process that crashed before the join need not be replayed here (that is S7.2, "
            "a SHOULD), but replaying them is allowed. Synthesized events (no sequence number) stand "
            "in for the latest event only when that event was the terminal one; other synthesized "
            "events, such as a keepalive read as an event, are ignored (an overflow notice is no "
            "delivery at all). Events missing after the last one a "
            "client received are reported by S2."
        ),
        needs_end=True,
        checker="s3_replay",
    ),
    Clause(
        id="S4",
        title="Single execution",
        level=Level.MUST,
        severity=Severity.CRITICAL,
        requirement=(
            "process() of a task never runs twice at the same time, across all processes sharing the "
            "database, and never runs again after a run of it finished."
        ),
        violation=(
            "Two runs of the same task overlap, or a run enters process() after an earlier run of the "
            "task returned or raised."
        ),
        rationale=(
            "Tasks have side effects (messages, payments, writes); a second run duplicates them and "
            "interleaves two event streams into one."
        ),
        fix_hint=(
            "Claim the row atomically in the database before running (a conditional update on its "
            "status) and check the in-process registry in the same step that registers the run."
        ),
        judging=(
            "A run lasts from its ProcessEnter to its ProcessExit; a run whose process crashed ends at "
            "the crash, which is not a finish (S7 governs resuming it). Runs without an exit are "
            "treated as still running at the end of the history."
        ),
        needs_end=False,
        checker="s4_single_execution",
    ),
    Clause(
        id="S5",
        title="Completion",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "When a task finishes, every client connected before the end receives the terminal event "
            "and nothing after it, and its stream ends; later joiners receive the final state; a "
            "completed task never runs again; and the coordinator forgets finished tasks."
        ),
        violation=(
            "A client connected before the end misses the terminal event, receives anything after it, "
            "or its stream never ends; a later joiner's first event is not the final state; a "
            "completed task enters process() again or is not persisted as completed; a client receives "
            "a terminal event or final state of a task that never finished (no terminal event sent, "
            "no run of process() returned or raised, no finished row)."
        ),
        rationale=(
            "Clients decide when to stop listening from the terminal event; without it they hang, and "
            "events after it contradict the result they already showed."
        ),
        fix_hint=(
            "Persist the final status with the terminal event before delivering it, deliver it, then "
            "close and drop the task's channel; answer later joiners from the persisted state."
        ),
        judging=(
            "The task finishes at its terminal event (the probe's `complete`/`error` send) or, if the "
            "implementation sent none, at the run's exit. The terminal event counts as received if the "
            "probe's terminal event or a synthesized item read as `complete`, `error` or `final_state` "
            "arrives. "
            "Persisted status is read from the last snapshot that reports the task. That the "
            "coordinator forgets finished tasks is judged by S8 from the resource counts."
        ),
        needs_end=True,
        checker="s5_completion",
    ),
    Clause(
        id="S6",
        title="Failure",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "A task whose process() raised is persisted as failed with its error, every client "
            "connected at the failure or joining later receives the error, and the task is not run "
            "again on its own. Raising includes any `BaseException` the task's own code raises "
            "(`asyncio.CancelledError` too), not a cancellation from outside (S7.3)."
        ),
        violation=(
            "After a run exited with an error, the last snapshot reporting the task does not say "
            "`failed` with a non-empty error; a client receives `complete` or no `error` event; or "
            "the task enters process() again."
        ),
        rationale=(
            "A failure that is not persisted looks like a task still pending, so it is re-run (with "
            "its side effects) or clients wait for a result that will never come."
        ),
        fix_hint=(
            "Catch the exception around process(), persist status and error, then deliver an `error` "
            "terminal event; have lookups and starts refuse rows that are already finished."
        ),
        judging=(
            "A task failed if its terminal event is `error` or a run exited with outcome `error`: the "
            "probe raised an exception, a `BaseException` that is not an `Exception`, or a "
            "`CancelledError` of its own while nothing had cancelled the run. "
            "Without any snapshot reporting the task after the failure the persisted part cannot be "
            "judged and the verdict is UNKNOWN."
        ),
        needs_end=True,
        checker="s6_failure",
    ),
    Clause(
        id="S7",
        title="Restart",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "After a process crashes and a new process starts over the same database, a task that had "
            "not finished resumes at most once, and a client that joins it afterwards never waits "
            "forever."
        ),
        violation=(
            "Between a crash and the next crash, an unfinished task enters process() more than once; "
            "or a client that joined after the crash is still waiting at the end of the run while the "
            "task is neither finished nor running."
        ),
        rationale=(
            "Deployments restart; a task must neither be duplicated by every process that notices it "
            "is unfinished nor leave new clients waiting on a run that no longer exists."
        ),
        fix_hint=(
            "On a lookup of an unfinished row with no live run, claim it in the database and resume "
            "it once, or end joiners' streams with the persisted state; never attach a client to a "
            "task that nothing will run."
        ),
        judging=(
            "Tasks are judged per crash: those that had not finished when the process crashed, whose "
            "process() was running there, or that it had been asked to start before process() began "
            "anywhere (its claim of the row may stand). A joiner is waiting if its stream never ended "
            "and it neither detached nor lost its own process. Resuming is allowed but not required."
        ),
        needs_end=True,
        checker="s7_restart",
    ),
    Clause(
        id="S7.2",
        title="Replay after restart",
        level=Level.SHOULD,
        severity=Severity.MEDIUM,
        requirement=(
            "The latest event of an unfinished task is persisted, so after a restart a joiner first "
            "receives the event that was latest before the crash."
        ),
        violation=(
            "A snapshot taken after the crash, before the task sent anything new, reports a persisted "
            "last event other than the latest one sent before the crash; or a client that joined after "
            "the crash, before the task sent anything new, receives something else first or nothing."
        ),
        rationale=(
            "Without it a client that reconnects after a deploy sees an empty progress view until the "
            "resumed task sends again. It is a SHOULD because it costs a database write per event."
        ),
        fix_hint=(
            "Store the latest event with the row (or write it behind at a bounded lag) and seed the "
            "channel's latest event from the row when it is loaded."
        ),
        judging=(
            "Only events sent by the process that crashed count, and only tasks that had not finished "
            "(a finished task's final state is S5). Once the task sends a new event after the restart, "
            "S3 governs the joiners instead."
        ),
        needs_end=True,
        checker="s7_2_restart_replay",
    ),
    Clause(
        id="S7.3",
        title="Graceful shutdown",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "A graceful shutdown (the process's coroutines cancelled, their clean-up allowed to run) "
            "interrupts the tasks running there without ending them: such a task is neither stored "
            "nor announced to any client as completed or failed because of the shutdown, and, as "
            "after a crash, it resumes at most once and no client that joins it afterwards waits "
            "forever."
        ),
        violation=(
            "After a shutdown interrupted a run of an unfinished task, the task's row is stored as "
            "completed or failed, or a client receives a terminal or final-state event of it, "
            "although no run of the task returned or raised."
        ),
        rationale=(
            "Servers are stopped gracefully on every deploy. A coordinator that stores the "
            "cancellation as the task's failure (or completion), or ends every client's stream with "
            "an error, throws away the work of each task that happened to run at deploy time and "
            "tells its users so; the task must continue in the next process instead. Ending the "
            "streams of the clients connected to the stopping process is right: they reconnect."
        ),
        fix_hint=(
            "Treat `asyncio.CancelledError` around process() as an interruption when the run was "
            "cancelled from outside (`asyncio.current_task().cancelling()` is non-zero): release the "
            "task's claim so another process may resume it at once, end the local streams, and "
            "re-raise; a CancelledError raised by the task's own code is a failure (S6)."
        ),
        judging=(
            "Per shutdown, the tasks with a run in the stopping process when the shutdown began that "
            "had not finished then. A finish is the probe's terminal event or a run that returned or "
            "raised; a run cancelled by the shutdown is neither. The stored status is read from the "
            "last snapshot that reports the task. Resuming and joiners after the shutdown are judged "
            "by S7, which treats a shutdown like a crash; clients attached in the stopping process "
            "leave at the shutdown (their streams end with `shutdown`)."
        ),
        needs_end=True,
        checker="s7_3_shutdown",
    ),
    Clause(
        id="S8",
        title="Hygiene",
        level=Level.MUST,
        severity=Severity.MEDIUM,
        requirement=(
            "Once every task in a process has finished and every client attached there has detached or "
            "ended, the process holds no coordinator entries, locks, in-flight loads or client queues."
        ),
        violation=(
            "The last snapshot of a live process, taken when no run was active there and all its "
            "clients were gone, reports a non-zero resource count."
        ),
        rationale=(
            "A coordinator lives as long as the server; anything it keeps per task or per client "
            "accumulates until the process runs out of memory."
        ),
        fix_hint=(
            "Remove per-task entries in a finally block when the run ends and the last client leaves; "
            "create locks and loads per use instead of caching them forever."
        ),
        judging=(
            "Every resource count in the snapshot counts, whatever the adapter names it. A crashed "
            "process is skipped (its memory is gone). If the last snapshot was taken while a run was "
            "still active or a client was still attached, the process cannot be judged (UNKNOWN)."
        ),
        needs_end=True,
        checker="s8_hygiene",
    ),
    Clause(
        id="S8.2",
        title="Bounded client buffers",
        level=Level.SHOULD,
        severity=Severity.MEDIUM,
        requirement=(
            "A client that stops reading cannot grow memory without bound: its buffer holds at most a "
            f"documented number of events, never more than {MAX_CLIENT_BUFFER}, and on overflow its "
            "stream ends with an overflow notice."
        ),
        violation=(
            f"A snapshot reports more than {MAX_CLIENT_BUFFER} undelivered events buffered for one "
            "client."
        ),
        rationale=(
            "One stalled browser tab must not be able to exhaust the server's memory. It is a SHOULD: "
            "the bound forces a policy that disconnects slow readers, which changes what they see, and "
            "buffer sizes are only visible white-box."
        ),
        fix_hint=(
            "Give each client a bounded queue; when it is full, empty it, send one overflow notice and "
            "detach the client, which can reconnect and resume from the latest event (S3)."
        ),
        judging=(
            "Read from the per-client buffer sizes snapshots report. The overflow policy must end the "
            "stream: silently dropping events would break S3, which S2, S3 and S5 do not excuse, "
            "whereas a stream ended with an overflow notice owes nothing afterwards. A history with "
            "clients but no reported buffer sizes is UNKNOWN."
        ),
        needs_end=False,
        checker="s8_2_bounded_buffers",
    ),
)

BY_ID: dict[str, Clause] = {c.id: c for c in CLAUSES}

WIRE_CLAUSES: tuple[Clause, ...] = (
    Clause(
        id="W1",
        title="Stream response head",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "A request for a task's stream is answered, within a bound and before the task's next "
            "event, with status 200, `Content-Type: text/event-stream` and `Cache-Control: no-cache` "
            "(or no-store), also for a task that already finished; a server at its limit of open "
            "streams may instead answer 503 with `Retry-After`."
        ),
        violation=(
            "A stream request of an existing task answered with another status (503 with "
            "Retry-After excepted) or content type, "
            "without a no-cache/no-store Cache-Control, or whose head arrived later than "
            f"{HEAD_BOUND:g} s after the request."
        ),
        rationale=(
            "A browser's EventSource fails on any other content type and never reads the body; "
            "proxies cache or buffer what is not marked; a head held back until the first event "
            "leaves the client unable to tell a slow task from a dead server."
        ),
        fix_hint=(
            "Send the head as soon as the client is attached (before waiting for an event), and send "
            "a finished task's final state as an SSE event, not as a JSON document."
        ),
        judging=(
            "Read from the Response records of clients' stream requests (HTTP mode only). Requests "
            "to a server the harness killed or stopped meanwhile are not judged."
        ),
        needs_end=False,
        checker="w1_headers",
    ),
    Clause(
        id="W2",
        title="Standard framing",
        level=Level.MUST,
        severity=Severity.MEDIUM,
        requirement=(
            "The body is an event stream a standard SSE parser reads: UTF-8, every event ended by a "
            "blank line, data an adapter can read."
        ),
        violation=(
            "A client's parser reports bytes that are not UTF-8, a stream that ends inside an event, "
            "or event data that is not JSON."
        ),
        rationale="What a standard client cannot parse is lost to it, silently.",
        fix_hint="Write each event as `event:`/`data:` lines and a blank line, in one write.",
        judging=(
            "Read from the WireError records the clients' parser (httpx-sse's decoder) leaves. An "
            "end inside an event after the harness killed the server is not judged."
        ),
        needs_end=False,
        checker="w2_framing",
    ),
    Clause(
        id="W3",
        title="A terminal event ends the stream",
        level=Level.MUST,
        severity=Severity.MEDIUM,
        requirement=(
            "After a terminal event (complete, error) or a finished task's final state, the server "
            "closes the stream within a bound."
        ),
        violation=(
            f"A client's stream was still open {CLOSE_BOUND:g} s after its terminal event, or it "
            "received events after it."
        ),
        rationale=(
            "A stream left open after the end holds a connection and a worker slot per browser, and "
            "EventSource reconnects when it finally drops, asking again for a finished task."
        ),
        fix_hint="Return from the response body once the terminal event has been written.",
        judging=(
            "The HTTP client keeps reading after a terminal event; the stream end it records (or its "
            "absence at the end of the run) is compared with the terminal delivery."
        ),
        needs_end=True,
        checker="w3_terminal_ends",
    ),
    Clause(
        id="W4",
        title="Bad requests are refused",
        level=Level.MUST,
        severity=Severity.HIGH,
        requirement=(
            "A malformed or hostile request (a non-integer, negative or huge id, an unknown app or "
            "model, a model that is not a stream task, path tricks, a wrong method) gets a 4xx "
            "answer within a bound: never a 5xx, never a hang, never a stream. A valid stream "
            "request with a bad Last-Event-ID may instead be served as if it had none (the header "
            "is a hint), but never with a 5xx or a hang."
        ),
        violation=(
            "A bad request answered with a 5xx or a 2xx (a bad Last-Event-ID: a 5xx), or not "
            "answered within the bound."
        ),
        rationale=(
            "Every 500 is a traceback in the logs and an alert; a hang holds a connection; a stream "
            "opened for a request that names nothing valid is a way in."
        ),
        fix_hint="Validate the path and headers before any lookup, and answer 400, 404 or 405.",
        judging=(
            "Read from the `request` operations the HTTP mode's scenarios send and their Response "
            "records."
        ),
        needs_end=False,
        checker="w4_bad_requests",
    ),
    Clause(
        id="W5",
        title="Resumption with Last-Event-ID",
        level=Level.SHOULD,
        severity=Severity.MEDIUM,
        requirement=(
            "Events carry ids, and a client that reconnects with `Last-Event-ID` (as EventSource does "
            "after a drop), on any server, receives every later event exactly once: no event it "
            "had, none missing."
        ),
        violation=(
            "A reconnected client receives an event it had already received, or its first event "
            "after the reconnection skips some; or the events carried no id to resume from."
        ),
        rationale=(
            "Connections drop (proxies, mobile networks, deploys); a browser reconnects by itself and "
            "shows what it receives: a duplicate is shown twice, a gap is lost."
        ),
        fix_hint=(
            "Give every event an increasing id, keep the task's events where every server can read "
            "them (the event log), and on Last-Event-ID send the ones after it before the live ones."
        ),
        judging=(
            "Reconnections are the HTTP mode's `reconnect` steps: the attach names the client it "
            "resumes and the last probe event that client read. A client that had read no event is "
            "not judged. A SHOULD: an implementation may have no way to resume, but it is reported."
        ),
        needs_end=False,
        checker="w5_resume",
    ),
    Clause(
        id="W6",
        title="Server resources are returned",
        level=Level.MUST,
        severity=Severity.MEDIUM,
        requirement=(
            f"On SIGTERM the server exits within {SHUTDOWN_BOUND:g} s, also with tasks running and "
            f"streams open; and once every client has left, within {LEAVE_BOUND:g} s it holds none "
            "of their connections."
        ),
        violation=(
            f"A server still running {SHUTDOWN_BOUND:g} s after SIGTERM (the harness then kills it), "
            f"or still holding connections {LEAVE_BOUND:g} s after the clients that opened them left."
        ),
        rationale=(
            "Every deploy sends SIGTERM; a server that waits out its streams delays the deploy. A "
            "server that never notices a client leave keeps its socket, its slot and its place in "
            "the task's fan-out, a leak per closed browser tab."
        ),
        fix_hint=(
            "End open streams when the server is told to stop, and let the task resume elsewhere; "
            "watch for the client's disconnect while streaming, and close the response when it comes."
        ),
        judging=(
            "Read from the shutdown operations' results (the seconds the server took, or none when "
            "it had to be killed) and from the Connections records: at the end of a run the harness "
            "closes every client and counts, from the kernel's TCP tables, the connections to each "
            "running server's port that the server side still holds (established or close-wait). "
            "Server memory is not judged. Where the kernel's tables cannot be read, the connections "
            "are not judged."
        ),
        needs_end=False,
        checker="w6_shutdown",
    ),
    Clause(
        id="W7",
        title="Access is refused where configured",
        level=Level.SHOULD,
        severity=Severity.HIGH,
        requirement=(
            "An implementation offers a way to refuse a client a task's stream (a signed URL, the "
            "project's authorisation), and a client it is configured to refuse gets a 4xx and no "
            "event, with the very answer it would get for a task that does not exist."
        ),
        violation=(
            "A refused request answered with anything but a 4xx or given any of the task's data; "
            "a refusal that differs from the answer for a missing task; or no way to refuse anyone "
            "at all (the adapter names no request the implementation refuses)."
        ),
        rationale=(
            "Task ids are sequential, and events carry application data (reports, users' "
            "progress): a stream anyone who can count can read leaks all of it, and a refusal "
            "that differs from \"not found\" still tells which tasks exist."
        ),
        fix_hint=(
            "Check the client's right before looking the task up (a signed, expiring stream URL "
            "for the standalone server; a per-model hook with the request's user for a Django "
            "view), and refuse with the answer a missing task gets."
        ),
        judging=(
            "The HTTP mode's `intrude` steps make each request the adapter's `refused_paths` names, "
            "for the task and for a task that does not exist, and keep each answer's status and "
            "the start of its body; the bodies are compared with the task ids blanked. A SHOULD: "
            "open access may be a deliberate choice, but it is reported."
        ),
        needs_end=False,
        checker="w7_access",
    ),
)
"""Clauses only a run over the wire can judge (`streamspec verify --mode http`)."""
# A statement, not part of BY_ID's definition: the standalone scripts (`streamspec.repro`) inline
# BY_ID for the S clause they judge and have no wire clauses.
BY_ID.update({c.id: c for c in WIRE_CLAUSES})


@dataclass(frozen=True, slots=True)
class ReadKind:
    """One kind of item a client reads from its stream, and what an item of that kind must convey."""

    name: str
    conveys: str
    ends_stream: bool


READ_KINDS: tuple[ReadKind, ...] = (
    ReadKind(
        "event",
        "One event the task sent, with the data the task gave it (where the harness finds the probe's "
        "sequence number). The latest event replayed to a joiner reads as the original did.",
        ends_stream=False,
    ),
    ReadKind(
        "complete",
        "The terminal event of a task that completed: it must tell a completion from a failure and "
        "carry the final value.",
        ends_stream=True,
    ),
    ReadKind(
        "error",
        "The terminal event of a task that failed: it must tell a failure from a completion and carry "
        "the error.",
        ends_stream=True,
    ),
    ReadKind(
        "final_state",
        "What a client joining a finished task may get instead of its terminal event: the task's final "
        "state. Read as this kind it does not say how the task ended, so it does not tell a failed "
        "task's joiners the error (S6): an implementation whose final state says it reads it as "
        "`complete` or `error`.",
        ends_stream=True,
    ),
    ReadKind(
        "overflow",
        "The client was dropped for falling behind: what it had not read was discarded and nothing "
        "more comes on this stream; it can reconnect and resume from the latest event (S3). It must "
        "not be mistaken for one of the task's events or for its terminal event.",
        ends_stream=True,
    ),
    ReadKind(
        "closed",
        "The stream ended without saying why. It excuses nothing: what the client was owed and did "
        "not get is still missing (S2, S5).",
        ends_stream=True,
    ),
)
"""What a client reads, kind by kind, in the order SPEC.md lists them (`harness.conventions` reads
an implementation's items into these kinds)."""

READING_INTRO = (
    "A client reads its stream one item at a time: in-process, what the implementation puts in its "
    "queue. The spec fixes what the items convey, not their shape: an adapter says how its "
    "implementation's items read (the optional hooks `classify` and `event_parts` of "
    "`harness.adapters.Adapter`). The reference's shape is the default: a dict with a `type` and the "
    "task's `data`, where the types `complete` and `error` are terminal events, `final_state` a final "
    "state, `overflow` the overflow notice and any other type one of the task's events. Every item is "
    "of one of these kinds:"
)
READING_OUTRO = (
    "An item read as `overflow` or `closed` ends the stream without being a delivery; the history "
    "records the others as deliveries, a terminal event as `complete` or `error` whatever the "
    "implementation calls it. How the items are read decides the verdicts: an overflow notice read as "
    "one of the task's events leaves the dropped client owed what followed (S2, S5), and one read as "
    "an `error` could stand in for a failure the client was never told of (S6)."
)


def clause(clause_id: str) -> Clause:
    """The clause with this ID; KeyError names the known IDs."""
    try:
        return BY_ID[clause_id]
    except KeyError:
        raise KeyError(f"unknown clause {clause_id!r}; known: {', '.join(BY_ID)}") from None


# -- SPEC.md rendering ---------------------------------------------------------------------------

BEGIN_MARK = "<!-- BEGIN GENERATED from harness/spec.py: edit there, then run `python -m harness.spec` -->"
END_MARK = "<!-- END GENERATED -->"
SPEC_MD = Path(__file__).resolve().parent.parent / "SPEC.md"


def _heading(c: Clause) -> str:
    return f"{c.id} {c.title} ({c.level}, {c.severity})"


def _anchor(c: Clause) -> str:
    """The link target GitHub generates for the clause's heading."""
    return re.sub(r"[^\w\- ]", "", _heading(c).lower()).replace(" ", "-")


def _para(label: str, text: str) -> str:
    return textwrap.fill(f"**{label}.** {text}", width=100, break_on_hyphens=False)


def render_table(clauses: tuple[Clause, ...] = CLAUSES) -> str:
    """A clause table of SPEC.md."""
    rows = ["| ID | Title | Level | Severity | Checker |", "|---|---|---|---|---|"]
    rows += [
        f"| [{c.id}](#{_anchor(c)}) | {c.title} | {c.level} | {c.severity} | `{c.checker_path}` |"
        for c in clauses
    ]
    return "\n".join(rows)


def render_section(c: Clause) -> str:
    """The SPEC.md section of one clause."""
    end = (
        "needs the end of the run: a history cut short gives UNKNOWN, not PASS"
        if c.needs_end
        else "judged on any prefix of a run: a history cut short can still PASS on what it shows"
    )
    parts = [
        f"### {_heading(c)}",
        _para("Requirement", c.requirement),
        _para("Violation", c.violation),
        _para("Rationale", c.rationale),
        _para("Fix hint", c.fix_hint),
        _para("How it is judged", c.judging),
        f"Checker: `{c.checker_path}`; {end}.",
    ]
    return "\n\n".join(parts)


def render_readings() -> str:
    """The section of SPEC.md on what a client reads."""
    rows = ["| Kind | What it must convey | Ends the stream |", "|---|---|---|"]
    rows += [f"| `{k.name}` | {k.conveys} | {'yes' if k.ends_stream else 'no'} |" for k in READ_KINDS]
    fill = textwrap.fill
    return "\n\n".join([
        "## What a client reads",
        fill(READING_INTRO, width=100, break_on_hyphens=False),
        "\n".join(rows),
        fill(READING_OUTRO, width=100, break_on_hyphens=False),
    ])


def render_generated() -> str:
    """Everything SPEC.md holds between its GENERATED markers."""
    sections = "\n\n".join(render_section(c) for c in CLAUSES)
    wire = "\n\n".join(render_section(c) for c in WIRE_CLAUSES)
    return (f"{BEGIN_MARK}\n\n{render_readings()}\n\n## Clauses\n\n{render_table()}\n\n{sections}"
            f"\n\n## Wire clauses\n\n{fill_para(WIRE_INTRO)}\n\n{render_table(WIRE_CLAUSES)}\n\n{wire}"
            f"\n\n{END_MARK}")


WIRE_INTRO = (
    "Judged only by `streamspec verify --mode http`, on what real SSE clients of real server "
    "processes receive. Over the wire the S clauses are judged on the same history format; what the "
    "wire cannot show (Python objects, resource counts, buffer sizes: S1, S8, S8.2) is UNKNOWN, never "
    "PASS."
)


def fill_para(text: str) -> str:
    return textwrap.fill(text, width=100, break_on_hyphens=False)


def generated_block(text: str) -> str:
    """The part of a SPEC.md text between (and including) the GENERATED markers."""
    match = re.search(re.escape(BEGIN_MARK) + r".*?" + re.escape(END_MARK), text, flags=re.S)
    if match is None:
        raise ValueError("SPEC.md has no GENERATED markers")
    return match.group(0)


def write_spec_md(path: Path = SPEC_MD) -> bool:
    """Re-render the generated block of SPEC.md in place; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    new = text.replace(generated_block(text), render_generated())
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    changed = write_spec_md()
    print("SPEC.md updated" if changed else "SPEC.md already up to date")
    sys.exit(0)
