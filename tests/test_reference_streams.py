"""The SSE stream body in one process: how events are grouped into writes (no server needed)."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from reference_impl.example.models import ExampleTask
from reference_impl.streaming.channel import Event
from reference_impl.streaming.streams import EventStream, StreamLimiter, StreamQueue


def progress(seq: int) -> Event:
    return Event("progress", {"i": seq}, "t", seq)


async def opened(queue: StreamQueue, batch: float):
    task = await ExampleTask.objects.acreate(message="batched")
    with override_settings(STREAMING_BATCH_SECONDS=batch, STREAMING_KEEPALIVE_SECONDS=30):
        frames = aiter(EventStream(task, queue, None, StreamLimiter()))
        assert await anext(frames) == b": connected\n\n"  # settings are read by now
    return frames


async def test_a_quiet_stream_writes_at_once_and_a_busy_one_groups_what_arrives_meanwhile():
    queue = StreamQueue(64)
    frames = await opened(queue, batch=1.0)
    queue.put_nowait(progress(1))
    first = await asyncio.wait_for(anext(frames), 0.5)  # quiet: not held back
    assert first.count(b"event: progress") == 1 and b"id: 1\n" in first

    queue.put_nowait(progress(2))
    pending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0.05)
    assert not pending.done()  # busy: held back for the events that follow
    queue.put_nowait(progress(3))
    chunk = await asyncio.wait_for(pending, 3)
    assert chunk.count(b"event: progress") == 2 and chunk.index(b"id: 2\n") < chunk.index(b"id: 3\n")


async def test_a_held_back_stream_writes_at_once_when_its_buffer_half_fills_or_the_task_ends():
    queue = StreamQueue(4)
    frames = await opened(queue, batch=30)
    queue.put_nowait(progress(1))
    await asyncio.wait_for(anext(frames), 1)

    pending = asyncio.ensure_future(anext(frames))
    queue.put_nowait(progress(2))
    await asyncio.sleep(0.01)
    assert not pending.done()
    queue.put_nowait(progress(3))
    queue.put_nowait(progress(4))  # half of the buffer waits besides the event held back
    chunk = await asyncio.wait_for(pending, 1)
    assert chunk.count(b"event: progress") == 3

    queue.put_nowait(Event("complete", {"final_value": 1}, "t", 5))
    last = await asyncio.wait_for(anext(frames), 1)
    assert b"event: complete" in last


async def test_without_batching_every_event_goes_out_when_it_arrives():
    queue = StreamQueue(64)
    frames = await opened(queue, batch=0)
    for seq in (1, 2):
        queue.put_nowait(progress(seq))
        chunk = await asyncio.wait_for(anext(frames), 1)
        assert chunk.count(b"event: progress") == 1


async def test_a_client_that_stops_reading_is_dropped_by_the_bytes_it_holds_not_only_by_events():
    # 8 KiB events to a client that reads nothing: with 64 KiB allowed it is dropped after 8 of
    # them, far below its bound of 1024 events, with the overflow notice; a reader is not.
    from reference_impl.streaming.channel import TaskChannel
    from reference_impl.streaming.streams import encode

    task = await ExampleTask.objects.acreate(message="big events")

    def size(event: Event) -> int:
        return len(encode(event, task))

    channel = TaskChannel(("example.exampletask", task.pk), 1024)
    stalled, reading = StreamQueue(1024, 64 * 1024, size), StreamQueue(1024, 64 * 1024, size)
    channel.attach(stalled)
    channel.attach(reading)
    payload = "x" * 8192
    for seq in range(1, 21):
        channel.publish(Event("progress", {"blob": payload}, "t", seq))
        assert reading.get_nowait()["id"] == seq
        assert stalled.bytes <= 64 * 1024
    assert stalled not in channel.clients and reading in channel.clients
    assert stalled.qsize() == 1 and stalled.get_nowait()["type"] == "overflow"
    assert stalled.bytes == 0 and reading.bytes == 0


def test_one_event_bigger_than_the_byte_bound_still_reaches_a_client_that_keeps_up():
    queue = StreamQueue(8, 100, lambda event: 1000)
    queue.put_nowait(progress(1))
    assert queue.get_nowait()["id"] == 1 and queue.bytes == 0
    queue.put_nowait(progress(2))
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(progress(3))  # a second one waiting would pass the bound
