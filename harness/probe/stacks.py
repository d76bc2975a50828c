"""Where things happened inside the implementation: call stacks captured during a run.

Bug reports name the implementation's file and line where the second object of a task row was
created, where a client was registered or an event was put into its queue, and where a run of
process() was started. Nothing of that is written by hand: these functions capture the stacks while
the run happens, cheaply (file, line, function per frame; no source text), and the reports filter
them to the implementation's own files afterwards.

A stack captured on the event loop's thread is the ordinary Python stack, which includes the chain
of coroutines being resumed. Django's async ORM runs queries on a worker thread, where the Python
stack starts at the thread: there the *logical* stack is rebuilt from the suspended coroutine chain
of the task that handed the call to the thread (found through asgiref's ``sync_to_async`` frames),
followed by the worker thread's own frames.
"""

from __future__ import annotations

import asyncio
import sys
from types import FrameType
from typing import Any

Frame = tuple[str, int, str]
"""(filename, line number, function name), outermost first in a stack."""
Stack = tuple[Frame, ...]

_ASGIREF_HANDLER = "thread_handler"
_ASGIREF_CALL = "__call__"


def _walk(frame: FrameType | None) -> list[Frame]:
    out: list[Frame] = []
    while frame is not None:
        code = frame.f_code
        out.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    out.reverse()
    return out


def _is_asgiref(frame: FrameType, name: str) -> bool:
    code = frame.f_code
    return code.co_name == name and code.co_filename.replace("\\", "/").endswith("asgiref/sync.py")


def _coroutine_frames(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of a suspended task's coroutine chain, outermost first."""
    frames: list[FrameType] = []
    coro: Any = task.get_coro()
    for _ in range(200):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if coro is None:
            break
    return frames


def _offloading_chain(thread_frame: FrameType | None) -> tuple[list[Frame], FrameType | None]:
    """On a worker thread inside asgiref's ``thread_handler``: the coroutine chain of the task that
    offloaded this call, and the thread_handler frame (None, None when not found)."""
    handler = thread_frame
    while handler is not None and not _is_asgiref(handler, _ASGIREF_HANDLER):
        handler = handler.f_back
    if handler is None:
        return [], None
    handler_locals = handler.f_locals
    loop = handler_locals.get("loop")
    shared = {id(v) for v in handler_locals.values() if callable(v) or isinstance(v, list)}
    shared |= {id(v) for v in handler_locals.get("args", ()) if callable(v)}
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return [], handler
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:
        return [], handler
    for task in tasks:
        frames = _coroutine_frames(task)
        for depth, frame in enumerate(frames):
            if _is_asgiref(frame, _ASGIREF_CALL) and any(id(v) in shared for v in frame.f_locals.values()):
                chain = [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in frames[: depth + 1]]
                return chain, handler
    return [], handler


def here(skip: int = 1) -> Stack:
    """The logical call stack of the caller (``skip`` frames dropped at the inner end)."""
    frame = sys._getframe(skip)
    own = _walk(frame)
    if not any(f[2] == _ASGIREF_HANDLER for f in own):
        return tuple(own)
    try:
        chain, handler = _offloading_chain(frame)
    except Exception:  # never let a report aid break a run
        chain, handler = [], None
    if handler is not None:
        # Keep the thread's frames from the offloaded function on (drop the thread machinery).
        code = handler.f_code
        cut = max((i for i, f in enumerate(own) if f[2] == code.co_name and f[0] == code.co_filename),
                  default=-1)
        own = own[cut + 1:]
    return tuple(chain + own)


def task_stack(task: asyncio.Task[Any]) -> Stack:
    """Where a suspended task's coroutine chain is waiting, outermost first."""
    return tuple((f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in _coroutine_frames(task))
