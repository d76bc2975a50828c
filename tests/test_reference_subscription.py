"""`Subscription`, the reference's queue-less in-process client: it must read exactly what a queue
client attached at the same moment reads (the harness verifies the queue path on every clause), and
end, overflow, detach and travel across processes like one."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reference_impl.example.models import ExampleTask, SignalTask
from reference_impl.streaming.channel import TaskChannel
from reference_impl.streaming.coordinator import TaskCoordinator, coordinator
from reference_impl.streaming.events import Event
from reference_impl.streaming.subscription import Subscription
from tests.reference_support import APP, drain, gaps

# Each test starts with an empty process-wide coordinator and must leave it empty.
pytestmark = pytest.mark.usefixtures("reference_defaults", "fresh_coordinator")


# -- the channel: a subscription reads what a queue attached with it reads --------------------------

LIMIT = 4

ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 3)),
        st.tuples(st.just("join"), st.sampled_from([None, 0, -1, 1])),
        st.tuples(st.just("read"), st.integers(1, 6)),
        st.tuples(st.just("leave"), st.integers(0, 5)),
        st.tuples(st.just("rejoin"), st.integers(0, 5)),
        st.tuples(st.just("end"), st.just(0)),
    ),
    max_size=40,
)


def _read(client, n: int) -> list:
    got = []
    for _ in range(n):
        try:
            got.append(client.get_nowait())
        except asyncio.QueueEmpty:
            break
    return got


waiting_ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 3)),
        st.tuples(st.just("join"), st.sampled_from([None, 0, -1])),
        st.tuples(st.just("read"), st.integers(1, 6)),
        st.tuples(st.just("wait"), st.integers(0, 5)),
        st.tuples(st.just("cancel"), st.integers(0, 5)),
        st.tuples(st.just("yield"), st.integers(1, 3)),
        st.tuples(st.just("leave"), st.integers(0, 5)),
        st.tuples(st.just("rejoin"), st.integers(0, 5)),
        st.tuples(st.just("end"), st.just(0)),
    ),
    max_size=40,
)


class Reader:
    """One client, read by at most one `get()` at a time, as one consumer does."""

    def __init__(self, client) -> None:
        self.client, self.got, self.pending = client, [], None

    def harvest(self) -> None:
        if self.pending is not None and self.pending.done():
            if not self.pending.cancelled():
                self.got.append(self.pending.result())
            self.pending = None


async def reads_alike(program: list[tuple[str, int | None]]) -> None:
    """Run `program` on a channel where every client is a pair, an asyncio.Queue and a Subscription
    attached together, each read the same way; then check that both read the same events."""
    channel = TaskChannel(("t", 1), LIMIT)
    pairs: list[tuple[Reader, Reader]] = []
    seq = 0
    for op, arg in program:
        for pair in pairs:
            for reader in pair:
                reader.harvest()
        if op == "publish" and not channel.closed:
            for _ in range(arg):
                seq += 1
                channel.publish(Event("progress", {"i": seq}, "t", seq))
        elif op == "join":
            queue, subscription = asyncio.Queue(), Subscription()
            # A resuming client's Last-Event-ID: relative to the latest event (None: a new client).
            last = None if arg is None else seq + arg
            channel.attach(queue, last)
            channel.attach(subscription, last)
            pairs.append((Reader(queue), Reader(subscription)))
        elif op == "read" and pairs:
            for reader in pairs[arg % len(pairs)]:
                if reader.pending is None:
                    reader.got += _read(reader.client, arg)
        elif op == "wait" and pairs:
            for reader in pairs[arg % len(pairs)]:
                if reader.pending is None:
                    reader.pending = asyncio.ensure_future(reader.client.get())
            await asyncio.sleep(0)  # both readers are waiting in get() now
        elif op == "cancel" and pairs:
            for reader in pairs[arg % len(pairs)]:
                if reader.pending is not None:
                    reader.pending.cancel()
        elif op == "yield":
            for _ in range(arg):
                await asyncio.sleep(0)
        elif op == "leave" and pairs:
            queue, subscription = (r.client for r in pairs[arg % len(pairs)])
            assert channel.detach(queue) == channel.detach(subscription)
        elif op == "rejoin" and pairs and not channel.closed:
            for reader in pairs[arg % len(pairs)]:
                channel.attach(reader.client)
        elif op == "end" and not channel.closed:
            seq += 1
            channel.publish(Event("complete", {"final_value": seq}, "t", seq))
            channel.close()
    for _ in range(3):
        await asyncio.sleep(0)
    for pair in pairs:
        for reader in pair:
            reader.harvest()
            if reader.pending is not None:
                reader.pending.cancel()
    await asyncio.sleep(0)
    for queue_reader, subscription_reader in pairs:
        for reader in (queue_reader, subscription_reader):
            reader.harvest()
            assert reader.pending is None
        assert subscription_reader.client.qsize() == queue_reader.client.qsize()
        assert subscription_reader.got == queue_reader.got
        assert _read(subscription_reader.client, 10_000) == _read(queue_reader.client, 10_000)


@settings(max_examples=400, deadline=None)
@given(ops)
def test_a_subscription_reads_what_a_queue_attached_at_the_same_moment_reads(program):
    asyncio.run(reads_alike(program))


@settings(max_examples=400, deadline=None)
@given(waiting_ops)
# The races, always tried: a reader woken for an event and cancelled before it resumed, one
# dropped for overflow before it resumed, and one whose task ended before it resumed.
@example([("join", None), ("wait", 0), ("publish", 1), ("cancel", 0)])
@example([("join", None), ("wait", 0), ("publish", 1), ("publish", 3), ("publish", 1), ("yield", 1)])
@example([("join", None), ("wait", 0), ("publish", 1), ("end", 0), ("cancel", 0)])
def test_a_waiting_subscription_reads_what_a_waiting_queue_reads(program):
    """The same, with readers waiting in `get()` when events are published, and waits cancelled
    at any moment: a reader woken for an event and cancelled before it resumes does not lose it."""
    asyncio.run(reads_alike(program))


def test_the_ring_keeps_more_events_than_a_client_may_lag():
    for limit in (1, 7, 8, 1024):
        channel = TaskChannel(("t", 1), limit)
        subscription = Subscription()
        channel.attach(subscription)
        for seq in range(1, limit + 1):
            channel.publish(Event("progress", {}, "t", seq))
        assert [e["id"] for e in _read(subscription, limit)] == list(range(1, limit + 1))
        assert len(channel.ring) > limit


def test_the_ring_lives_only_while_a_subscription_reads_it():
    channel = TaskChannel(("t", 1), LIMIT)
    slow, fast = Subscription(), Subscription()
    channel.attach(slow)
    channel.attach(fast)
    for seq in range(1, LIMIT + 2):  # the slow one falls behind and is dropped
        channel.publish(Event("progress", {}, "t", seq))
        _read(fast, 1)
    assert _read(slow, 9)[-1]["type"] == "overflow"
    assert channel.ring  # the fast one still reads it
    channel.detach(fast)
    assert channel.ring == [] and not channel.subscriptions  # no events kept alive for nobody
    late = Subscription()
    channel.attach(late)
    assert _read(late, 9) == [channel.latest]  # a new ring, seeded with the latest event


# -- through the coordinator ------------------------------------------------------------------------


async def events_of(subscription: Subscription, timeout: float = 3.0) -> list[dict]:
    got = []
    async with asyncio.timeout(timeout):
        async for event in subscription:
            got.append(event)
    return got


async def test_a_subscriber_gets_the_latest_event_then_everything_and_its_iteration_ends():
    task = await SignalTask.objects.acreate()
    running = await coordinator.get_task_instance(APP, "SignalTask", task.pk)
    async with asyncio.timeout(2):
        while running._latest_data is None:
            await asyncio.sleep(0.002)
    reloaded = await SignalTask.objects.aget(pk=task.pk)  # another instance of the row (S1/S2)
    async with reloaded.subscribe() as subscription:
        reader = asyncio.create_task(events_of(subscription))
        await asyncio.sleep(0.01)
        await SignalTask.release(task.pk, payload=7)
        events = await reader
    assert [e["type"] for e in events] == ["start", "released", "complete"]
    assert not gaps(events)
    await coordinator.join()
    assert not any(coordinator.resources().values())


async def test_a_subscriber_of_a_finished_task_gets_its_stored_end():
    task = await ExampleTask.objects.acreate(message="done")
    await coordinator.get_task_instance(APP, "ExampleTask", task.pk)
    await coordinator.join()
    async with task.subscribe() as subscription:
        events = await events_of(subscription)
    assert [e["type"] for e in events] == ["complete"]
    assert events[0]["data"]["message"] == "done"
    async with task.subscribe(last_event_id=events[0]["id"]) as subscription:
        assert await events_of(subscription) == []  # it has the end already: nothing, and no wait
    assert not any(coordinator.resources().values())


async def test_subscribers_and_queues_of_one_task_get_the_same_events():
    task = await ExampleTask.objects.acreate(message="both")
    queue: asyncio.Queue = asyncio.Queue()
    async with task.subscribe() as subscription:
        await task.add_client(queue)
        await coordinator.start_task(task)
        from_subscription = await events_of(subscription)
    from_queue, ended = await drain(queue)
    assert ended and from_subscription == from_queue
    assert [e["type"] for e in from_queue] == ["start", "progress", "progress", "progress", "complete"]


async def test_a_subscriber_that_falls_behind_is_dropped_with_a_notice():
    with override_settings(STREAMING_CLIENT_BUFFER=3):
        task = await SignalTask.objects.acreate()
        subscription = Subscription()
        await task.add_client(subscription)
        await coordinator.start_task(task)
        running = await coordinator.get_task_instance(APP, "SignalTask", task.pk)
        for i in range(5):
            await running.send_event("progress", {"i": i})
        events = await events_of(subscription)
        assert events[-1]["type"] == "overflow" and events[-1]["data"]["limit"] == 3
        assert coordinator.resources()["clients"] == 0  # dropped: the task no longer holds it
        await SignalTask.release(task.pk)
        await coordinator.join()
    assert not any(coordinator.resources().values())


async def test_a_cancelled_wait_leaves_nothing_behind():
    task = await SignalTask.objects.acreate()
    async with task.subscribe() as subscription:
        await coordinator.start_task(task)
        assert (await subscription.get())["type"] == "start"
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await subscription.get()
            assert subscription._waiter is None  # nothing for the next publish to wake
        await SignalTask.release(task.pk)
        assert (await subscription.get())["type"] == "released"
    await coordinator.join()
    assert not any(coordinator.resources().values())


async def test_a_detached_subscriber_reads_what_it_was_given_then_ends():
    task = await SignalTask.objects.acreate()
    subscription = Subscription()
    await task.add_client(subscription)
    await coordinator.start_task(task)
    running = await coordinator.get_task_instance(APP, "SignalTask", task.pk)
    async with asyncio.timeout(2):
        while subscription.empty():
            await asyncio.sleep(0.002)
    await running.send_event("progress", {"i": 1})
    await task.remove_client(subscription)
    await running.send_event("progress", {"i": 2})  # after it left: not owed
    assert [e["type"] for e in await events_of(subscription)] == ["start", "progress"]
    await SignalTask.release(task.pk)
    await coordinator.join()


@override_settings(STREAMING_POLL_SECONDS=0.01, STREAMING_LEASE_SECONDS=0.3)
async def test_a_subscriber_in_another_process_gets_every_event_through_the_log():
    p0, p1 = TaskCoordinator("p0"), TaskCoordinator("p1")
    task = await SignalTask.objects.acreate()

    async def run_in(process: TaskCoordinator, body):
        async def activated():
            process.activate()
            return await body()

        return await asyncio.create_task(activated())

    await run_in(p0, lambda: p0.get_task_instance(APP, "SignalTask", task.pk))

    async def subscribe_in_p1():
        found = await p1.get_task_instance(APP, "SignalTask", task.pk)
        subscription = Subscription()
        await found.add_client(subscription)
        return subscription

    subscription = await run_in(p1, subscribe_in_p1)
    running = p0._instances[task.stream_key]

    async def send_and_release():
        for i in range(3):
            await running.send_event("progress", {"i": i})
        await SignalTask.release(task.pk, payload="x")

    await run_in(p0, send_and_release)
    events = await events_of(subscription)
    # Every event the task sent, from its first (the relay started before it sent anything).
    assert [e["id"] for e in events] == list(range(1, 7))
    assert sorted(e["type"] for e in events) == ["complete", "progress", "progress", "progress", "released",
                                                 "start"]
    await p0.join()
    async with asyncio.timeout(2):
        while p1.resources()["relays"] or p1.resources()["channels"]:
            await asyncio.sleep(0.01)


async def test_a_reader_waiting_before_the_subscription_joined_gets_the_events():
    task = await SignalTask.objects.acreate()
    subscription = Subscription()
    reader = asyncio.create_task(events_of(subscription))
    await asyncio.sleep(0.01)  # waiting in get() with no channel yet
    await task.add_client(subscription)
    await coordinator.start_task(task)
    await SignalTask.release(task.pk)
    assert [e["type"] for e in await reader] == ["start", "released", "complete"]
    await coordinator.join()


async def test_a_subscription_attached_again_after_its_end_reads_the_next_task():
    # One client object reused for a second task, as a queue can be: its first iteration ended
    # with the terminal event, the second must not end before it read anything.
    subscription = Subscription()
    for message in ("first", "second"):
        task = await ExampleTask.objects.acreate(message=message)
        await task.add_client(subscription)
        await coordinator.start_task(task)
        events = await events_of(subscription)
        await task.remove_client(subscription)
        assert [e["type"] for e in events] == ["start", "progress", "progress", "progress", "complete"]
        assert events[-1]["data"]["message"] == message
        await coordinator.join()
