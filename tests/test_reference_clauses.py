"""The reference implementation against each clause, in one process.

Every clause has a probe returning the problems it sees, a test that the reference shows none, and a
test that the same probe finds problems once the fix is patched out: each test is shown able to fail.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from reference_impl.example.models import ExampleTask, FailingTask, SignalTask
from reference_impl.streaming import relay, terminal
from reference_impl.streaming.channel import Event, TaskChannel
from reference_impl.streaming.coordinator import TaskCoordinator, coordinator
from reference_impl.streaming.models import StreamTask, TaskStatus
from tests.mutants import BY_NAME
from tests.reference_support import APP, FAST, EntryCounter, drain, gaps, in_process, settle

# Each test starts with an empty process-wide coordinator and must leave it empty.
pytestmark = pytest.mark.usefixtures("reference_defaults", "fresh_coordinator")


async def sent_start(task) -> None:
    """Until the task's first event (``start``) went out: it is logged before clients see it."""
    async with asyncio.timeout(2):
        while task._latest_data is None:
            await asyncio.sleep(0.002)


async def wait_idle() -> None:
    async with asyncio.timeout(2):
        await coordinator.join()


# -- S1 identity --------------------------------------------------------------------------------


async def s1_problems() -> list[str]:
    problems = []
    task = await ExampleTask.objects.acreate(message="s1")
    lookup = asyncio.create_task(coordinator.get_task_instance(APP, "ExampleTask", task.pk))
    await asyncio.sleep(0)  # the lookup is now loading the row from the database
    await coordinator.start_task(task, APP, "ExampleTask")
    if await lookup is not task:
        problems.append("a lookup racing with start_task returned another object than the running one")
    await asyncio.sleep(0.015)
    if await coordinator.get_task_instance(APP, "ExampleTask", task.pk) is not task:
        problems.append("a lookup while the task runs returned another object")
    await wait_idle()
    return problems


@pytest.mark.clause("S1")
async def test_s1_lookups_return_the_running_object():
    assert await s1_problems() == []


async def _load_without_recheck(self, model, key):
    try:
        loaded = await model._default_manager.aget(pk=key[1])
        if not loaded.is_finished:
            await self.start_task(loaded)
        return loaded
    finally:
        del self._loads[key]


@pytest.mark.clause("S1")
async def test_s1_probe_fails_without_the_recheck_after_load(monkeypatch):
    monkeypatch.setattr(TaskCoordinator, "_load", _load_without_recheck)
    assert await s1_problems() == [
        "a lookup racing with start_task returned another object than the running one"
    ]


@pytest.mark.clause("S1")
async def test_s1_concurrent_lookups_share_one_load(monkeypatch):
    task = await SignalTask.objects.acreate()
    lookups = (coordinator.get_task_instance(APP, "SignalTask", task.pk) for _ in range(5))
    found = await asyncio.gather(*lookups)
    assert all(obj is found[0] for obj in found)
    assert coordinator.resources()["loads"] == 0
    await SignalTask.release(task.pk)
    await wait_idle()


# -- S2 no orphan clients -----------------------------------------------------------------------


async def s2_problems() -> list[str]:
    task = await ExampleTask.objects.acreate(message="s2")
    other = await ExampleTask.objects.aget(pk=task.pk)  # a second Python object of the same row
    queue: asyncio.Queue = asyncio.Queue()
    await other.add_client(queue)
    await coordinator.start_task(task)
    events, ended = await drain(queue, timeout=1.0)
    await wait_idle()
    kinds = [e["type"] for e in events]
    if kinds != ["start", "progress", "progress", "progress", "complete"]:
        return [f"a client attached through another instance received {kinds} (ended: {ended})"]
    return []


@pytest.mark.clause("S2")
async def test_s2_client_on_another_instance_gets_every_event():
    assert await s2_problems() == []


@pytest.mark.clause("S2")
async def test_s2_probe_fails_when_state_belongs_to_the_object(monkeypatch):
    per_object = property(lambda self: (self._meta.label_lower, self.pk, id(self)))
    monkeypatch.setattr(StreamTask, "stream_key", per_object)
    # Without the event log too: the relay would otherwise bring the events to the other object.
    with override_settings(STREAMING_EVENT_LOG=False):
        problems = await s2_problems()
    assert problems and "received []" in problems[0]


@pytest.mark.clause("S2")
async def test_instances_created_by_init_do_not_wipe_runtime_state():
    task = await SignalTask.objects.acreate()
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task)
    await sent_start(task)
    reloaded = await SignalTask.objects.aget(pk=task.pk)  # Django's __init__ runs again
    assert reloaded._clients == task._clients == frozenset({queue})
    assert reloaded._latest_data is task._latest_data is not None
    await SignalTask.release(task.pk)
    await wait_idle()


# -- S3 latest-event replay ---------------------------------------------------------------------


async def s3_problems() -> list[str]:
    """Joiners arrive between sends; each must get the latest event, then every later one."""
    problems = []
    task = await SignalTask.objects.acreate()
    await coordinator.start_task(task)
    await sent_start(task)
    joiners: list[tuple[int, asyncio.Queue]] = []
    for n in range(1, 6):
        await task.send_event("tick", {"n": n})
        latest = task._latest_data["id"]
        queue: asyncio.Queue = asyncio.Queue()
        instance = await SignalTask.objects.aget(pk=task.pk) if n % 2 else task
        await instance.add_client(queue)
        joiners.append((latest, queue))
    await SignalTask.release(task.pk)
    for number, (latest, queue) in enumerate(joiners, 1):
        events, ended = await drain(queue)
        if not events or events[0]["id"] != latest:
            problems.append(f"joiner {number} joined after event {latest} but its first event was "
                            f"{events[0]['id'] if events else 'none'}")
        problems += [f"joiner {number}: {gap}" for gap in gaps(events)]
        if not ended:
            problems.append(f"joiner {number} never got the terminal event")
    await wait_idle()
    return problems


@pytest.mark.clause("S3")
async def test_s3_joiners_get_latest_then_every_later_event():
    assert await s3_problems() == []


@pytest.mark.clause("S3")
async def test_s3_probe_fails_without_replay(monkeypatch):
    register = TaskChannel.attach

    def attach_without_replay(self, queue, last_event_id=None):
        latest, self.latest = self.latest, None  # registered as usual, with nothing to replay
        try:
            register(self, queue, last_event_id)
        finally:
            self.latest = latest

    monkeypatch.setattr(TaskChannel, "attach", attach_without_replay)
    problems = await s3_problems()
    assert len(problems) == 5 and "joiner 1 joined after event 2 but its first event was 3" in problems


@pytest.mark.clause("S3")
async def test_s3_resume_skips_what_the_client_has():
    task = await SignalTask.objects.acreate()
    await coordinator.start_task(task)
    await sent_start(task)
    await task.send_event("tick", {})
    latest = task._latest_data["id"]
    has_it: asyncio.Queue = asyncio.Queue()
    await task.add_client(has_it, last_event_id=latest)
    lacks_it: asyncio.Queue = asyncio.Queue()
    await task.add_client(lacks_it, last_event_id=latest - 1)
    assert has_it.empty() and lacks_it.get_nowait()["id"] == latest
    await SignalTask.release(task.pk)
    await wait_idle()


# -- S4 single execution ------------------------------------------------------------------------


async def s4_entries(monkeypatch) -> int:
    counter = EntryCounter(monkeypatch, ExampleTask)
    task = await ExampleTask.objects.acreate(message="s4")
    copy = await ExampleTask.objects.aget(pk=task.pk)
    await asyncio.gather(
        *(coordinator.get_task_instance(APP, "ExampleTask", task.pk) for _ in range(5)),
        coordinator.start_task(task),
        coordinator.start_task(copy),
    )
    await wait_idle()
    return counter.count


@pytest.mark.clause("S4")
async def test_s4_concurrent_starts_and_lookups_run_process_once(monkeypatch):
    assert await s4_entries(monkeypatch) == 1


@pytest.mark.clause("S4")
async def test_s4_probe_fails_with_an_await_between_check_and_start(monkeypatch):
    original = TaskCoordinator.start_task

    async def check_then_start(self, task, app_name=None, model_name=None):
        if task.stream_key in self._tasks:
            return
        await asyncio.sleep(0)
        self._tasks.pop(task.stream_key, None)  # the check above is stale by now
        await original(self, task, app_name, model_name)

    monkeypatch.setattr(TaskCoordinator, "start_task", check_then_start)
    assert await s4_entries(monkeypatch) > 1


# -- S5 completion ------------------------------------------------------------------------------


async def s5_problems(monkeypatch) -> list[str]:
    problems = []
    counter = EntryCounter(monkeypatch, ExampleTask)
    task = await ExampleTask.objects.acreate(message="s5")
    stale = await ExampleTask.objects.aget(pk=task.pk)
    queues = [asyncio.Queue() for _ in range(3)]
    for queue in queues:
        await task.add_client(queue)
    await coordinator.start_task(task)
    for number, queue in enumerate(queues, 1):
        events, ended = await drain(queue)
        if not ended or events[-1]["type"] != "complete" or not queue.empty():
            problems.append(f"client {number} did not end on the terminal event")
    await wait_idle()
    terminal_id = events[-1]["id"]
    if coordinator.resources() != dict.fromkeys(coordinator.resources(), 0):
        problems.append(f"the coordinator still holds {coordinator.resources()}")
    late: asyncio.Queue = asyncio.Queue()
    await stale.add_client(late)
    events, ended = await drain(late, timeout=0.5)
    if [e["id"] for e in events] != [terminal_id]:
        problems.append(f"a joiner after the end got {events} instead of the terminal event")
    await coordinator.start_task(stale)
    found = await coordinator.get_task_instance(APP, "ExampleTask", task.pk)
    await wait_idle()
    if found is None or found.status != TaskStatus.COMPLETED or found.final_value["message"] != "s5":
        problems.append("the final state was not persisted")
    if counter.count != 1:
        problems.append(f"process() ran {counter.count} times")
    return problems


@pytest.mark.clause("S5")
async def test_s5_clients_end_late_joiners_get_the_end_and_nothing_reruns(monkeypatch):
    assert await s5_problems(monkeypatch) == []


@pytest.mark.clause("S5")
async def test_s5_probe_fails_without_the_database_claim(monkeypatch):
    async def always_claim(self, task):
        return True

    monkeypatch.setattr(TaskCoordinator, "_claim", always_claim)
    # Without the event log too: a run resumed over a log that ends in the terminal event stores
    # the outcome instead of running again, a second guard that would hide the first.
    with override_settings(STREAMING_EVENT_LOG=False):
        assert await s5_problems(monkeypatch) == ["process() ran 2 times"]


@pytest.mark.clause("S5")
async def test_s5_task_sending_no_terminal_event_still_ends_streams():
    task = await SignalTask.objects.acreate()
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task)
    await SignalTask.release(task.pk, payload={"answer": 42})
    events, ended = await drain(queue)
    assert ended and [e["type"] for e in events] == ["start", "released", "complete"]
    assert events[-1]["data"] == {"final_value": {"answer": 42}}


@pytest.mark.clause("S5")
async def test_s5_mark_completed_outside_the_coordinator_ends_streams():
    task = await SignalTask.objects.acreate()
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)  # attached, never started
    await task.mark_completed({"by": "admin"})
    events, ended = await drain(queue, timeout=0.5)
    assert ended and events[-1]["data"] == {"final_value": {"by": "admin"}}
    assert coordinator.resources()["channels"] == 0


# -- S6 failure ---------------------------------------------------------------------------------


async def s6_problems(monkeypatch) -> list[str]:
    problems = []
    counter = EntryCounter(monkeypatch, FailingTask)
    task = await FailingTask.objects.acreate(message="kaboom")
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task)
    events, ended = await drain(queue)
    if not ended or events[-1]["type"] != "error" or events[-1]["data"] != {
        "message": "kaboom", "error_type": "RuntimeError"
    }:
        problems.append(f"the client's last event was {events[-1] if events else None}")
    await wait_idle()
    row = await FailingTask.objects.aget(pk=task.pk)
    if row.status != TaskStatus.FAILED or row.error != {"message": "kaboom", "error_type": "RuntimeError"}:
        problems.append(f"the row says status={row.status} error={row.error}")
    again = await coordinator.get_task_instance(APP, "FailingTask", task.pk)
    late: asyncio.Queue = asyncio.Queue()
    if again is not None:
        await again.add_client(late)
    late_events, _ = await drain(late, timeout=0.5)
    await wait_idle()
    if not late_events or late_events[0]["type"] != "error":
        problems.append(f"a joiner after the failure got {late_events}")
    if counter.count != 1:
        problems.append(f"process() ran {counter.count} times")
    return problems


@pytest.mark.clause("S6")
async def test_s6_failure_is_persisted_reported_and_not_rerun(monkeypatch):
    assert await s6_problems(monkeypatch) == []


@pytest.mark.clause("S6")
async def test_s6_probe_fails_when_failure_is_not_persisted(monkeypatch):
    async def fail_in_memory_only(self, task, channel, exc):
        self._end(channel, channel.make_event("error", terminal.error_data(exc), "now"))

    monkeypatch.setattr(TaskCoordinator, "_fail", fail_in_memory_only)
    problems = await s6_problems(monkeypatch)
    assert any("status=running" in p for p in problems)
    assert "process() ran 2 times" in problems


# -- S7 restart and S7.2 replay after restart ----------------------------------------------------
# Processes are coordinators side by side in this loop (as the harness simulates them); a crash is
# `shutdown()` without its clean-up: the run stops, the row stays running under the dead owner's lease.


async def _no_release(self, task) -> None:
    """What a crash does with the task's claim: nothing."""


async def crash(process: TaskCoordinator, monkeypatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(TaskCoordinator, "_release", _no_release)
        await in_process(process, process.shutdown)


async def s7_problems(monkeypatch) -> list[str]:
    """p0 crashes while running a task; p1 and p2, started after it, have a client each. Nobody may
    resume it while p0's lease holds, then exactly one process resumes it, and both clients first
    get the event that was latest before the crash, then every later one."""
    problems = []
    counter = EntryCounter(monkeypatch, SignalTask)
    task = await SignalTask.objects.acreate()
    p0, p1, p2 = TaskCoordinator("p0"), TaskCoordinator("p1"), TaskCoordinator("p2")
    await in_process(p0, lambda: p0.start_task(task))
    async with asyncio.timeout(2):
        while counter.count == 0 or p0.channel_of(task).latest is None:
            await asyncio.sleep(0.002)
    await in_process(p0, lambda: task.send_event("tick", {}))
    latest = p0.channel_of(task).latest["id"]
    await crash(p0, monkeypatch)
    clients = {p1: asyncio.Queue(), p2: asyncio.Queue()}

    async def join(process: TaskCoordinator) -> None:
        instance = await SignalTask.objects.aget(pk=task.pk)
        await instance.add_client(clients[process])

    await asyncio.gather(*(in_process(p, lambda p=p: join(p)) for p in clients))
    if counter.count != 1:
        problems.append("the task was resumed while its dead owner's lease still held")
    async with asyncio.timeout(2):
        while counter.count < 2:
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)  # two renewal periods: a second takeover would have happened by now
    await SignalTask.release(task.pk)
    for process, queue in clients.items():
        events, ended = await drain(queue)
        if not events or events[0]["id"] != latest:
            problems.append(f"the client in {process.name} first got "
                            f"{events[0]['id'] if events else 'nothing'}, not event {latest}")
        problems += [f"the client in {process.name}: {gap}" for gap in gaps(events)]
        if not ended or events[-1]["type"] != "complete":
            problems.append(f"the client in {process.name} did not end on the terminal event")
    await settle(p1, p2)
    if counter.count != 2:
        problems.append(f"process() was entered {counter.count - 1} times after the crash")
    return problems


@pytest.mark.clause("S7")
async def test_s7_a_crashed_task_is_resumed_once_after_its_lease_and_clients_get_its_latest_event(
    monkeypatch,
):
    with override_settings(**FAST):
        assert await s7_problems(monkeypatch) == []


@pytest.mark.clause("S7")
async def test_s7_probe_fails_when_a_takeover_leaves_the_dead_lease(monkeypatch):
    with override_settings(**FAST), BY_NAME["takeover_keeps_the_dead_lease"].patched():
        problems = await s7_problems(monkeypatch)
    # Real time: under load a third takeover may slip in before the first renewal; two or more
    # entries after the crash is the violation.
    entries = [int(m.group(1)) for p in problems if (m := re.fullmatch(r"process\(\) was entered (\d+) "
                                                                           r"times after the crash", p))]
    assert entries and entries[0] >= 2, problems


async def crashed_with_events(count: int) -> SignalTask:
    """A task whose owner died (its lease ran out) after logging `count` progress events."""
    task = await SignalTask.objects.acreate()
    expired = timezone.now() - timedelta(seconds=1)
    await SignalTask.objects.filter(pk=task.pk).aupdate(status=TaskStatus.RUNNING, owner="p0:dead",
                                                        lease_expires_at=expired)
    for seq in range(1, count + 1):
        await relay.append(task.stream_key, Event("progress", {"step": seq}, "t", seq))
    return task


async def s7_2_problems(monkeypatch) -> list[str]:
    """A lookup in a new process resumes the task; a client joining it before the resumed run sent
    anything must first get the last event logged before the crash, then the run's events."""
    problems = []
    task = await crashed_with_events(3)
    entered, go = asyncio.Event(), asyncio.Event()
    original = SignalTask.process

    async def held(self):  # the resumed run sends nothing until the client joined
        entered.set()
        await go.wait()
        return await original(self)

    monkeypatch.setattr(SignalTask, "process", held)
    p1 = TaskCoordinator("p1")
    found = await in_process(p1, lambda: p1.get_task_instance(APP, "SignalTask", task.pk))
    async with asyncio.timeout(2):
        await entered.wait()
    client: asyncio.Queue = asyncio.Queue()
    await in_process(p1, lambda: found.add_client(client))
    first = None if client.empty() else client.get_nowait()
    if first is None or first["id"] != 3:
        problems.append(f"a joiner of the resumed task first got {first and first['id']}, not event 3")
    go.set()
    await SignalTask.release(task.pk)
    events, ended = await drain(client)
    events = [first, *events] if first else events
    problems += gaps(events)
    if not ended or [e["type"] for e in events][-3:] != ["start", "released", "complete"]:
        problems.append(f"the joiner got {[e['type'] for e in events]}")
    await settle(p1)
    return problems


@pytest.mark.clause("S7.2")
async def test_s7_2_a_joiner_of_a_resumed_task_first_gets_the_last_logged_event(monkeypatch):
    with override_settings(**FAST):
        assert await s7_2_problems(monkeypatch) == []


@pytest.mark.clause("S7.2")
async def test_s7_2_probe_fails_when_the_resume_does_not_replay(monkeypatch):
    with override_settings(**FAST), BY_NAME["resume_without_replay"].patched():
        problems = await s7_2_problems(monkeypatch)
    assert problems == ["a joiner of the resumed task first got None, not event 3"], problems


# -- S7.3 graceful shutdown ----------------------------------------------------------------------
# A graceful shutdown is `shutdown()` with its clean-up: the cancelled run gives its claim up.


async def s7_3_problems(monkeypatch) -> list[str]:
    """p0 runs a task with a client in p1 and shuts down gracefully: the row must stay unfinished
    and unclaimed, the client must hear no end, and a lookup in p1 must resume the task at once
    (well inside the lease), the client then getting every event to the terminal one."""
    problems = []
    counter = EntryCounter(monkeypatch, SignalTask)
    task = await SignalTask.objects.acreate()
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    await in_process(p0, lambda: p0.start_task(task))
    async with asyncio.timeout(2):
        while counter.count == 0 or p0.channel_of(task).latest is None:
            await asyncio.sleep(0.002)
    client: asyncio.Queue = asyncio.Queue()
    found = await in_process(p1, lambda: p1.get_task_instance(APP, "SignalTask", task.pk))
    await in_process(p1, lambda: found.add_client(client))
    await in_process(p0, p0.shutdown)
    row = await SignalTask.objects.aget(pk=task.pk)
    if row.status in (TaskStatus.FAILED, TaskStatus.COMPLETED):
        problems.append(f"the shutdown stored the task as {row.status}")
    if row.owner:
        problems.append("the shutdown kept the task's claim: a new process waits out the lease")
    again = await in_process(p1, lambda: p1.get_task_instance(APP, "SignalTask", task.pk))
    if again is None:
        problems.append("the task cannot be looked up after the shutdown")
    try:
        async with asyncio.timeout(0.2):  # less than the lease (0.3 s)
            while counter.count < 2:
                await asyncio.sleep(0.005)
    except TimeoutError:
        problems.append("nobody resumed the task within the lease after the shutdown")
    await SignalTask.release(task.pk)
    events, ended = await drain(client)
    problems += [f"the client in p1: {gap}" for gap in gaps(events)]
    if any(e["type"] == "error" for e in events):
        problems.append("the client in p1 was told the task failed")
    if not ended or not events or events[-1]["type"] != "complete":
        problems.append(f"the client in p1 got {[e['type'] for e in events]}, not the task's end")
    await settle(p1)
    return problems


@pytest.mark.clause("S7.3")
async def test_s7_3_a_graceful_shutdown_leaves_the_task_to_resume_at_once(monkeypatch):
    with override_settings(**FAST):
        assert await s7_3_problems(monkeypatch) == []


@pytest.mark.clause("S7.3")
async def test_s7_3_probe_fails_when_the_shutdown_is_stored_as_a_failure(monkeypatch):
    with override_settings(**FAST), BY_NAME["shutdown_fails_the_task"].patched():
        problems = await s7_3_problems(monkeypatch)
    assert "the shutdown stored the task as failed" in problems, problems
    assert "the client in p1 was told the task failed" in problems, problems


# -- S8 hygiene and bounded resources -----------------------------------------------------------


@pytest.mark.clause("S8")
async def test_s8_nothing_is_left_after_completion_and_disconnect():
    task = await ExampleTask.objects.acreate(message="s8")
    never_read: asyncio.Queue = asyncio.Queue()
    await task.add_client(never_read)  # a client that never calls remove_client
    await coordinator.start_task(task)
    await wait_idle()
    assert set(coordinator.resources().values()) == {0}, coordinator.resources()

    pending = await SignalTask.objects.acreate()
    queue: asyncio.Queue = asyncio.Queue()
    await pending.add_client(queue)
    assert coordinator.resources()["clients"] == 1
    await pending.remove_client(queue)
    assert coordinator.resources()["channels"] == 0


# -- S8.2 bounded client buffers ------------------------------------------------------------------


async def s8_slow_reader_problems() -> list[str]:
    problems = []
    task = await SignalTask.objects.acreate()
    slow: asyncio.Queue = asyncio.Queue()  # unbounded, never read
    full: asyncio.Queue = asyncio.Queue(maxsize=2)  # bounded, never read
    reader: asyncio.Queue = asyncio.Queue()
    for queue in (slow, full, reader):
        await task.add_client(queue)
    await coordinator.start_task(task)
    await sent_start(task)
    for n in range(20):
        await task.send_event("tick", {"n": n})
        reader.get_nowait()
    if slow.qsize() > 4:
        problems.append(f"a client that never reads holds {slow.qsize()} events")
    for name, queue in (("unbounded", slow), ("bounded", full)):
        items = [queue.get_nowait() for _ in range(queue.qsize())]
        if not items or items[-1]["type"] != "overflow":
            problems.append(f"the {name} slow client got no overflow notice")
    await SignalTask.release(task.pk)
    _, ended = await drain(reader)
    if not ended:
        problems.append("a reading client was held back by slow ones")
    await wait_idle()
    return problems


@pytest.mark.clause("S8.2")
async def test_s8_2_slow_readers_are_dropped_with_a_notice():
    with override_settings(STREAMING_CLIENT_BUFFER=3):
        assert await s8_slow_reader_problems() == []


@pytest.mark.clause("S8.2")
async def test_s8_2_probe_fails_without_the_buffer_bound(monkeypatch):
    monkeypatch.setattr(TaskChannel, "_overflow", lambda self, queue: None)
    with override_settings(STREAMING_CLIENT_BUFFER=3):
        problems = await s8_slow_reader_problems()
    assert "a client that never reads holds 21 events" in problems


@pytest.mark.clause("S8.2")
async def test_s8_2_an_unbounded_queue_is_dropped_at_the_event_that_takes_it_past_the_limit():
    from reference_impl.streaming.channel import OVERFLOW, Event

    channel = TaskChannel(("example.exampletask", 1), limit=4)
    reader, idle, prefilled = asyncio.Queue(), asyncio.Queue(), asyncio.Queue()
    channel.attach(reader)
    channel.attach(idle)
    for seq in range(1, 4):
        channel.publish(Event("progress", {}, "t", seq))
        reader.get_nowait()
    prefilled.put_nowait("mine")
    channel.attach(prefilled)  # joins late with an item of its own and the replay: 2 waiting
    channel.publish(Event("progress", {}, "t", 4))  # idle: 4, prefilled: 3
    assert set(channel.clients) == {reader, idle, prefilled}
    channel.publish(Event("progress", {}, "t", 5))  # idle: 5 > 4
    assert set(channel.clients) == {reader, prefilled}
    assert [e["type"] for e in [idle.get_nowait()]] == [OVERFLOW] and idle.empty()
    channel.publish(Event("progress", {}, "t", 6))  # prefilled: 5 > 4
    assert set(channel.clients) == {reader}
    assert [reader.get_nowait()["id"] for _ in range(3)] == [4, 5, 6]
    for seq in range(7, 100):  # a reader that keeps up is never dropped
        channel.publish(Event("progress", {}, "t", seq))
        assert reader.qsize() == 1 and reader.get_nowait()["id"] == seq
    assert set(channel.clients) == {reader}


# -- API surface --------------------------------------------------------------------------------


async def test_events_carry_increasing_ids_and_the_upstream_fields():
    task = await ExampleTask.objects.acreate(message="ids")
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task)
    events, _ = await drain(queue)
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5]
    assert all(set(e) == {"type", "data", "timestamp", "id"} for e in events)


async def test_generators_send_progress_events_and_return_the_last_value():
    task = await SignalTask.objects.acreate()
    queue: asyncio.Queue = asyncio.Queue()
    await task.add_client(queue)
    await coordinator.start_task(task)

    async def agen():
        yield {"a": 1}
        yield {"a": 2}

    assert await task.process_generator(agen()) == {"a": 2}
    assert await task.process_sync_generator(iter([{"b": 1}])) == {"b": 1}
    await SignalTask.release(task.pk)
    events, _ = await drain(queue)
    assert [e["data"] for e in events if e["type"] == "progress"] == [{"a": 1}, {"a": 2}, {"b": 1}]


async def test_lookups_of_unknown_models_rows_and_ids_return_none():
    assert await coordinator.get_task_instance("nope", "Nothing", 1) is None
    assert await coordinator.get_task_instance("streaming", "StreamTask", 1) is None
    assert await coordinator.get_task_instance(APP, "ExampleTask", 10**12) is None
    assert await coordinator.get_task_instance(APP, "ExampleTask", "abc") is None
    assert coordinator.is_task_running(APP, "ExampleTask", "abc") is False
    assert coordinator.resources()["loads"] == 0


async def test_misuse_is_refused_with_a_clear_error():
    task = await ExampleTask.objects.acreate(message="x")
    with pytest.raises(ValueError, match="not the model of"):
        await coordinator.start_task(task, APP, "SignalTask")
    with pytest.raises(ValueError, match="save it before streaming"):
        await ExampleTask(message="unsaved").add_client(asyncio.Queue())


async def test_each_coordinator_keeps_its_own_tasks():
    other = TaskCoordinator("p1")
    task = await SignalTask.objects.acreate()

    async def in_other_process():
        other.activate()
        found = await other.get_task_instance(APP, "SignalTask", task.pk)
        assert other.is_task_running(APP, "SignalTask", task.pk)
        return found

    found = await asyncio.create_task(in_other_process())
    assert not coordinator.is_task_running(APP, "SignalTask", task.pk)
    await SignalTask.release(task.pk)
    async with asyncio.timeout(2):
        await other.join()
    assert found.status == TaskStatus.COMPLETED and other.resources()["channels"] == 0


def test_the_slow_readers_bursts_overflow_the_documented_bound(sut_adapter):
    """A burst the family draws is past the implementation's bound: its S8.2 is what is judged."""
    from scenarios import verify
    from scenarios.floods import burst_size
    from scenarios.program import iter_ops

    seen: list[int] = []

    def count_releases(family, program, outcome):
        seen.extend(s.get("count", 1) for s in iter_ops(program) if s["op"] == "release")

    verify(sut_adapter, families=["slow_readers"], profile="dev", seed=3, on_example=count_releases)
    bound = burst_size(sut_adapter)
    assert bound in seen
    assert bound > sut_adapter.buffer_limit()
