"""Builds a `History` as a run goes: numbers the records and stamps them with virtual time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.history import History, Record


class Recorder:
    """Appends records in the order things happen; `clock` gives the (virtual) time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.records: list[Record] = []
        self.closed = False

    def add(self, kind: type[Record], process: str, **fields: Any) -> Record | None:
        if self.closed:
            # After RunEnd the harness tears the run down (cancels what is left): not the
            # system's behaviour, so not history.
            return None
        record = kind(index=len(self.records), time=self._clock(), process=process, **fields)
        self.records.append(record)
        return record

    def close(self, kind: type[Record], process: str, **fields: Any) -> None:
        """Add the final record (RunEnd); nothing is recorded after it."""
        self.add(kind, process, **fields)
        self.closed = True

    def history(self) -> History:
        # The runner records a `Sent` when each probe `send_event` returns.
        return History(list(self.records), bracketed_sends=True)
