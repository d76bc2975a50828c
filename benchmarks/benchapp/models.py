"""`BenchTask`: one model whose `process()` both implementations run the same way.

Like the harness's probe, it subclasses the StreamTask named by the setting STREAMSPEC_TASK_BASE
(the implementation's abstract model), so the reference and the upstream package run the same code.
There is no migration: the table is made with ``migrate --run-syncdb`` (the base's fields differ).

Two modes:

- ``park``: process() waits until `BenchTask.release(pk)` (in-process benchmarks send events
  themselves through the running instance), then sends ``complete``;
- ``stream``: process() waits until `clients` clients are attached (bounded by `wait_seconds`),
  sleeps `first_delay`, sends ``start`` (carrying ``t0``, this process's ``time.monotonic()``),
  `events` ``progress`` events of `payload` bytes each, yielding to the loop after every `burst`
  of them, and ``complete``. The HTTP benchmarks use it in a real server process;
- ``pace``: like ``stream``, but each ``progress`` event carries ``t``, the wall-clock time just
  before it is sent, and the task sleeps `pause` seconds after each (latency across processes).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string

StreamTaskBase = import_string(settings.STREAMSPEC_TASK_BASE)

PARK, STREAM, PACE = "park", "stream", "pace"
POLL_SECONDS = 0.005


class BenchTask(StreamTaskBase):
    mode = models.CharField(max_length=8, default=PARK)
    clients = models.IntegerField(default=0)
    events = models.IntegerField(default=0)
    burst = models.IntegerField(default=1)
    payload = models.IntegerField(default=0)
    first_delay = models.FloatField(default=0.0)
    wait_seconds = models.FloatField(default=30.0)
    pause = models.FloatField(default=0.0)

    _released: ClassVar[dict[Any, asyncio.Event]] = {}

    class Meta:
        app_label = "streamspec_bench"

    async def process(self) -> Any:
        if self.mode == PARK:
            released = self._released.setdefault(self.pk, asyncio.Event())
            try:
                await released.wait()
            finally:
                self._released.pop(self.pk, None)
            result = {"parked": True}
        else:
            result = await self._stream()
        # Upstream 0.2.1 ends a stream only on a `complete` event the task sends itself.
        await self.send_event("complete", result)
        return result

    async def _stream(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait_seconds
        while len(self._clients) < self.clients and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        pad = "x" * self.payload
        burst = max(1, self.burst)
        await self.send_event("start", {"t0": time.monotonic(), "clients": len(self._clients)})
        for i in range(self.events):
            if self.mode == PACE:
                await self.send_event("progress", {"i": i, "t": time.time()})
                await asyncio.sleep(self.pause)
                continue
            await self.send_event("progress", {"i": i, "pad": pad})
            if (i + 1) % burst == 0:
                await asyncio.sleep(0)
        return {"events": self.events}

    @classmethod
    def release(cls, pk: Any) -> None:
        """Let a parked task finish (safe before it started waiting)."""
        cls._released.setdefault(pk, asyncio.Event()).set()
