"""`STREAMING_OVERFLOW_NOTICE`: how the reference tells a client it dropped for falling behind.

Whatever the notice, the dropped client gets it last, after nothing of what it had not read, and its
stream ends: a queue client reads the notice (a None under "close"), a `Subscription`'s iteration
ends after it (without yielding a None), an SSE stream writes it and closes (writes nothing under
"close"). `tests/test_conventions.py` runs the harness on each notice.
"""

from __future__ import annotations

import asyncio

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from reference_impl.example.models import ExampleTask
from reference_impl.streaming.channel import TaskChannel
from reference_impl.streaming.conf import streaming_settings
from reference_impl.streaming.events import Event
from reference_impl.streaming.streams import EventStream, StreamLimiter, StreamQueue
from reference_impl.streaming.subscription import Subscription

LIMIT = 3
NOTICES = {
    "overflow": {"type": "overflow", "data": {"reason": "client fell behind", "limit": LIMIT},
                 "timestamp": None, "id": None},
    "error": {"type": "error", "data": {"reason": "overflow", "message": "client fell behind",
                                        "limit": LIMIT}, "timestamp": None, "id": None},
    "close": None,
}


def progress(seq: int) -> Event:
    return Event("progress", {"n": seq}, "t", seq)


def _flooded(notice: str) -> tuple[asyncio.Queue, Subscription, TaskChannel]:
    """A queue client and a subscription that read nothing while a task sends past the limit."""
    channel = TaskChannel(("example.exampletask", 1), limit=LIMIT)
    queue, subscription = asyncio.Queue(), Subscription()
    with override_settings(STREAMING_OVERFLOW_NOTICE=notice):
        channel.attach(queue)
        channel.attach(subscription)
        for seq in range(1, 2 * LIMIT + 1):
            channel.publish(progress(seq))
    return queue, subscription, channel


@pytest.mark.parametrize("notice", sorted(NOTICES))
async def test_a_dropped_client_reads_the_chosen_notice_and_nothing_else(notice):
    queue, subscription, channel = _flooded(notice)
    assert not channel.clients  # both dropped, neither waits for more
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [NOTICES[notice]]
    assert subscription.qsize() == 1 and subscription.get_nowait() == NOTICES[notice]
    _, iterated, _ = _flooded(notice)
    read = [event async for event in iterated]
    assert read == ([] if notice == "close" else [NOTICES[notice]])  # the iteration ends either way


def test_the_default_notice_is_the_overflow_event():
    assert streaming_settings().overflow_notice == "overflow"
    with override_settings(STREAMING_OVERFLOW_NOTICE="drop"):
        with pytest.raises(ImproperlyConfigured, match="STREAMING_OVERFLOW_NOTICE must be one of"):
            streaming_settings()


@pytest.mark.parametrize(
    ("notice", "frame"), [("overflow", b"event: overflow\n"), ("error", b"event: error\n"), ("close", None)]
)
async def test_an_sse_stream_writes_the_notice_and_ends(notice, frame):
    task = await ExampleTask.objects.acreate(message="dropped")
    queue = StreamQueue(8)
    with override_settings(STREAMING_OVERFLOW_NOTICE=notice, STREAMING_KEEPALIVE_SECONDS=30):
        frames = aiter(EventStream(task, queue, None, StreamLimiter()))
        assert await anext(frames) == b": connected\n\n"
        queue.put_nowait(NOTICES[notice])
        written = [chunk async for chunk in frames]
    if frame is None:
        assert written == []
    else:
        assert len(written) == 1 and written[0].startswith(frame) and b"id:" not in written[0]
