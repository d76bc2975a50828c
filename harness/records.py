"""The records of a history: what one run recorded, one dataclass per kind, and their JSON form.

`harness.history` builds the `History` (the ordered list and the queries the checkers share) on these;
every name here is also importable from there. See that module's docstring for the conventions the
checkers rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal, TypeVar

from harness.conventions import DEFAULT_CONVENTIONS, ITEM_KINDS, Conventions, probe_seq
from harness.errors import StreamspecError

FORMAT = "streamspec.history"
VERSION = 1
HARNESS = "harness"
"""The `process` of records the harness makes itself rather than a simulated process (RunEnd)."""

OPS = frozenset(
    {
        "create", "start", "lookup", "reload", "attach", "detach", "stall",
        "release", "finish_ok", "finish_fail", "crash", "restart", "shutdown", "wait", "request",
        "intrude",
    }
)
"""Operations a scenario invokes. Their `Invoke.args` by convention:
create/lookup/reload: {} (value = object token or None); start: {"via": obj token or "coordinator"};
attach: {"client", "via": obj token}; detach: {"client"}; crash/shutdown: {"process"};
restart: {"process": new name, "replaces": old name}; wait: {"seconds"}; release: {} or {"count"};
finish_*: {} for
the plain way, else {"how": one of `harness.probe.gates.FINISH_WAYS` / `FAIL_WAYS`}; lookup: {} for
the canonical spelling of the row, else {"spelling": [app label, model name, pk] as the request
carried them}; request (the HTTP mode's hostile and malformed requests): {"client", "method",
"path", "headers"}; intrude (the HTTP mode's requests the implementation is configured to refuse,
W7): {"client", "how", "path", "missing": whether the path names a task that does not exist}, or
{"how": None} (status "fail") when the adapter names no such request."""

TERMINAL_EVENT_TYPES = frozenset({"complete", "error"})
"""`Deliver.event_type` of a terminal event (whatever the implementation calls it: the history
records it as read, see `harness.conventions`), and the probe's own terminal `Send` types."""
FINAL_STATE = "final_state"
"""event_type of a synthesized delivery that carries a finished task's final state."""

OpStatus = Literal["ok", "fail", "unknown"]
Outcome = Literal["ok", "error", "crashed", "cancelled"]
EndReason = Literal["terminal", "detached", "overflow", "crashed", "shutdown", "closed"]
RunEndReason = Literal["done", "bound", "hang"]

OP_STATUSES = frozenset({"ok", "fail", "unknown"})
OUTCOMES = frozenset({"ok", "error", "crashed", "cancelled"})
"""How a run of process() ended: returned, raised, its process crashed, or it was cancelled from
outside (a graceful shutdown) and let that propagate."""
STREAM_END_REASONS = frozenset({"terminal", "detached", "overflow", "crashed", "shutdown", "closed"})
"""Why a client's stream ended: after the terminal event; the client left; the server dropped it
for falling behind (overflow notice); its server process crashed or shut down; or the server closed it
without any of these (never an excuse for missing events)."""
LEAVING_REASONS = frozenset({"detached", "overflow", "crashed", "shutdown"})
"""Stream ends after which a client is owed nothing more."""
FAULTS = frozenset({"crash", "restart", "shutdown"})
PROCESS_ENDS = frozenset({"crash", "shutdown"})
"""Faults after which a process runs nothing of the scenario's again: a kill, or a graceful shutdown
(which first lets the process's cancelled coroutines run their clean-up)."""
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
    implementation made up, e.g. a final state ("complete", "error", "final_state"). `event_type`
    is the kind the item was read as for those three, else the event's own type."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Record):
    """Over the wire only: the response head a client's request got, the headers the wire clauses
    judge (names in lower case) and the seconds from sending the request to the head."""

    kind: ClassVar[str] = "response"
    client: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    after: float = 0.0
    body: str | None = None
    """What a refused request's answer said (W7), its first `BODY_KEPT` characters; None elsewhere."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WireError(Record):
    """Over the wire only: what went wrong in `client`'s stream: ``framing`` (what a standard SSE
    client could not read, W2), ``after_end`` (data after the terminal event) or ``open_after_end``
    (the stream stayed open past the bound after it, W3)."""

    kind: ClassVar[str] = "wire_error"
    _choices: ClassVar[dict[str, frozenset[str]]] = {
        "what": frozenset({"framing", "after_end", "open_after_end"}),
    }
    client: str
    problem: str
    what: str = "framing"


@dataclass(frozen=True, slots=True, kw_only=True)
class Connections(Record):
    """Over the wire only: after every client left, how many of their connections the server
    (`process`) still held open once it had `waited` seconds (at most the bound) to let them go."""

    kind: ClassVar[str] = "connections"
    held: int
    waited: float


RECORD_TYPES: tuple[type[Record], ...] = (
    Invoke, Complete, ProcessEnter, ProcessExit, Send, Sent, Deliver, StreamEnd, Fault, Snapshot, RunEnd,
    Response, WireError, Connections,
)
KINDS: dict[str, type[Record]] = {t.kind: t for t in RECORD_TYPES}

R = TypeVar("R", bound=Record)


def read_event(
    event: Any, conventions: Conventions = DEFAULT_CONVENTIONS
) -> list[tuple[str, dict[str, Any]]]:
    """The records a client's read of `event` adds, as (kind, fields), the event read with
    `conventions`: a ``deliver`` (fields ``seq``, ``event_type``) unless the item is an overflow
    notice or a bare end of the stream, then a ``stream_end`` (field ``reason``: "overflow",
    "closed", or "terminal" after a terminal event or final state) if the item ends the stream."""
    kind = conventions.classify(event)
    if kind not in ITEM_KINDS:
        raise HistoryError(f"classify({event!r}) gave {kind!r}, not one of {sorted(ITEM_KINDS)}")
    if kind in ("overflow", "closed"):
        return [("stream_end", {"reason": kind})]
    event_type, data = conventions.event_parts(event)
    seq = probe_seq(data)
    read = [("deliver", {"seq": seq, "event_type": str(event_type) if kind == "event" else kind})]
    return read if kind == "event" else [*read, ("stream_end", {"reason": "terminal"})]


def record_read(add: Callable[..., Any], process: str, client: str, task: str, event: Any,
                conventions: Conventions = DEFAULT_CONVENTIONS) -> bool:
    """Record a client's read of `event` with ``add(record type, process, **fields)`` (a recorder's
    `add`), reading it with `conventions` (the adapter's); True if the read ended the client's stream."""
    ended = False
    for kind, values in read_event(event, conventions):
        ended = kind == "stream_end"
        add(KINDS[kind], process, client=client, **({} if ended else {"task": task}), **values)
    return ended


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

