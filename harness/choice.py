"""Choice sources: where every scheduling decision of a run comes from.

The scheduler never decides an ordering itself: whenever there is more than one thing it could do
next it asks a :class:`ChoiceSource` for an index, where index 0 always means "plain FIFO". That
single seam lets the same run be driven by FIFO, a seeded PRNG, a recorded tape, or Hypothesis
(which then explores orderings and shrinks a failing one toward FIFO).

Every source records the decisions it made on a :class:`Tape`, which is JSON-serialisable and can
be replayed with :class:`TapeChoices`. Only real decisions (``n > 1``) are recorded or drawn, so a
run in which nothing could be reordered has an empty tape.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.errors import TapeExhausted, TapeMismatch

__all__ = [
    "ChoiceSource",
    "FifoChoices",
    "HypothesisChoices",
    "RandomChoices",
    "Tape",
    "TapeChoices",
]

_TAPE_FORMAT = 1


@dataclass
class Tape:
    """The decisions of one run, in order: the chosen index, how many options there were, a label.

    ``sizes`` and ``labels`` are optional (a hand-written tape may hold only ``choices``); when
    present they let a replay notice that it diverged from the recording.
    """

    choices: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def record(self, index: int, n: int, label: str) -> None:
        """Append one decision."""
        self.choices.append(index)
        self.sizes.append(n)
        self.labels.append(label)

    @property
    def deviations(self) -> int:
        """Decisions that did not take the FIFO option: what shrinking minimises."""
        return sum(1 for choice in self.choices if choice)

    def __len__(self) -> int:
        return len(self.choices)

    def since(self, start: int) -> Tape:
        """A copy holding only the decisions from position ``start`` on."""
        return Tape(self.choices[start:], self.sizes[start:], self.labels[start:])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return {
            "format": _TAPE_FORMAT,
            "choices": list(self.choices),
            "sizes": list(self.sizes),
            "labels": list(self.labels),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tape:
        """Rebuild a tape from :meth:`to_dict` output (``sizes``/``labels`` may be absent)."""
        fmt = data.get("format", _TAPE_FORMAT)
        if fmt != _TAPE_FORMAT:
            raise ValueError(
                f"tape format {fmt!r} is not supported (this harness reads format {_TAPE_FORMAT})"
            )
        choices = [int(c) for c in data["choices"]]
        sizes = [int(s) for s in data.get("sizes", [])]
        labels = [str(s) for s in data.get("labels", [])]
        for name, extra in (("sizes", sizes), ("labels", labels)):
            if extra and len(extra) != len(choices):
                raise ValueError(f"tape has {len(choices)} choices but {len(extra)} {name}")
        return cls(choices, sizes, labels)

    def to_json(self) -> str:
        """Serialise to a compact JSON string."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Tape:
        """Parse :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


@runtime_checkable
class ChoiceSource(Protocol):
    """Something that picks which of ``n`` options the scheduler takes next.

    ``choose`` returns an index in ``range(n)``; index 0 is always the FIFO option. ``label`` says
    what kind of decision it is (for tapes and reports). Decisions with ``n > 1`` are recorded on
    ``tape``. A source is meant for one run.
    """

    tape: Tape

    def choose(self, n: int, label: str) -> int: ...


class _RecordingSource:
    """Shared plumbing: validate ``n``, skip non-decisions, record real ones."""

    def __init__(self) -> None:
        self.tape = Tape()

    def choose(self, n: int, label: str = "") -> int:
        if n <= 1:
            if n == 1:
                return 0
            raise ValueError(f"choose() needs at least one option, got n={n} (label {label!r})")
        index = self._pick(n, label)
        if not 0 <= index < n:
            raise TapeMismatch(
                f"decision #{len(self.tape)} ({label!r}) picked index {index} but only {n} options exist"
            )
        self.tape.record(index, n, label)
        return index

    def _pick(self, n: int, label: str) -> int:
        raise NotImplementedError


class FifoChoices(_RecordingSource):
    """Always the first option: the plain asyncio FIFO order (the order Hypothesis shrinks toward)."""

    def _pick(self, n: int, label: str) -> int:
        return 0


class RandomChoices(_RecordingSource):
    """Uniformly random decisions from a private seeded PRNG: the same seed gives the same run."""

    def __init__(self, seed: int | str | None = None) -> None:
        super().__init__()
        self.seed = seed
        self._random = random.Random(seed)

    def _pick(self, n: int, label: str) -> int:
        return self._random.randrange(n)

    def __repr__(self) -> str:
        return f"RandomChoices(seed={self.seed!r})"


class TapeChoices(_RecordingSource):
    """Replays a recorded tape decision by decision.

    Raises :class:`TapeExhausted` when the run asks for more decisions than were recorded and
    :class:`TapeMismatch` when a decision no longer fits (different number of options or label):
    both mean the run diverged from the recording. :meth:`finish` (called by the scheduler at the
    end of a run) reports recorded decisions that were never asked for.

    ``fifo_after_end=True`` turns a short tape into a prefix: once it is used up every further
    decision is FIFO (handy for hand-written regression tapes such as ``[0, 0, 1, 1]``).
    """

    def __init__(self, tape: Tape | list[int] | tuple[int, ...], *, fifo_after_end: bool = False) -> None:
        super().__init__()
        self.source = tape if isinstance(tape, Tape) else Tape(list(tape))
        self.fifo_after_end = fifo_after_end
        self.position = 0

    def _pick(self, n: int, label: str) -> int:
        pos = self.position
        src = self.source
        if pos >= len(src.choices):
            if self.fifo_after_end:
                return 0
            raise TapeExhausted(
                f"the run asked for decision #{pos} ({label!r}, {n} options) but the tape holds only "
                f"{len(src.choices)}: the run diverged from the recording (the code or the scenario "
                "changed, or the tape is truncated). Re-record the tape from the current code."
            )
        index = src.choices[pos]
        if pos < len(src.sizes) and src.sizes[pos] != n:
            raise TapeMismatch(
                f"decision #{pos} ({label!r}) has {n} options now but {src.sizes[pos]} in the recording: "
                "the run diverged from the recording. Re-record the tape from the current code."
            )
        if pos < len(src.labels) and src.labels[pos] != label:
            raise TapeMismatch(
                f"decision #{pos} is {label!r} now but {src.labels[pos]!r} in the recording: the run "
                "diverged from the recording. Re-record the tape from the current code."
            )
        if not 0 <= index < n:
            raise TapeMismatch(
                f"decision #{pos} ({label!r}) replays index {index} but only {n} options exist: the run "
                "diverged from the recording. Re-record the tape from the current code."
            )
        self.position = pos + 1
        return index

    @property
    def remaining(self) -> int:
        """How many recorded decisions have not been replayed yet."""
        return len(self.source.choices) - self.position

    def finish(self) -> None:
        """Raise :class:`TapeMismatch` if the run ended before using the whole tape."""
        if self.remaining:
            raise TapeMismatch(
                f"the run ended after {self.position} decisions but the tape holds "
                f"{len(self.source.choices)}: the run diverged from the recording."
            )


class HypothesisChoices(_RecordingSource):
    """Draws each decision from a Hypothesis ``data`` object (``@given(st.data())``).

    Each decision is ``st.integers(0, n - 1)``, so Hypothesis explores orderings and shrinks a
    failing run toward index 0, i.e. toward plain FIFO. ``label_draws=True`` passes the decision
    label to ``data.draw`` (more readable, but a long run prints one line per decision).
    """

    def __init__(self, data: Any, *, label_draws: bool = False) -> None:
        super().__init__()
        self.data = data
        self.label_draws = label_draws
        self._strategies: dict[int, Any] = {}

    def _pick(self, n: int, label: str) -> int:
        strategy = self._strategies.get(n)
        if strategy is None:
            from hypothesis import strategies as st  # imported lazily: only Hypothesis runs need it

            strategy = self._strategies[n] = st.integers(0, n - 1)
        if self.label_draws:
            return int(self.data.draw(strategy, label=label))
        return int(self.data.draw(strategy))
