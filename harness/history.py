"""The history model: what one run of a scenario recorded, as an ordered list of records.

A history has the same shape whether the run drove the coordinator in-process or through HTTP (a
black-box recorder builds it from SSE clients), so the checkers in `harness.checkers` never know
which. It is JSON-serialisable (`History.to_json` / `History.from_json`, with a format version). The
record kinds live in `harness.records` and are importable from here too.

Every record carries its position (`index`), a virtual `time`, the simulated `process` it happened
in ("p0"; a restart gets a new name, "p1", ...; records the harness itself makes use `HARNESS`) and
its `kind`. Names are tokens chosen by the recorder, never Python ids: tasks ("T1"), objects
("obj3": one token per distinct Python object of a task row), clients ("c2"), operations ("op7").

Conventions the checkers rely on:
- `Send.seq` is the probe's own counter per task (1, 2, 3, ...). The harness owns it, so it keeps
  counting across crashes: a resumed run's first event follows the last one sent before the crash.
- A client name is attached at most once; a reconnecting client is a new client.
- A run of `process()` ends at its `ProcessExit`, or at the crash of its process if that comes first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.records import (
    FAULTS,
    FINAL_STATE,
    FORMAT,
    HARNESS,
    KINDS,
    LEAVING_REASONS,
    OP_STATUSES,
    OPS,
    OUTCOMES,
    PERSISTED_STATUSES,
    PROCESS_ENDS,
    RECORD_TYPES,
    RUN_END_REASONS,
    STREAM_END_REASONS,
    TERMINAL_EVENT_TYPES,
    VERSION,
    Complete,
    Connections,
    Deliver,
    EndReason,
    Fault,
    HistoryError,
    Invoke,
    OpStatus,
    Outcome,
    PersistedTask,
    ProcessEnter,
    ProcessExit,
    R,
    Record,
    Response,
    RunEnd,
    RunEndReason,
    Send,
    Sent,
    Snapshot,
    StreamEnd,
    WireError,
    record_from_dict,
)

# The records live in `harness.records`; `from harness.history import Send` keeps working everywhere.
__all__ = [
    "FAULTS",
    "FINAL_STATE",
    "FORMAT",
    "HARNESS",
    "KINDS",
    "LEAVING_REASONS",
    "OPS",
    "OP_STATUSES",
    "OUTCOMES",
    "PERSISTED_STATUSES",
    "PROCESS_ENDS",
    "RECORD_TYPES",
    "RUN_END_REASONS",
    "STREAM_END_REASONS",
    "TERMINAL_EVENT_TYPES",
    "VERSION",
    "Attachment",
    "Complete",
    "Connections",
    "Deliver",
    "EndReason",
    "Execution",
    "Fault",
    "Finish",
    "History",
    "HistoryError",
    "Invoke",
    "OpStatus",
    "Operation",
    "Outcome",
    "PersistedTask",
    "ProcessEnter",
    "ProcessExit",
    "R",
    "Record",
    "Response",
    "RunEnd",
    "RunEndReason",
    "Send",
    "Sent",
    "Snapshot",
    "StreamEnd",
    "WireError",
    "record_from_dict",
]


# -- derived views -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion (None while it never completed)."""

    invoke: Invoke
    complete: Complete | None

    @property
    def op_id(self) -> str:
        return self.invoke.op_id

    @property
    def op(self) -> str:
        return self.invoke.op

    @property
    def task(self) -> str | None:
        return self.invoke.task

    @property
    def process(self) -> str:
        return self.invoke.process

    @property
    def args(self) -> dict[str, Any]:
        return self.invoke.args

    @property
    def start(self) -> int:
        return self.invoke.index

    @property
    def end(self) -> int | None:
        return None if self.complete is None else self.complete.index

    @property
    def status(self) -> str | None:
        """"ok", "fail", "unknown", or None while pending."""
        return None if self.complete is None else self.complete.status

    @property
    def value(self) -> Any:
        return None if self.complete is None else self.complete.value


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution of a task's process() on one object: [start, end) in record indices."""

    task: str
    obj: str
    process: str
    start: int
    end: int | None
    """Index of the ProcessExit or of the crash that ended it; None if still running at the end."""
    outcome: Outcome | None

    def active_at(self, index: int) -> bool:
        return self.start <= index and (self.end is None or index < self.end)

    def overlaps(self, lo: int, hi: int | None) -> bool:
        """Active at some point of [lo, hi] (hi None: up to the end of the history)."""
        return (hi is None or self.start <= hi) and (self.end is None or self.end > lo)

    @property
    def finished(self) -> bool:
        """Ended by returning or raising (a crash is not a finish: the task may resume)."""
        return self.outcome in ("ok", "error")


@dataclass(frozen=True, slots=True)
class Finish:
    """The point where a task finished: its first terminal Send, or (if the implementation sent
    none the probe saw) the exit of the first run that returned or raised."""

    task: str
    index: int
    outcome: Literal["ok", "error"]
    seq: int | None

    @property
    def event_type(self) -> str:
        return "complete" if self.outcome == "ok" else "error"

    def is_terminal_delivery(self, d: Deliver) -> bool:
        """Whether `d` carries this finish to its client: the probe's terminal event itself, or a
        synthesized terminal / final-state event."""
        if d.seq is not None:
            return d.seq == self.seq
        return d.event_type in (self.event_type, FINAL_STATE)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A successful attach of a client to a task, with what the client then saw."""

    client: str
    task: str
    via: str | None
    process: str
    op: Operation
    deliveries: tuple[Deliver, ...]
    """Deliveries to this client, of any task, in history order."""
    stream_end: StreamEnd | None
    left_at: int | None
    """First index after which the client is owed nothing: detach invoked, stream ended with a
    leaving reason, or its process crashed. None if it stayed to the end."""
    closed_at: int | None
    """First index at which the client's stream was over for any reason (ended, detached, crash)."""

    @property
    def joined_from(self) -> int:
        return self.op.start

    @property
    def joined_by(self) -> int:
        assert self.op.end is not None  # only completed attaches become Attachments
        return self.op.end

    def task_deliveries(self) -> list[Deliver]:
        return [d for d in self.deliveries if d.task == self.task]


# -- the history ---------------------------------------------------------------------------------


class History:
    """An ordered, validated list of records plus the queries the checkers share.

    Construction checks the shape (indices, time order, op pairing, unique clients) and raises
    HistoryError; the derived views are computed once, since checkers ask for them repeatedly.
    """

    def __init__(
        self, records: Sequence[Record], version: int = VERSION, *, bracketed_sends: bool | None = None
    ) -> None:
        if version != VERSION:
            raise HistoryError(f"unsupported history version {version} (this code reads {VERSION})")
        self.version = version
        self.records: tuple[Record, ...] = tuple(records)
        # Whether the recorder writes a `Sent` when each `send_event` returns. It must be said, not
        # guessed from the records: in a run where no send returned (its process crashed in every
        # one) there is no `Sent` at all, yet no send completed. None: guessed, for documents
        # written before it was said.
        self.bracketed_sends: bool = (
            any(isinstance(r, Sent) for r in self.records) if bracketed_sends is None else bracketed_sends
        )
        self._validate()
        self._index()

    # -- construction helpers --

    def _validate(self) -> None:
        last_time = float("-inf")
        invoked: set[str] = set()
        completed: set[str] = set()
        clients: set[str] = set()
        for position, r in enumerate(self.records):
            if r.index != position:
                raise HistoryError(f"record at position {position} has index {r.index}")
            if r.time < last_time:
                raise HistoryError(f"record #{r.index} goes back in time ({r.time} < {last_time})")
            last_time = r.time
            if isinstance(r, Invoke):
                if r.op_id in invoked:
                    raise HistoryError(f"op id {r.op_id} invoked twice (#{r.index})")
                invoked.add(r.op_id)
                if r.op == "attach":
                    client = r.args.get("client")
                    if not client or client in clients:
                        raise HistoryError(f"attach #{r.index}: client {client!r} missing or reused")
                    clients.add(client)
            elif isinstance(r, Complete):
                if r.op_id not in invoked or r.op_id in completed:
                    raise HistoryError(f"complete #{r.index} of {r.op_id} without a pending invoke")
                completed.add(r.op_id)
            elif isinstance(r, RunEnd) and position != len(self.records) - 1:
                raise HistoryError(f"RunEnd #{r.index} is not the last record")

    def _index(self) -> None:
        invokes = {r.op_id: r for r in self.records if isinstance(r, Invoke)}
        completes = {r.op_id: r for r in self.records if isinstance(r, Complete)}
        self._ops = [Operation(inv, completes.get(op_id)) for op_id, inv in invokes.items()]
        self._ops_by_id = {o.op_id: o for o in self._ops}
        self._crash_at: dict[str, int] = {}
        for r in self.records:
            if isinstance(r, Fault) and r.fault in PROCESS_ENDS:
                # A graceful shutdown ends the process's part in the scenario where it begins: its
                # runs are interrupted there, not finished, and its clients are owed nothing more.
                self._crash_at.setdefault(r.process, r.index)
        self._sends: dict[str, list[Send]] = {}
        self._deliveries: dict[str, list[Deliver]] = {}
        self._stream_end: dict[str, StreamEnd] = {}
        self._sent: dict[tuple[str, int], int] = {}
        for r in self.records:
            if isinstance(r, Send):
                self._sends.setdefault(r.task, []).append(r)
            elif isinstance(r, Sent):
                self._sent.setdefault((r.task, r.seq), r.index)
            elif isinstance(r, Deliver):
                self._deliveries.setdefault(r.client, []).append(r)
            elif isinstance(r, StreamEnd):
                self._stream_end.setdefault(r.client, r)
        self._runs = self._build_runs()
        self._attachments = self._build_attachments()

    def _build_runs(self) -> list[Execution]:
        runs: list[Execution] = []
        # A list per object: the same object may (wrongly) be inside process() twice at once,
        # and S4 must see both runs. Exits match entries first-in, first-out.
        open_runs: dict[tuple[str, str, str], list[ProcessEnter]] = {}
        for r in self.records:
            if isinstance(r, ProcessEnter):
                open_runs.setdefault((r.process, r.task, r.obj), []).append(r)
            elif isinstance(r, ProcessExit):
                entered = open_runs.get((r.process, r.task, r.obj))
                if not entered:
                    raise HistoryError(f"process_exit #{r.index} of {r.task}/{r.obj} was never entered")
                enter = entered.pop(0)
                crash = self._crash_at.get(r.process)
                if crash is not None and crash < r.index:
                    runs.append(Execution(r.task, r.obj, r.process, enter.index, crash, "crashed"))
                else:
                    runs.append(Execution(r.task, r.obj, r.process, enter.index, r.index, r.outcome))
        for enter in (e for entered in open_runs.values() for e in entered):
            crash = self._crash_at.get(enter.process)
            if crash is not None and crash > enter.index:
                runs.append(Execution(enter.task, enter.obj, enter.process, enter.index, crash, "crashed"))
            else:
                runs.append(Execution(enter.task, enter.obj, enter.process, enter.index, None, None))
        return sorted(runs, key=lambda run: run.start)

    def _build_attachments(self) -> list[Attachment]:
        detaches = {o.args.get("client"): o for o in self._ops if o.op == "detach"}
        out: list[Attachment] = []
        for o in self._ops:
            if o.op != "attach" or o.status != "ok" or o.task is None:
                continue
            client = o.args["client"]
            end = self._stream_end.get(client)
            detach = detaches.get(client)
            crash = self._crash_at.get(o.process)
            leaving = [
                detach.start if detach else None,
                end.index if end and end.reason in LEAVING_REASONS else None,
                crash,
            ]
            closing = [end.index if end else None, detach.end if detach else None, crash]
            out.append(
                Attachment(
                    client=client,
                    task=o.task,
                    via=o.args.get("via"),
                    process=o.process,
                    op=o,
                    deliveries=tuple(self._deliveries.get(client, ())),
                    stream_end=end,
                    left_at=min((i for i in leaving if i is not None), default=None),
                    closed_at=min((i for i in closing if i is not None), default=None),
                )
            )
        return out

    # -- serialisation --

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": self.version, "bracketed_sends": self.bracketed_sends,
                "records": [r.to_dict() for r in self.records]}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        if data.get("format") != FORMAT:
            raise HistoryError(f"not a {FORMAT} document (format={data.get('format')!r})")
        return cls([record_from_dict(r) for r in data["records"]], version=data.get("version", -1),
                   bracketed_sends=data.get("bracketed_sends"))

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))

    # -- sequence protocol --

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and (self.version, self.bracketed_sends, self.records) == (
            other.version, other.bracketed_sends, other.records
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking container: compare, don't hash

    def __repr__(self) -> str:
        return f"History({len(self.records)} records, end={self.run_end.reason if self.run_end else None})"

    # -- queries --

    def of_kind(self, kind: type[R]) -> list[R]:
        """All records of one kind, in order."""
        return [r for r in self.records if isinstance(r, kind)]

    def ops(self, op: str | None = None, *, task: str | None = None) -> list[Operation]:
        """Operations in invocation order, optionally of one op name and/or one task."""
        return [o for o in self._ops if (op is None or o.op == op) and (task is None or o.task == task)]

    def op(self, op_id: str) -> Operation:
        return self._ops_by_id[op_id]

    def tasks(self) -> list[str]:
        """Every task named anywhere, in order of first appearance."""
        seen: dict[str, None] = {}
        for r in self.records:
            task = getattr(r, "task", None)
            if task is not None:
                seen.setdefault(task, None)
        return list(seen)

    def processes(self) -> list[str]:
        """Every simulated process named by a record, in order of first appearance."""
        seen = dict.fromkeys(r.process for r in self.records if r.process != HARNESS)
        return list(seen)

    def origin(self, obj: str) -> Operation | None:
        """The create/lookup/reload that first handed out the object token `obj`."""
        for o in self._ops:
            if o.op in ("create", "lookup", "reload") and o.status == "ok" and o.value == obj:
                return o
        return None

    def runs(self, task: str | None = None) -> list[Execution]:
        """Runs of process(), ordered by entry."""
        return [r for r in self._runs if task is None or r.task == task]

    def runs_during(self, task: str, lo: int, hi: int | None, process: str | None = None) -> list[Execution]:
        """Runs of `task` (in `process`, if given) active at some point of [lo, hi]."""
        return [
            r for r in self.runs(task) if r.overlaps(lo, hi) and (process is None or r.process == process)
        ]

    def sends(self, task: str) -> list[Send]:
        return list(self._sends.get(task, ()))

    def send(self, task: str, seq: int) -> Send | None:
        return next((s for s in self._sends.get(task, ()) if s.seq == seq), None)

    def latest_send_before(self, task: str, index: int) -> Send | None:
        """The last event of `task` sent strictly before record `index`."""
        before = [s for s in self._sends.get(task, ()) if s.index < index]
        return before[-1] if before else None

    def sent_by(self, send: Send) -> int:
        """Index by which `send` had completed: its `Sent` record, or the `Send` itself in a
        history that records sends as instantaneous. In a history with bracketed sends, a send
        without `Sent` (cut short, or its process crashed) never completed: the index is past the end."""
        done = self._sent.get((send.task, send.seq))
        if done is not None:
            return done
        return len(self.records) if self.bracketed_sends else send.index

    def latest_completed_send_before(self, task: str, index: int) -> Send | None:
        """The last event of `task` whose send had completed strictly before record `index`."""
        done = [s for s in self._sends.get(task, ()) if self.sent_by(s) < index]
        return max(done, key=lambda s: s.seq) if done else None

    def sends_between(self, task: str, after: int, before: int | None = None) -> list[Send]:
        """Events of `task` sent strictly between two indices (before None: to the end)."""
        sends = self._sends.get(task, ())
        return [s for s in sends if after < s.index and (before is None or s.index < before)]

    def finish(self, task: str) -> Finish | None:
        """Where `task` finished, if it did (see `Finish`)."""
        terminal = next((s for s in self._sends.get(task, ()) if s.terminal), None)
        exited = min(
            (r for r in self._runs if r.task == task and r.finished), key=lambda r: r.end or 0, default=None
        )
        # Whichever comes first: the implementation may send the terminal event before or after
        # process() returns, and a failure may have no terminal event the probe saw at all.
        if terminal is not None and (exited is None or terminal.index < (exited.end or 0)):
            outcome = "ok" if terminal.event_type == "complete" else "error"
            return Finish(task, terminal.index, outcome, terminal.seq)
        if exited is not None:
            assert exited.end is not None and exited.outcome in ("ok", "error")
            return Finish(task, exited.end, exited.outcome, terminal.seq if terminal else None)
        return None

    def attachments(self, task: str | None = None) -> list[Attachment]:
        """Successful attaches (status ok), in invocation order."""
        return [a for a in self._attachments if task is None or a.task == task]

    def attached_at(self, task: str, index: int) -> list[Attachment]:
        """Clients of `task` whose attach had completed by `index` and who had not left by then."""
        return [
            a for a in self.attachments(task)
            if a.joined_by <= index and (a.left_at is None or a.left_at > index)
        ]

    def deliveries(self, client: str) -> list[Deliver]:
        return list(self._deliveries.get(client, ()))

    def stream_end(self, client: str) -> StreamEnd | None:
        return self._stream_end.get(client)

    def crashes(self) -> list[Fault]:
        """The faults that ended a process: crashes, and graceful shutdowns (judged alike: what S7
        demands after a crash holds after a shutdown too)."""
        return [r for r in self.records if isinstance(r, Fault) and r.fault in PROCESS_ENDS]

    def crash_index(self, process: str) -> int | None:
        """Where `process` crashed, if it did (a name is never reused after a crash)."""
        return self._crash_at.get(process)

    def snapshots(self, process: str | None = None) -> list[Snapshot]:
        snaps = self.of_kind(Snapshot)
        return [s for s in snaps if process is None or s.process == process]

    def persisted(self, task: str, after: int = -1) -> tuple[Snapshot, PersistedTask] | None:
        """The last snapshot after index `after` that reports `task`'s row, with that row."""
        for snap in reversed(self.snapshots()):
            if snap.index <= after:
                break
            if task in snap.persisted:
                return snap, snap.persisted[task]
        return None

    @property
    def run_end(self) -> RunEnd | None:
        last = self.records[-1] if self.records else None
        return last if isinstance(last, RunEnd) else None

    @property
    def is_complete(self) -> bool:
        """The run ran to its end ("done"): liveness can be judged. Bound, hang or no RunEnd: no."""
        return self.run_end is not None and self.run_end.reason == "done"

    def stuck(self, name: str) -> bool:
        """The run hung with `name` (a client or op id) among those still waiting."""
        end = self.run_end
        return end is not None and end.reason == "hang" and name in end.waiting

    @property
    def last_index(self) -> int:
        return len(self.records) - 1
