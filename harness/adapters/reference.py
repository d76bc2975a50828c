"""The reference implementation (`reference_impl.streaming`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def loop_clock() -> datetime:
    """The event loop's clock as a date: under the harness that is virtual time, so leases run
    out when the scheduler jumps time forward, as they would in a real deployment over time."""
    return _EPOCH + timedelta(seconds=asyncio.get_running_loop().time())


class ReferenceProcess:
    def __init__(self, name: str) -> None:
        from reference_impl.streaming.coordinator import TaskCoordinator

        self.name = name
        self.coordinator = TaskCoordinator(name, clock=loop_clock)

    def activate(self) -> None:
        self.coordinator.activate()

    async def start(self, instance: Any) -> None:
        await self.coordinator.start_task(instance)

    async def lookup(self, app_label: str, model_name: str, pk: str) -> Any | None:
        # Its URL pattern passes all three as strings (``<str:task_id>``), as here.
        return await self.coordinator.get_task_instance(app_label, model_name, pk)

    async def reload(self, model: type, pk: Any) -> Any:
        return await model._default_manager.aget(pk=pk)

    async def attach(self, instance: Any, queue: Any) -> None:
        await instance.add_client(queue)

    async def detach(self, instance: Any, queue: Any) -> None:
        await instance.remove_client(queue)

    def resources(self) -> dict[str, int]:
        return self.coordinator.resources()


class ReferenceAdapter:
    name = "reference"
    # The example tasks ship with the reference (demos, and its own tests use them).
    installed_apps = ("reference_impl.streaming", "reference_impl.example")
    task_base = "reference_impl.streaming.models.StreamTask"
    # A small client buffer: a client that stops reading overflows within a few events, so the
    # scenarios reach the overflow path (S8.2) in a handful of steps instead of a thousand.
    # In-process runs poll the event log: a LISTEN connection's notifications would come from
    # outside the scheduler's control (the search replays schedules from the seed).
    django_settings = {"STREAMING_CLIENT_BUFFER": 2, "STREAMING_PUSH": False}
    # Over the wire (--mode http) time is real: a short lease, so that a task whose server was
    # killed is taken over within the example, and the harness waits that long for it.
    # And few streams per server, so that a crowd of clients reaches the limit (503, Retry-After).
    # Pushed across processes where the database is PostgreSQL, as deployed.
    http_settings = {
        "STREAMING_LEASE_SECONDS": 1.0, "STREAMING_POLL_SECONDS": 0.2, "STREAMING_MAX_STREAMS": 6,
        "STREAMING_PUSH": True,
    }
    http_takeover_seconds = 2.5

    def stream_path(self, app_label: str, model_name: str, pk: str) -> str:
        """A signed stream URL: the reference lets in no one who merely knows the id (W7)."""
        from reference_impl.streaming.access import sign, stream_path

        label = f"{app_label}.{model_name}".lower()
        # Signed for the row, however the path spells it (a leading zero reads as the same pk).
        return stream_path(label, model_name, pk, sign(label, int(pk) if pk.isdigit() else pk))

    def refused_paths(self, app_label: str, model_name: str, pk: str) -> dict[str, str]:
        from django.core.signing import TimestampSigner, b62_encode

        from reference_impl.streaming.access import SALT, sign, stream_path
        from reference_impl.streaming.conf import streaming_settings

        class Expired(TimestampSigner):
            def timestamp(self) -> str:
                return b62_encode(int(time.time() - streaming_settings().url_max_age - 60))

        label = f"{app_label}.{model_name}".lower()
        token = sign(label, pk)
        other = str(int(pk) + 1) if pk.isdigit() else pk + "0"
        return {
            "no signature": stream_path(label, model_name, pk, None),
            "a tampered signature": stream_path(label, model_name, pk,
                                                token[:-1] + ("A" if token[-1] != "A" else "B")),
            "an expired signature": stream_path(label, model_name, pk, sign(label, pk, Expired(salt=SALT))),
            "another task's signature": stream_path(label, model_name, pk, sign(label, other)),
        }

    def buffer_limit(self) -> int | None:
        from reference_impl.streaming.conf import streaming_settings

        return streaming_settings().client_buffer

    def native_client(self) -> Any:
        """A `Subscription`: reads the task's shared ring of events instead of a queue of its own."""
        from reference_impl.streaming.subscription import Subscription

        return Subscription()

    def versions(self) -> dict[str, str]:
        try:
            own = version("streamspec")
        except PackageNotFoundError:  # run from a source tree that was not installed
            own = "source"
        return {"implementation": "streamspec reference", "version": own}

    def new_process(self, name: str) -> ReferenceProcess:
        return ReferenceProcess(name)

    async def persisted(self, model: type, pk: Any) -> dict[str, Any]:
        from reference_impl.streaming import relay

        row = await model._default_manager.filter(pk=pk).values(
            "status", "error", "final_value", "last_event"
        ).afirst()
        if row is None:
            return {"status": "missing", "error": None, "final_value": None, "last_event": None}
        if row["last_event"] is None:  # still running: its events are in the log
            logged = await relay.latest((model._meta.label_lower, pk))
            row["last_event"] = dict(logged) if logged is not None else None
        return row
