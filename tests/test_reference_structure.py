"""The reference's structure: an acyclic import graph, modules of a readable length, and no runtime
state on model objects."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grimp
import pytest

import reference_impl.streaming
from reference_impl.example.models import ExampleTask
from reference_impl.streaming.coordinator import TaskCoordinator, coordinator

PACKAGE = "reference_impl.streaming"
SOURCE = Path(reference_impl.streaming.__file__).parent
MAX_LINES = 600


def import_cycles(package: str) -> list[list[str]]:
    """One cycle per strongly connected group of `package`'s modules, each as the list of modules
    along it, the first repeated at the end. Imports inside functions and under TYPE_CHECKING count:
    a cycle through either is still two modules that cannot be understood one without the other."""
    graph = grimp.build_graph(package.split(".")[0], cache_dir=None)  # grimp takes top-level packages
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules)) for m in modules}
    cycles = []
    for group in _strongly_connected(edges):
        start = group[0]
        if len(group) == 1 and start not in edges[start]:
            continue
        back = next(n for n in edges[start] if n in group)
        chain = graph.find_shortest_chain(importer=back, imported=start) if back != start else (start,)
        cycles.append([start, *chain])
    return cycles


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm; each group sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in edges:
        if node not in index:
            visit(node)
    return groups


def named(cycles: list[list[str]]) -> list[str]:
    return [" -> ".join(m.rsplit(".", 1)[-1] for m in cycle) for cycle in cycles]


def test_the_reference_has_no_import_cycle():
    assert named(import_cycles(PACKAGE)) == []


@pytest.mark.parametrize("where", ["module", "function"])
def test_a_cycle_planted_in_a_copy_of_the_reference_is_found_and_named(tmp_path, monkeypatch, where):
    copy = tmp_path / "planted_streaming"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = (
        "from . import coordinator  # noqa\n" if where == "module"
        else "def _planted():\n    from .coordinator import coordinator\n    return coordinator\n"
    )
    with (copy / "channel.py").open("a") as source:
        source.write("\n" + planted)
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles = named(import_cycles("planted_streaming"))
    assert len(cycles) == 1, cycles
    # channel -> coordinator, and coordinator reaches channel again, directly or not.
    assert cycles[0].startswith("channel -> coordinator") and cycles[0].endswith(" -> channel"), cycles


def test_a_small_package_with_a_cycle_is_reported(tmp_path, monkeypatch):
    package = tmp_path / "tiny_cycle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from . import a\n")
    (package / "d.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert named(import_cycles("tiny_cycle")) == ["a -> b -> c -> a"]


def long_modules() -> list[str]:
    """Modules of the reference over MAX_LINES lines whose docstring does not say why ("Long: ")."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") >= MAX_LINES and "\nLong: " not in text.split('"""', 2)[1]:
            found.append(f"{path.relative_to(SOURCE)}: {text.count(chr(10))} lines")
    return found


def test_no_module_of_the_reference_is_long_without_saying_why():
    assert long_modules() == []


# -- no runtime state on model objects ------------------------------------------------------------


async def attributes_a_run_adds() -> set[str]:
    """What a run of a task through the coordinator adds to the Python object it ran on: only
    model fields may change, since runtime state belongs to the task row's channel."""
    task = await ExampleTask.objects.acreate(message="state")
    before = set(vars(task))
    await coordinator.start_task(task)
    async with asyncio.timeout(2):
        await coordinator.join()
    return set(vars(task)) - before


@pytest.mark.usefixtures("reference_defaults", "fresh_coordinator")
async def test_a_run_keeps_no_runtime_state_on_the_model_object():
    assert await attributes_a_run_adds() == set()


@pytest.mark.usefixtures("reference_defaults", "fresh_coordinator")
async def test_runtime_state_probe_fails_when_the_completion_marks_the_object(monkeypatch):
    complete = TaskCoordinator._complete

    async def marking(self, task, channel, result):
        task._streaming_outcome_stored = True  # what the completion path used to do
        await complete(self, task, channel, result)

    monkeypatch.setattr(TaskCoordinator, "_complete", marking)
    assert await attributes_a_run_adds() == {"_streaming_outcome_stored"}
