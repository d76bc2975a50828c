"""The reference implementation (`reference_impl.streaming`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any


class ReferenceProcess:
    def __init__(self, name: str) -> None:
        from reference_impl.streaming.coordinator import TaskCoordinator

        self.name = name
        self.coordinator = TaskCoordinator(name)

    def activate(self) -> None:
        self.coordinator.activate()

    async def start(self, instance: Any) -> None:
        await self.coordinator.start_task(instance)

    async def lookup(self, model: type, pk: Any) -> Any | None:
        return await self.coordinator.get_task_instance(model._meta.app_label, model.__name__, pk)

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

    def versions(self) -> dict[str, str]:
        try:
            own = version("streamspec")
        except PackageNotFoundError:  # run from a source tree that was not installed
            own = "source"
        return {"implementation": "streamspec reference", "version": own}

    def new_process(self, name: str) -> ReferenceProcess:
        return ReferenceProcess(name)

    async def persisted(self, model: type, pk: Any) -> dict[str, Any]:
        row = await model._default_manager.filter(pk=pk).values(
            "status", "error", "final_value", "last_event"
        ).afirst()
        return row or {"status": "missing", "error": None, "final_value": None, "last_event": None}
