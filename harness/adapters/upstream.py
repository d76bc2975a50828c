"""The PyPI package django-streaming-coordinator (import name `streaming`), as published.

Its coordinator is a process-wide singleton (`TaskCoordinator.__new__` returns one instance); each
simulated process gets a fresh, separate object here, bypassing that singleton, so two simulated
processes do not share memory as two real ones would not.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from harness.errors import AdapterError

DISTRIBUTION = "django-streaming-coordinator"


class UpstreamProcess:
    def __init__(self, name: str) -> None:
        from streaming.coordinator import TaskCoordinator

        self.name = name
        coordinator = object.__new__(TaskCoordinator)
        coordinator._initialized = False
        coordinator.__init__()
        self.coordinator = coordinator

    def activate(self) -> None:
        """Nothing to do: its models do not look the coordinator up."""

    async def start(self, instance: Any) -> None:
        await self.coordinator.start_task(instance, instance._meta.app_label, type(instance).__name__)

    async def lookup(self, app_label: str, model_name: str, pk: str) -> Any | None:
        # As its server's request path does: the names as the URL spells them, the id as an int.
        try:
            task_id = int(pk)
        except ValueError:
            return None
        return await self.coordinator.get_task_instance(app_label, model_name, task_id)

    async def reload(self, model: type, pk: Any) -> Any:
        return await model._default_manager.aget(pk=pk)

    async def attach(self, instance: Any, queue: Any) -> None:
        await instance.add_client(queue)

    async def detach(self, instance: Any, queue: Any) -> None:
        await instance.remove_client(queue)

    def resources(self) -> dict[str, int]:
        c = self.coordinator
        return {
            "tasks": len(c._tasks),
            "instances": len(c._task_instances),
            "locks": len(c._locks),
            "clients": sum(len(i._clients) for i in c._task_instances.values()),
        }


class UpstreamAdapter:
    name = "upstream"
    installed_apps = ("streaming",)
    task_base = "streaming.models.StreamTask"
    lookup_pk_as_int = True
    """Its server turns the URL's id into an int before the lookup (reproduction scripts do too)."""

    def __init__(self) -> None:
        try:
            self._version = version(DISTRIBUTION)
        except PackageNotFoundError:
            raise AdapterError(
                f"{DISTRIBUTION} is not installed beside streamspec: "
                f"pip install {DISTRIBUTION}==0.2.1 (or run `tox -e verify-upstream`)"
            ) from None

    def versions(self) -> dict[str, str]:
        return {"implementation": DISTRIBUTION, "version": self._version}

    def new_process(self, name: str) -> UpstreamProcess:
        return UpstreamProcess(name)

    async def persisted(self, model: type, pk: Any) -> dict[str, Any]:
        row = await model._default_manager.filter(pk=pk).values("completed_at", "final_value").afirst()
        if row is None:
            return {"status": "missing", "error": None, "final_value": None, "last_event": None}
        # The package stores no status, no error and no event: a failed task looks unfinished.
        status = "completed" if row["completed_at"] else "pending"
        return {"status": status, "error": None, "final_value": row["final_value"], "last_event": None}
