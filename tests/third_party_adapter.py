"""The README's "Validate your own implementation" example, kept here so a test runs it.

A complete adapter for a third-party library with the django-streaming-coordinator API: its
Django app has ``models.StreamTask`` and ``coordinator.TaskCoordinator``. The "library" is
streamspec's reference implementation under another name; put your package in ``PACKAGE`` and
run::

    streamspec verify --sut tests.third_party_adapter:Adapter

An adapter is any object with these attributes and methods (see `harness.adapters.Adapter`); it
imports nothing from streamspec.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

PACKAGE = "reference_impl.streaming"
"""Your library's Django app (its import path)."""


class Process:
    """One simulated server process: a coordinator of its own over the shared database."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.coordinator = import_module(f"{PACKAGE}.coordinator").TaskCoordinator(name)

    def activate(self) -> None:
        """Called first in each coroutine of this process (this library finds its coordinator
        through a context variable; a library with a module-level singleton does nothing here)."""
        self.coordinator.activate()

    async def start(self, instance: Any) -> None:
        await self.coordinator.start_task(instance, instance._meta.app_label, type(instance).__name__)

    async def lookup(self, app_label: str, model_name: str, pk: str) -> Any | None:
        """What the library's stream view does for a new client, with the strings of its URL."""
        return await self.coordinator.get_task_instance(app_label, model_name, pk)

    async def reload(self, model: type, pk: Any) -> Any:
        """A fresh object of the row, as any Django code could load it."""
        return await model._default_manager.aget(pk=pk)

    async def attach(self, instance: Any, queue: Any) -> None:
        await instance.add_client(queue)

    async def detach(self, instance: Any, queue: Any) -> None:
        await instance.remove_client(queue)

    def resources(self) -> dict[str, int]:
        """What the coordinator still holds (every count should fall to 0 once all is over)."""
        return {
            name.lstrip("_"): len(value)
            for name, value in vars(self.coordinator).items()
            if isinstance(value, dict | set | list)
        }


class Adapter:
    name = "yourlib"
    installed_apps = (PACKAGE,)
    task_base = f"{PACKAGE}.models.StreamTask"
    """The abstract model streamspec's probe task subclasses."""

    def versions(self) -> dict[str, str]:
        return {"implementation": "yourlib (the reference under another name)", "version": "1.0"}

    def new_process(self, name: str) -> Process:
        return Process(name)

    async def persisted(self, model: type, pk: Any) -> dict[str, Any]:
        """The row as stored: status (pending/running/completed/failed), error, final_value and
        last_event (the stored event dict, or None)."""
        row = await model._default_manager.filter(pk=pk).values().afirst()
        if row is None:
            return {"status": "missing", "error": None, "final_value": None, "last_event": None}
        status = row.get("status") or ("completed" if row.get("completed_at") else "pending")
        return {
            "status": status,
            "error": row.get("error"),
            "final_value": row.get("final_value"),
            "last_event": row.get("last_event"),
        }
