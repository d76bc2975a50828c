"""The history model: what one run of a scenario recorded, as an ordered list of records.

A history has the same shape whether the run drove the coordinator in-process or through HTTP (a
black-box recorder builds it from SSE clients), so the checkers in `harness.checkers` never know
which. It is JSON-serialisable (`History.to_json` / `History.from_json`, with a format version).

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
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal, TypeVar

from harness.errors import StreamspecError

FORMAT = "streamspec.history"
VERSION = 1
HARNESS = "harness"
"""The `process` of records the harness makes itself rather than a simulated process (RunEnd)."""

OPS = frozenset(
    {
        "create", "start", "lookup", "reload", "attach", "detach", "stall",
        "release", "finish_ok", "finish_fail", "crash", "restart",
    }
)
"""Operations a scenario invokes. Their `Invoke.args` by convention:
create/lookup/reload: {} (value = object token or None); start: {"via": obj token or "coordinator"};
attach: {"client", "via": obj token}; detach: {"client"}; crash: {"process"};
restart: {"process": new name, "replaces": old name}; release/finish_*: {}."""

TERMINAL_EVENT_TYPES = frozenset({"complete", "error"})
FINAL_STATE = "final_state"
"""event_type of a synthesized delivery that carries a finished task's final state."""

OpStatus = Literal["ok", "fail", "unknown"]
Outcome = Literal["ok", "error", "crashed"]
EndReason = Literal["terminal", "detached", "overflow", "crashed", "closed"]
RunEndReason = Literal["done", "bound", "hang"]

OP_STATUSES = frozenset({"ok", "fail", "unknown"})
OUTCOMES = frozenset({"ok", "error", "crashed"})
STREAM_END_REASONS = frozenset({"terminal", "detached", "overflow", "crashed", "closed"})
"""Why a client's stream ended: after the terminal event; the client left; the server dropped it
for falling behind (overflow notice); its server process crashed; or the server closed it
without any of these (never an excuse for missing events)."""
LEAVING_REASONS = frozenset({"detached", "overflow", "crashed"})
"""Stream ends after which a client is owed nothing more."""
FAULTS = frozenset({"crash", "restart"})
RUN_END_REASONS = frozenset({"done", "bound", "hang"})
PERSISTED_STATUSES = frozenset({"pending", "running", "completed", "failed"})


class HistoryError(StreamspecError, ValueError):
    """A history (or its JSON) is malformed: the checkers cannot trust it."""


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Base of every record: where it sits in the history and which simulated process made it."""

    kind: ClassVar[str] = "record"
    _choices: ClassVar[dict[str, frozenset[str]]] = {}
    """Fields restricted to a fixed vocabulary, validated on construction."""

    index: int
    time: float
    process: str

    def __post_init__(self) -> None:
        for name, allowed in self._choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise HistoryError(f"{self.kind} #{self.index}: {name}={value!r} not in {sorted(allowed)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: index, time, process, kind first, then the kind's fields in order."""
        out: dict[str, Any] = {"index": self.index, "time": self.time, "process": self.process}
        out["kind"] = self.kind
        for f in fields(self):
            if f.name not in out:
                out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn JSON field values back into Python ones (overridden where a field is structured)."""
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoke(Record):
    """A scenario operation began. `task` is None for process-level ops (crash, restart)."""

    kind: ClassVar[str] = "invoke"
    _choices: ClassVar[dict[str, frozenset[str]]] = {"op": OPS}
    op_id: str
    op: str
    task: str | None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Complete(Record):
    """The operation `op_id` returned (ok), raised (fail) or its outcome is unknown (its process
    crashed under it). For create/lookup/reload `value` is an object token, or None."""

    kind: ClassVar[str] = "complete"
    _choices: ClassVar[dict[str, frozenset[str]]] = {"status": OP_STATUSES}
    op_id: str
    status: OpStatus
    value: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessEnter(Record):
    """The task's process() was entered, running on object `obj`."""

    kind: ClassVar[str] = "process_enter"
    task: str
    obj: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessExit(Record):
    """The task's process() on `obj` returned (ok), raised (error) or died with its process."""

    kind: ClassVar[str] = "process_exit"
    _choices: ClassVar[dict[str, frozenset[str]]] = {"outcome": OUTCOMES}
    task: str
    obj: str
    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Send(Record):
    """The probe task sent its event number `seq`; terminal events are "complete" / "error"."""

    kind: ClassVar[str] = "send"
    task: str
    seq: int
    event_type: str

    @property
    def terminal(self) -> bool:
        return self.event_type in TERMINAL_EVENT_TYPES


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent(Record):
    """The probe's `send_event` call for event `seq` returned. Between `Send` and `Sent` the send
    is in progress, concurrent with whatever else happens (an implementation may make an event
    durable before it counts as sent); histories without `Sent` treat sends as instantaneous."""

    kind: ClassVar[str] = "sent"
    task: str
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver(Record):
    """Client `client` received an event of `task`: the probe's event `seq`, or (seq None) one the
    implementation made up, e.g. a final state ("complete", "error", "final_state")."""

    kind: ClassVar[str] = "deliver"
    client: str
    task: str
    seq: int | None
    event_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnd(Record):
    """The client's stream ended; see `STREAM_END_REASONS`."""

    kind: ClassVar[str] = "stream_end"
    _choices: ClassVar[dict[str, frozenset[str]]] = {"reason": STREAM_END_REASONS}
    client: str
    reason: EndReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(Record):
    """A fault the harness injected: "crash" of `process`, or "restart" as the new `process`
    (`replaces` names the crashed one). The field is `fault` because `kind` names record kinds."""

    kind: ClassVar[str] = "fault"
    _choices: ClassVar[dict[str, frozenset[str]]] = {"fault": FAULTS}
    fault: str
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class PersistedTask:
    """A task row as the database holds it (what survives a crash)."""

    status: str
    error: str | None = None
    last_event_seq: int | None = None

    def __post_init__(self) -> None:
        if self.status not in PERSISTED_STATUSES:
            raise HistoryError(f"persisted status {self.status!r} not in {sorted(PERSISTED_STATUSES)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(Record):
    """What the adapter reported at a checkpoint: resource counts of this process's coordinator
    (any names: entries, locks, loads, client queues...; all should reach zero, S8), the persisted
    rows it can see, undelivered events per client (None: not reported), and the bound the
    implementation documents for them under the run's settings (None: none, S8.2's own applies)."""

    kind: ClassVar[str] = "snapshot"
    resources: dict[str, int] = field(default_factory=dict)
    persisted: dict[str, PersistedTask] = field(default_factory=dict)
    buffers: dict[str, int] | None = None
    buffer_limit: int | None = None

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        persisted = {task: PersistedTask(**row) for task, row in data.get("persisted", {}).items()}
        return {**data, "persisted": persisted}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnd(Record):
    """How the run ended: "done" (every step ran and the system drained), "bound" (a step or time
    budget cut it short) or "hang" (no progress while `waiting` clients / op ids still waited)."""

    kind: ClassVar[str] = "run_end"
    _choices: ClassVar[dict[str, frozenset[str]]] = {"reason": RUN_END_REASONS}
    reason: RunEndReason
    waiting: list[str] = field(default_factory=list)


RECORD_TYPES: tuple[type[Record], ...] = (
    Invoke, Complete, ProcessEnter, ProcessExit, Send, Sent, Deliver, StreamEnd, Fault, Snapshot, RunEnd,
)
KINDS: dict[str, type[Record]] = {t.kind: t for t in RECORD_TYPES}

R = TypeVar("R", bound=Record)


def _plain(value: Any) -> Any:
    """JSON-ready copy with sorted dict keys, so the same history always gives the same text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def record_from_dict(data: dict[str, Any]) -> Record:
    """Inverse of `Record.to_dict`."""
    try:
        cls = KINDS[data["kind"]]
        kwargs = cls._decode({k: v for k, v in data.items() if k != "kind"})
        return cls(**kwargs)
    except HistoryError:
        raise
    except (KeyError, TypeError) as exc:
        raise HistoryError(f"bad record {data!r}: {exc}") from exc


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
class Run:
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
            if isinstance(r, Fault) and r.fault == "crash":
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

    def _build_runs(self) -> list[Run]:
        runs: list[Run] = []
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
                    runs.append(Run(r.task, r.obj, r.process, enter.index, crash, "crashed"))
                else:
                    runs.append(Run(r.task, r.obj, r.process, enter.index, r.index, r.outcome))
        for enter in (e for entered in open_runs.values() for e in entered):
            crash = self._crash_at.get(enter.process)
            if crash is not None and crash > enter.index:
                runs.append(Run(enter.task, enter.obj, enter.process, enter.index, crash, "crashed"))
            else:
                runs.append(Run(enter.task, enter.obj, enter.process, enter.index, None, None))
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

    def runs(self, task: str | None = None) -> list[Run]:
        """Runs of process(), ordered by entry."""
        return [r for r in self._runs if task is None or r.task == task]

    def runs_during(self, task: str, lo: int, hi: int | None, process: str | None = None) -> list[Run]:
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
        return [r for r in self.records if isinstance(r, Fault) and r.fault == "crash"]

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
