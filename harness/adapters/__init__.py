"""Adapters map the harness's abstract operations onto one implementation under test (a "SUT").

An adapter is any object with the attributes and methods of `Adapter` (a Protocol: nothing to
subclass). Built-in names are ``reference`` and ``upstream``; a third party plugs in with
``--sut package.module:Adapter`` or an entry point in the group ``streamspec.suts``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from harness.errors import AdapterError

BUILTIN = {
    "reference": "harness.adapters.reference:ReferenceAdapter",
    "upstream": "harness.adapters.upstream:UpstreamAdapter",
}
ENTRY_POINT_GROUP = "streamspec.suts"


@runtime_checkable
class SutProcess(Protocol):
    """One simulated server process of the implementation: its own coordinator, a shared database.

    Every method runs inside the process's coroutines; `activate()` is called first in each."""

    name: str

    def activate(self) -> None: ...

    async def start(self, instance: Any) -> None:
        """Start the task through the coordinator, with this instance."""

    async def lookup(self, app_label: str, model_name: str, pk: str) -> Any | None:
        """What a new client's request does with the strings its URL carries (app label, model
        name, primary key as text): the coordinator's lookup, which may load and start the task.
        None if the implementation answers that there is no such task."""

    async def reload(self, model: type, pk: Any) -> Any:
        """A fresh instance of the row from the database, as any Django code could make."""

    async def attach(self, instance: Any, queue: Any) -> None: ...

    async def detach(self, instance: Any, queue: Any) -> None: ...

    def resources(self) -> dict[str, int]:
        """What the coordinator holds now (entries, locks, loads, client queues)."""


@runtime_checkable
class Adapter(Protocol):
    """An implementation under test."""

    name: str
    installed_apps: Sequence[str]
    """The implementation's Django apps, installed beside the harness's probe app."""
    task_base: str
    """Dotted path of the implementation's abstract StreamTask model, which the probe subclasses."""

    def versions(self) -> dict[str, str]:
        """Name and version of the implementation (for reports)."""

    def new_process(self, name: str) -> SutProcess:
        """A fresh coordinator for a simulated process (a restart is a new process)."""

    async def persisted(self, model: type, pk: Any) -> dict[str, Any]:
        """The row as stored: ``status`` (pending/running/completed/failed), ``error``,
        ``final_value`` and ``last_event`` (the stored event, read like a client's item with
        ``event_parts``, or None)."""


# Optional, looked up with getattr:
#   django_settings: dict[str, Any]  extra Django settings for the implementation under the harness
#   def buffer_limit(self) -> int | None  the per-client buffer bound the implementation documents
#       under those settings (S8.2 holds it to that, and never to more than the spec's bound)
#   def spellings(self, app_label: str, model_name: str, pk: str) -> list[tuple[str, str, str]]
#       the ways a request may name one row that the implementation's lookup accepts, the canonical
#       one first (default: `default_spellings`, Django's own rules); the harness draws among them
#   def native_client(self) -> Any  a new client of the implementation's own in-process kind, which
#       `add_client`/`remove_client` accept beside an asyncio.Queue and which reads like one (`get`,
#       `get_nowait`, `qsize`); the benchmarks measure it as the contender "<name>-native"
#   def classify(self, event: Any) -> str  what an item a client read from its queue is: "event"
#       (one of the task's events), "complete" / "error" (the terminal event of a task that completed
#       / failed), "final_state" (a finished task's state for a late joiner), "overflow" (the client
#       was dropped for falling behind; ends its stream) or "closed" (the stream ended, no reason
#       given). See SPEC.md, "What a client reads". Default: `harness.conventions.classify`, the
#       reference's dicts (types complete, error, final_state, overflow; any other type an event).
#       An implementation that drops a slow client another way (an `error` event with a reason, a
#       None put in its queue) says so here, or a correct implementation fails S2 and S5.
#   def event_parts(self, event: Any) -> tuple[str, Any]  the event's type and the data its task
#       passed to send_event (the probe finds its sequence number there, data["n"]), for the items
#       classify calls deliveries and for `persisted`'s last_event. Default: the dict's "type", "data".
#   Both return plain values (no streamspec import needed); the standalone reproduction scripts
#   import the adapter's module to call them (`streamspec.repro`).
#   The HTTP mode (--mode http) reads these, all optional:
#   def http_command(self, host: str, port: int) -> list[str]  how to start one server (default:
#       ``python -m django runserver_stream --host H --port P``, the seed's command), run with
#       DJANGO_SETTINGS_MODULE=harness.wire.server_settings (the harness's settings, see there)
#   def stream_path(self, app_label, model_name, pk) -> str  the URL path of a task's stream
#       for a client the implementation lets in (default ``/stream/<app_label>/<model_name>/<pk>``;
#       a signed URL, say); health_path: str (default /health)
#   def refused_paths(self, app_label, model_name, pk) -> dict[str, str]  requests the
#       implementation is configured to refuse, by name (W7): an unsigned URL, a tampered or an
#       expired signature... An implementation whose adapter names none offers no way to refuse
#       anyone, and fails W7.
#   http_env: dict[str, str]  environment variables for the servers (on top of the harness's own;
#       DJANGO_SETTINGS_MODULE, DATABASE_URL and the control channel's are the harness's)
#   http_settings: dict[str, Any]  settings for the servers only, on top of django_settings (a
#       short lease, so that a takeover happens within an example)
#   http_takeover_seconds: float  how long after a server is killed another one may take its
#       task over (the lease under http_settings); the harness waits that long before it judges
#       (default 0: no wait)

REQUIRED = ("name", "installed_apps", "task_base", "versions", "new_process", "persisted")


def default_spellings(app_label: str, model_name: str, pk: str) -> list[tuple[str, str, str]]:
    """How requests name one row under Django's own rules, the canonical spelling first: model
    names resolve case-insensitively (`apps.get_model`), and an integer primary key arrives as text,
    with leading zeros too (``<int:pk>`` and ``Model.objects.get(pk="07")`` both accept them). An
    implementation that keys its registry on the raw strings runs one task once per spelling."""
    names = list(dict.fromkeys([model_name, model_name.lower(), model_name.upper()]))
    pks = [pk, "0" + pk] if pk.isdigit() else [pk]
    return [(app_label, m, k) for k in pks for m in names]


def spellings_of(adapter: Any, model: type, pk: Any) -> list[tuple[str, str, str]]:
    """The spellings of row `pk` of `model` that `adapter`'s implementation accepts (its own
    ``spellings`` hook, else `default_spellings`), the canonical one first."""
    canonical = (model._meta.app_label, model.__name__, str(pk))
    hook = getattr(adapter, "spellings", None)
    found = list(hook(*canonical)) if callable(hook) else default_spellings(*canonical)
    if not found or tuple(found[0]) != canonical:
        raise AdapterError(f"{adapter.name}: spellings() must list the canonical spelling {canonical} first")
    return [tuple(str(part) for part in spelling) for spelling in found]


def stream_path_of(adapter: Any, app_label: str, model_name: str, pk: Any) -> str:
    """The URL path of row `pk`'s stream for a client the implementation lets in."""
    hook = getattr(adapter, "stream_path", None)
    if callable(hook):
        return str(hook(app_label, model_name, str(pk)))
    return f"/stream/{app_label}/{model_name}/{pk}"


def check_process(sut: Any) -> None:
    """Refuse a process object written for the old lookup signature ``lookup(model, pk)`` with a
    message that says what to change, instead of a TypeError in every lookup of the search."""
    lookup = getattr(sut, "lookup", None)
    if lookup is None:
        raise AdapterError(f"{type(sut).__name__} has no lookup(app_label, model_name, pk)")
    try:
        params = inspect.signature(lookup).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 3:
        raise AdapterError(
            f"{type(sut).__name__}.lookup takes {len(positional)} arguments: since streamspec 0.3 it "
            f"takes the strings of a request's URL, lookup(app_label, model_name, pk), and passes them "
            f"to the implementation's lookup as its own request path does (see harness.adapters)"
        )


def load_adapter(spec: str) -> Adapter:
    """The adapter named by `spec`: a built-in name, an entry point name, or ``module:Class``."""
    target = BUILTIN.get(spec)
    if target is None and ":" not in spec:
        found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        target = found.get(spec)
        if target is None:
            known = ", ".join(sorted({*BUILTIN, *found}))
            raise AdapterError(
                f"unknown implementation {spec!r}: use one of {known}, or 'package.module:Class' "
                f"for an adapter of your own (see README, 'Validate your own implementation')"
            )
    module_name, _, attr = (target or spec).partition(":")
    if not module_name or not attr:
        raise AdapterError(f"{spec!r} is not of the form 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterError(f"cannot import adapter module {module_name!r} for {spec!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise AdapterError(f"module {module_name!r} has no attribute {attr!r}")
    try:
        adapter = factory() if callable(factory) else factory
    except AdapterError:
        raise
    except Exception as exc:
        raise AdapterError(f"constructing adapter {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    missing = [name for name in REQUIRED if not hasattr(adapter, name)]
    if missing:
        raise AdapterError(
            f"{spec!r} is not a streamspec adapter: it lacks {', '.join(missing)} "
            f"(see harness.adapters.Adapter for what an adapter provides)"
        )
    return adapter
