"""The reference across processes: two coordinators on one database, as two server processes.

Each test runs coordinators side by side in one event loop; tasks created from a coroutine that
activated a coordinator belong to it, exactly as the harness simulates processes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from reference_impl.example.models import ExampleTask, SignalTask
from reference_impl.streaming import relay
from reference_impl.streaming.coordinator import TaskCoordinator
from tests.reference_support import APP, FAST, EntryCounter, drain, gaps, in_process, settle

pytestmark = pytest.mark.usefixtures("reference_defaults")

@pytest.fixture(autouse=True)
def fast_relay():
    with override_settings(**FAST):
        yield


async def two_process_problems(monkeypatch) -> list[str]:
    problems = []
    counter = EntryCounter(monkeypatch, SignalTask)
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    task = await SignalTask.objects.acreate()
    await in_process(p0, lambda: p0.get_task_instance(APP, "SignalTask", task.pk))
    await asyncio.sleep(0.05)
    remote: asyncio.Queue = asyncio.Queue()

    async def join_in_p1():
        found = await p1.get_task_instance(APP, "SignalTask", task.pk)
        await found.add_client(remote)

    await in_process(p1, join_in_p1)
    await asyncio.sleep(0.05)
    running = p0._instances.get(("example.signaltask", task.pk))
    await in_process(p0, lambda: running.send_event("tick", {"n": 1}))
    await SignalTask.release(task.pk)
    events, ended = await drain(remote)
    await settle(p0, p1)
    if counter.count != 1:
        problems.append(f"process() ran {counter.count} times across two processes")
    kinds = [e["type"] for e in events]
    if kinds != ["start", "tick", "released", "complete"] or gaps(events) or not ended:
        problems.append(f"a client in the other process received {kinds} (ended: {ended})")
    for c in (p0, p1):
        if set(c.resources().values()) != {0}:
            problems.append(f"{c.name} still holds {c.resources()}")
    return problems


@pytest.mark.clause("S4")
@pytest.mark.clause("S2")
async def test_a_task_runs_once_and_other_processes_relay_its_events(monkeypatch):
    assert await two_process_problems(monkeypatch) == []


@pytest.mark.clause("S4")
async def test_two_process_probe_fails_without_the_lease(monkeypatch):
    original = TaskCoordinator._claim

    async def claim_ignoring_leases(self, task):
        await original(self, task)
        return "claimed"

    monkeypatch.setattr(TaskCoordinator, "_claim", claim_ignoring_leases)
    problems = await two_process_problems(monkeypatch)
    # Twice at least: each process runs it (the second may run it again when it takes over).
    runs = [int(m[1]) for m in (re.match(r"process\(\) ran (\d+) times", p) for p in problems) if m]
    assert runs and runs[0] >= 2, problems


@pytest.mark.clause("S7")
async def test_a_task_whose_owner_died_is_taken_over_once_and_continues_its_numbering(monkeypatch):
    counter = EntryCounter(monkeypatch, ExampleTask)
    task = await ExampleTask.objects.acreate(message="resumed")
    # A process died while running it: its lease is in the past, three events are logged.
    await ExampleTask.objects.filter(pk=task.pk).aupdate(
        status="running", owner="dead:0", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    key = ("example.exampletask", task.pk)
    for seq in (1, 2, 3):
        await relay.append(key, relay.Event("progress", {"step": seq}, "t", seq))
    p1, p2 = TaskCoordinator("p1"), TaskCoordinator("p2")
    joiners = [asyncio.Queue(), asyncio.Queue()]

    async def join(coordinator, queue):
        instance = await ExampleTask.objects.aget(pk=task.pk)
        await instance.add_client(queue)

    await asyncio.gather(in_process(p1, lambda: join(p1, joiners[0])),
                         in_process(p2, lambda: join(p2, joiners[1])))
    results = [await drain(q) for q in joiners]
    await settle(p1, p2)
    assert counter.count == 1  # taken over by one process only
    for events, ended in results:
        assert ended and events[0]["id"] == 3 and events[0]["data"] == {"step": 3}  # last logged first
        assert [e["id"] for e in events] == list(range(3, 3 + len(events)))
        assert [e["type"] for e in events][-1] == "complete"
    row = await ExampleTask.objects.aget(pk=task.pk)
    assert row.status == "completed" and row.owner == "" and row.last_event["id"] == 8


@pytest.mark.clause("S4")
async def test_a_process_that_lost_its_lease_stops_and_follows_the_new_owner():
    p0 = TaskCoordinator("p0")
    task = await SignalTask.objects.acreate()
    queue: asyncio.Queue = asyncio.Queue()

    async def start_and_join():
        await task.add_client(queue)
        await p0.start_task(task)

    await in_process(p0, start_and_join)
    await asyncio.sleep(0.05)
    # Another process stole the row (as if p0 had stalled past its lease) and will finish it.
    await SignalTask.objects.filter(pk=task.pk).aupdate(owner="thief:1")
    async with asyncio.timeout(2):
        while p0.is_task_running(APP, "SignalTask", task.pk):
            await asyncio.sleep(0.01)
    assert p0.resources()["relays"] == 1  # its client is now served from the log
    await SignalTask.objects.filter(pk=task.pk).aupdate(
        status="completed", completed_at=timezone.now(), final_value={"by": "thief"}, owner=""
    )
    events, ended = await drain(queue)
    assert ended and events[-1]["data"] == {"final_value": {"by": "thief"}}
    await settle(p0)
    assert set(p0.resources().values()) == {0}


async def test_without_the_event_log_nothing_is_written_per_event():
    with override_settings(STREAMING_EVENT_LOG=False):
        task = await ExampleTask.objects.acreate(message="quiet")
        coordinator = TaskCoordinator("solo")
        queue: asyncio.Queue = asyncio.Queue()

        async def run():
            await task.add_client(queue)
            await coordinator.start_task(task)

        await in_process(coordinator, run)
        events, ended = await drain(queue)
        await coordinator.join()
    assert ended and len(events) == 5
    assert await relay.latest(("example.exampletask", task.pk)) is None


# -- what the relay has not read yet ---------------------------------------------------------------
# The relay reads the log once per poll. These tests poll rarely (10 s), so within a test the relay
# never reads: whatever the client gets beyond the first replay comes from the fix under test.

SLOW_RELAY = {**FAST, "STREAMING_POLL_SECONDS": 10.0, "STREAMING_LEASE_SECONDS": 60.0}


async def joiner_of_a_relayed_task_first_event() -> int:
    """The id of the first event a second client in p1 gets, joining after p0 logged event 2."""
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    task = await SignalTask.objects.acreate()
    await in_process(p0, lambda: p0.start_task(task))
    async with asyncio.timeout(2):
        while await relay.latest(task.stream_key) is None:
            await asyncio.sleep(0.01)
    first, second = asyncio.Queue(), asyncio.Queue()
    reloaded = await SignalTask.objects.aget(pk=task.pk)
    await in_process(p1, lambda: reloaded.add_client(first))  # relayed from now on: start (1)
    await in_process(p0, lambda: task.send_event("tick", {"n": 1}))  # logged as 2, relay asleep
    await in_process(p1, lambda: reloaded.add_client(second))
    got = second.get_nowait()
    await SignalTask.release(task.pk)
    for queue in (first, second):
        await drain(queue)
    await p0.shutdown()
    await p1.shutdown()
    return got["id"]


@pytest.mark.clause("S3")
async def test_a_joiner_of_a_task_running_elsewhere_first_gets_its_latest_logged_event():
    with override_settings(**SLOW_RELAY):
        assert await joiner_of_a_relayed_task_first_event() == 2


@pytest.mark.clause("S3")
async def test_relayed_joiner_probe_fails_without_the_catch_up(monkeypatch):
    async def no_catch_up(self, key, channel):
        return False

    monkeypatch.setattr(TaskCoordinator, "_catch_up", no_catch_up)
    with override_settings(**SLOW_RELAY):
        assert await joiner_of_a_relayed_task_first_event() == 1  # the relay's stale latest


async def ids_seen_across_a_takeover() -> list[int]:
    """A client in p1 relayed up to event 2; the owner logs 3 and 4, dies; p1 takes the task over."""
    task = await ExampleTask.objects.acreate(message="taken over")
    key = task.stream_key
    await ExampleTask.objects.filter(pk=task.pk).aupdate(
        status="running", owner="p0:dead", lease_expires_at=timezone.now() + timedelta(seconds=60)
    )
    for seq in (1, 2):
        await relay.append(key, relay.Event("progress", {"step": seq}, "t", seq))
    p1 = TaskCoordinator("p1")
    client: asyncio.Queue = asyncio.Queue()
    reloaded = await ExampleTask.objects.aget(pk=task.pk)
    await in_process(p1, lambda: reloaded.add_client(client))  # follows p0: gets 2
    for seq in (3, 4):  # p0 went on, then died; the relay is asleep
        await relay.append(key, relay.Event("progress", {"step": seq}, "t", seq))
    expired = timezone.now() - timedelta(seconds=1)
    await ExampleTask.objects.filter(pk=task.pk).aupdate(lease_expires_at=expired)
    await in_process(p1, lambda: p1.get_task_instance(APP, "ExampleTask", task.pk))  # takes it over
    events, ended = await drain(client)
    await settle(p1)
    assert ended
    return [e["id"] for e in events]


@pytest.mark.clause("S2")
async def test_a_process_taking_a_task_over_first_delivers_what_its_clients_missed():
    with override_settings(**SLOW_RELAY):
        ids = await ids_seen_across_a_takeover()
    assert ids[:3] == [2, 3, 4] and gaps([{"id": i} for i in ids]) == []


@pytest.mark.clause("S2")
async def test_takeover_probe_fails_when_only_the_latest_logged_event_is_read(monkeypatch):
    async def only_the_latest(key, seq):
        last = await relay.latest(key)
        return [] if last is None or last["id"] <= seq else [last]

    monkeypatch.setattr(relay, "after", only_the_latest)
    with override_settings(**SLOW_RELAY):
        ids = await ids_seen_across_a_takeover()
    assert ids[:2] == [2, 4]  # event 3 never reached the client


async def _asked_while_finishing(monkeypatch, stored: bool, resuming: bool = False):
    """Run a SignalTask to its end in one coordinator, hold it inside `mark_completed` (before the
    outcome is stored, or with it stored), and open a stream of it there, as a client asking at
    that moment would (`resuming`: with the id of the terminal event as its Last-Event-ID). The
    response."""
    from reference_impl.streaming.access import sign
    from reference_impl.streaming.streams import StreamLimiter, open_stream

    reached, done = asyncio.Event(), asyncio.Event()
    original = SignalTask.mark_completed

    async def held_mark_completed(self, *args, **kwargs):
        result = await original(self, *args, **kwargs) if stored else None
        reached.set()
        await done.wait()
        return result if stored else await original(self, *args, **kwargs)

    monkeypatch.setattr(SignalTask, "mark_completed", held_mark_completed)
    coordinator = TaskCoordinator("server")
    task = await SignalTask.objects.acreate()
    await in_process(coordinator, lambda: coordinator.start_task(task))
    await SignalTask.release(task.pk)
    async with asyncio.timeout(2):
        await reached.wait()
    terminal = coordinator.channel_of(task).ended
    assert coordinator.is_task_running(APP, "SignalTask", task.pk) and terminal is not None
    resume = str(terminal["id"]) if resuming else None

    async def ask():
        return await open_stream(APP, "SignalTask", str(task.pk), resume, limiter=StreamLimiter(10),
                                 coordinator=coordinator, token=sign(task._meta.label_lower, task.pk))

    response = await in_process(coordinator, ask)
    done.set()
    await response.aclose()
    await settle(coordinator)
    return response


@pytest.mark.clause("S5")
async def test_a_resumer_that_has_the_terminal_event_gets_204_while_the_outcome_is_stored(monkeypatch):
    """Between the terminal event and the stored outcome the task still runs here; a reconnecting
    client that already has that event must be told to stop, not kept waiting for nothing."""
    response = await _asked_while_finishing(monkeypatch, stored=False, resuming=True)
    assert response.status == 204


@pytest.mark.clause("S5")
async def test_a_plain_request_after_the_outcome_is_stored_gets_the_json_even_before_the_task_is_let_go(
        monkeypatch):
    """The outcome is on the row, but the coordinator has not let the task go yet: a client that
    is not an SSE client gets the finished task's JSON document, as it would a moment later."""
    response = await _asked_while_finishing(monkeypatch, stored=True)
    assert (response.status, response.headers["Content-Type"]) == (200, "application/json")
    assert json.loads(response.body)["status"] == "completed"


async def test_the_log_stores_events_as_sent_and_refuses_a_taken_number():
    from django.db import IntegrityError

    task = await ExampleTask.objects.acreate(message="logged")
    key = ("example.exampletask", task.pk)
    sent = [
        relay.Event("progress", {"step": 1, "nested": [1, "two", None]}, "t1", 1),
        relay.Event("progress", None, "t2", 2),
        relay.Event("progress", "text", None, 3),
    ]
    for event in sent:
        await relay.append(key, event)
    logged = await relay.after(key, 0)
    assert [dict(e) for e in logged] == [
        {**sent[0]}, {**sent[1]}, {**sent[2], "timestamp": ""},
    ]
    assert dict(await relay.latest(key)) == {**sent[2], "timestamp": ""}
    with pytest.raises(IntegrityError):
        await relay.append(key, relay.Event("progress", {}, "t", 2))



async def whole_stream_problems(
    who: str, client: asyncio.Queue, first: dict, *coordinators: TaskCoordinator
) -> list[str]:
    """What is wrong with the stream of a SignalTask's client that already read `first`: the rest
    must follow without a gap, up to the terminal event (`start`, `released`, `complete`)."""
    rest, ended = await drain(client, timeout=5)
    await settle(*coordinators)
    events = [first, *rest]
    problems = gaps(events)
    if not ended:
        problems.append(f"{who} never got the terminal event")
    if [e["type"] for e in events] != ["start", "released", "complete"]:
        problems.append(f"{who} got {[e['type'] for e in events]}")
    return problems


async def relay_finding_the_end_problems(monkeypatch, fixed: bool = True) -> list[str]:
    """The task ends in its own process just after the relay of another process read the log: the
    relay then finds the row finished. Its client must still get every event, in order.
    `fixed=False` skips the relay's read of the log after it found the row finished (the fix)."""
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    task = await SignalTask.objects.acreate()
    await in_process(p0, lambda: p0.get_task_instance(APP, "SignalTask", task.pk))
    remote: asyncio.Queue = asyncio.Queue()

    async def join_in_p1():
        found = await p1.get_task_instance(APP, "SignalTask", task.pk)
        await found.add_client(remote)

    await in_process(p1, join_in_p1)
    async with asyncio.timeout(5):
        first = await remote.get()  # `start`, relayed: p1 follows the log from now on
    read_log, armed, fired = relay.after, [True], []

    async def after_then_the_task_ends(key, seq):
        events = await read_log(key, seq)
        channel = p1._channels.get(key)
        polling = channel is not None and asyncio.current_task() is channel.follower
        if polling and armed and armed.pop():  # the next relay poll: the task ends right after its read
            await SignalTask.release(task.pk)
            await p0.join()
            fired.append(True)
        return events

    monkeypatch.setattr(relay, "after", after_then_the_task_ends)
    if not fixed:
        catch_up = TaskCoordinator._catch_up

        async def without_the_read_after_the_end(self, key, channel):
            if fired and fired.pop():
                return False
            return await catch_up(self, key, channel)

        monkeypatch.setattr(TaskCoordinator, "_catch_up", without_the_read_after_the_end)
    return await whole_stream_problems("the remote client", remote, first, p0, p1)


@pytest.mark.clause("S2")
async def test_a_relay_that_finds_the_task_finished_first_delivers_what_was_logged_meanwhile(monkeypatch):
    assert await relay_finding_the_end_problems(monkeypatch) == []


@pytest.mark.clause("S2")
async def test_relay_end_probe_fails_when_the_relay_ends_with_the_stored_terminal_alone(monkeypatch):
    problems = await relay_finding_the_end_problems(monkeypatch, fixed=False)
    assert "event 3 followed event 1" in problems, problems


async def heartbeat_before_claim_problems(monkeypatch) -> list[str]:
    """A task started while another runs (the heartbeat is on) whose claim is slow: a lease renewal
    falls between its start and its claim. It must still run once and leave nothing behind."""
    counter = EntryCounter(monkeypatch, ExampleTask)
    p0 = TaskCoordinator("p0")
    first = await SignalTask.objects.acreate()
    await in_process(p0, lambda: p0.get_task_instance(APP, "SignalTask", first.pk))
    claim = TaskCoordinator._claim

    async def slow_claim(self, task):
        if isinstance(task, ExampleTask):
            await asyncio.sleep(0.25)  # more than a renewal period (lease 0.3 s / 3)
        return await claim(self, task)

    monkeypatch.setattr(TaskCoordinator, "_claim", slow_claim)
    second = await ExampleTask.objects.acreate(message="late claim")
    queue: asyncio.Queue = asyncio.Queue()

    async def start_second():
        instance = await p0.get_task_instance(APP, "ExampleTask", second.pk)
        await instance.add_client(queue)

    await in_process(p0, start_second)
    _, ended = await drain(queue, timeout=5)
    await SignalTask.release(first.pk)
    problems = []
    try:
        await settle(p0)
    except TimeoutError:
        problems.append("p0 never settled: it keeps a task that will never run")
    if counter.count != 1:
        problems.append(f"process() ran {counter.count} times")
    if not ended:
        problems.append("its client never got the terminal event")
    left = {k: v for k, v in p0.resources().items() if v}
    if left:
        problems.append(f"p0 still holds {left}")
    return problems


@pytest.mark.clause("S8")
async def test_a_renewal_before_a_slow_claim_does_not_cancel_the_task(monkeypatch):
    assert await heartbeat_before_claim_problems(monkeypatch) == []


@pytest.mark.clause("S8")
async def test_renewal_probe_fails_when_unclaimed_tasks_are_renewed(monkeypatch):
    start_task = TaskCoordinator.start_task

    async def owner_set_before_the_claim(self, task_instance, app_name=None, model_name=None):
        # The renewal's check passes for a task not claimed yet: what the fix guards against.
        task_instance.owner = self.token
        await start_task(self, task_instance, app_name, model_name)

    monkeypatch.setattr(TaskCoordinator, "start_task", owner_set_before_the_claim)
    problems = await heartbeat_before_claim_problems(monkeypatch)
    assert "p0 never settled: it keeps a task that will never run" in problems, problems


def claims_held_in(coordinator: TaskCoordinator, monkeypatch) -> asyncio.Event:
    """Make `coordinator`'s claims wait until the returned event is set (other processes claim as
    usual): the window in which a start here does not know yet where the task runs."""
    gate = asyncio.Event()
    claim = TaskCoordinator._claim

    async def held(self, task):
        if self is coordinator:
            await gate.wait()
        return await claim(self, task)

    monkeypatch.setattr(TaskCoordinator, "_claim", held)
    return gate


async def nothing_delivered(self, key, channel) -> None:
    """`TaskCoordinator._deliver_logged` patched out: the fix-out twins of the claim-window probes."""


async def stale_start_problems(monkeypatch, fixed: bool = True) -> list[str]:
    """p0 has a client of a task that p1 runs, then starts it itself through a stale object; the
    task finishes in p1 while p0's claim is pending, so the claim finds it finished. The client
    must still get every event p1 logged, in order, not the stored end alone (found by the harness,
    family `restarts`). `fixed=False` skips the delivery of the logged events at the claim."""
    if not fixed:
        monkeypatch.setattr(TaskCoordinator, "_deliver_logged", nothing_delivered)
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    gate = claims_held_in(p0, monkeypatch)
    task = await SignalTask.objects.acreate()
    client: asyncio.Queue = asyncio.Queue()
    await in_process(p0, lambda: task.add_client(client))  # nothing runs it yet: p0 follows the log
    await in_process(p1, lambda: p1.get_task_instance(APP, "SignalTask", task.pk))
    async with asyncio.timeout(5):
        first = await client.get()  # `start`, relayed from p1's log
    await in_process(p0, lambda: p0.start_task(task))  # stale: p1 runs it; p0's claim waits
    await SignalTask.release(task.pk)
    await p1.join()
    gate.set()
    return await whole_stream_problems("the client", client, first, p0, p1)


@pytest.mark.clause("S2")
async def test_a_start_that_finds_the_task_finished_elsewhere_delivers_what_was_logged(monkeypatch):
    assert await stale_start_problems(monkeypatch) == []


@pytest.mark.clause("S2")
async def test_stale_start_probe_fails_when_the_claim_ends_streams_with_the_stored_end_alone(monkeypatch):
    problems = await stale_start_problems(monkeypatch, fixed=False)
    assert "event 3 followed event 1" in problems, problems


async def running_in(coordinator: TaskCoordinator) -> tuple[SignalTask, Callable[[int], Awaitable[None]]]:
    """A SignalTask that `coordinator` started (a lookup), and `send(n)`, which sends n `progress`
    events through its running instance (call it as a coroutine of that process)."""
    task = await SignalTask.objects.acreate()
    await in_process(coordinator, lambda: coordinator.get_task_instance(APP, "SignalTask", task.pk))
    running = coordinator._instances[task.stream_key]

    async def send(n: int) -> None:
        for i in range(n):
            await running.send_event("progress", {"i": i})

    return task, send


async def joiner_problems(
    client: asyncio.Queue, first: tuple[int, ...], *coordinators: TaskCoordinator
) -> list[str]:
    """What is wrong with the stream of a client that joined a released SignalTask: its first event
    must be one of the ids in `first`, the rest must follow without a gap, up to the terminal event."""
    events, ended = await drain(client, timeout=5)
    await settle(*coordinators)
    problems = gaps(events)
    if not events or events[0]["id"] not in first:
        allowed = " or ".join(str(i) for i in first)
        problems.append(f"the joiner's first event was {events[0]['id'] if events else None}, not {allowed}")
    if not ended:
        problems.append("the joiner never got the terminal event")
    return problems


async def joined_while_claiming_problems(monkeypatch, fixed: bool = True) -> list[str]:
    """p1 runs a task that sent 3 events; p0 starts it too (a lookup), and a client joins in p0
    while p0's claim is pending; p1 sends one more event before the claim says "elsewhere". The
    client's first event must be the latest one sent before it joined (3), or the one sent while it
    joined (4), then every later one. `fixed=False` is the attach of before the fix: a start here
    counted as delivering from the start, so the joiner neither waited for the claim nor read the
    log, and the relay began at the start of the log."""
    if not fixed:
        from reference_impl.streaming.channel import TaskChannel

        start_task = TaskCoordinator.start_task

        async def nothing_to_wait_for(self, task_instance, app_name=None, model_name=None):
            await start_task(self, task_instance, app_name, model_name)
            channel = self._channels.get(task_instance.stream_key)
            if channel is not None:
                channel.claim = None

        monkeypatch.setattr(TaskCoordinator, "start_task", nothing_to_wait_for)
        monkeypatch.setattr(TaskChannel, "live", property(lambda self: self.running))
        monkeypatch.setattr(TaskCoordinator, "_deliver_logged", nothing_delivered)
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    gate = claims_held_in(p0, monkeypatch)
    task, send = await running_in(p1)
    await in_process(p1, lambda: send(2))  # events 2 and 3, after `start`
    client: asyncio.Queue = asyncio.Queue()

    async def join_in_p0():
        found = await p0.get_task_instance(APP, "SignalTask", task.pk)  # starts it: claim pending
        await found.add_client(client)

    joining = asyncio.create_task(in_process(p0, join_in_p0))
    await asyncio.sleep(0.02)  # the join is in progress: the claim has not answered
    await in_process(p1, lambda: send(1))  # event 4, while it joins, before the claim's answer
    gate.set()
    await joining
    await asyncio.sleep(0.05)
    await SignalTask.release(task.pk)
    return await joiner_problems(client, (3, 4), p0, p1)


@pytest.mark.clause("S3")
async def test_a_client_that_joins_while_a_start_claims_gets_the_latest_event_then_the_rest(monkeypatch):
    assert await joined_while_claiming_problems(monkeypatch) == []


@pytest.mark.clause("S3")
async def test_claiming_join_probe_fails_when_a_start_counts_as_delivering(monkeypatch):
    problems = await joined_while_claiming_problems(monkeypatch, fixed=False)
    assert "the joiner's first event was 1, not 3 or 4" in problems, problems


async def joining_when_the_claim_answers_problems(monkeypatch, fixed: bool = True) -> list[str]:
    """p1 runs a task that sent 3 events. In p0 a client's join is in flight (registered, reading
    the row) when p0 starts the task through a stale object and the claim says "elsewhere": the
    channel never read the log, so the claim gives the client the latest logged event (3), not the
    whole log, then p0 follows p1. `fixed=False` makes the claim read the log from its start, as
    for a channel that had read it."""
    from django.db.models.query import QuerySet

    if not fixed:
        deliver = TaskCoordinator._deliver_logged

        async def from_the_start(self, key, channel):
            channel.synced = True
            await deliver(self, key, channel)

        monkeypatch.setattr(TaskCoordinator, "_deliver_logged", from_the_start)
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    task, send = await running_in(p1)
    await in_process(p1, lambda: send(2))
    async with asyncio.timeout(5):
        while (last := await relay.latest(task.stream_key)) is None or last["id"] < 3:
            await asyncio.sleep(0.005)  # and process()'s `start`: 3 events logged
    row_read, first_read = asyncio.Event(), QuerySet.afirst
    held: list[bool] = []

    async def the_join_reads_the_row_late(self):
        if self.model is SignalTask and not held:  # the first row read from now on: the join's
            held.append(True)
            await row_read.wait()
        return await first_read(self)

    monkeypatch.setattr(QuerySet, "afirst", the_join_reads_the_row_late)
    client: asyncio.Queue = asyncio.Queue()
    joining = asyncio.create_task(in_process(p0, lambda: task.add_client(client)))
    async with asyncio.timeout(5):
        while not held:
            await asyncio.sleep(0.005)
        await in_process(p0, lambda: p0.start_task(task))  # stale: p1 runs it
        await p0.join()  # the claim answered "elsewhere"
        row_read.set()
        await joining
    await in_process(p1, lambda: send(1))  # event 4
    await SignalTask.release(task.pk)
    return await joiner_problems(client, (3,), p0, p1)


@pytest.mark.clause("S3")
async def test_a_join_in_flight_when_a_claim_finds_the_task_elsewhere_gets_the_latest_event(monkeypatch):
    assert await joining_when_the_claim_answers_problems(monkeypatch) == []


@pytest.mark.clause("S3")
async def test_in_flight_join_probe_fails_when_the_claim_replays_the_whole_log(monkeypatch):
    problems = await joining_when_the_claim_answers_problems(monkeypatch, fixed=False)
    assert "the joiner's first event was 1, not 3" in problems, problems
