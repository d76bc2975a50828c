"""Tests of the deterministic scheduler (harness.scheduler) and its choice sources (harness.choice).

No test sleeps in wall-clock time: every wait below is virtual. Django is not needed, only asgiref.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.choice import FifoChoices, HypothesisChoices, RandomChoices, Tape, TapeChoices
from harness.errors import (
    BoundExceeded,
    Deadlock,
    OffloadTimeout,
    SchedulerError,
    TapeExhausted,
    TapeMismatch,
)
from harness.scheduler import ControlledLoop, crash, current_process, run, spawn_process

# --- scenarios -------------------------------------------------------------------------------


async def interleave() -> str:
    """Two coroutines append to one list across awaits; the result is the interleaving."""
    log: list[str] = []

    async def worker(name: str) -> None:
        for i in range(3):
            log.append(f"{name}{i}")
            await asyncio.sleep(0)

    await asyncio.gather(worker("a"), worker("b"))
    return " ".join(log)


async def first_writer() -> str:
    """Which of two racing coroutines writes first: "AB" or "BA"."""
    order: list[str] = []

    async def writer(name: str) -> None:
        await asyncio.sleep(0)
        order.append(name)

    await asyncio.gather(writer("A"), writer("B"))
    return "".join(order)


async def planted_bug() -> None:
    """Correct under FIFO; fails only when B gets two steps in before A's second one."""
    order: list[str] = []

    async def a() -> None:
        await asyncio.sleep(0)
        order.append("A")

    async def b() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        order.append("B")

    await asyncio.gather(a(), b())
    assert order[0] == "A", f"B ran before A: {order}"


def _record(log: list[str], name: str) -> str:
    log.append(name)
    return threading.current_thread().name


async def offloads_vs_coroutine() -> tuple[str, set[str]]:
    """Two run_in_executor calls (different executors) race a coroutine; returns the order and threads."""
    log: list[str] = []
    loop = asyncio.get_running_loop()

    async def coro() -> str:
        log.append("coro")
        return "loop"

    results = await asyncio.gather(
        loop.run_in_executor(None, _record, log, "q1"),
        loop.run_in_executor(ThreadPoolExecutor(max_workers=1), _record, log, "q2"),
        coro(),
    )
    return " ".join(log), set(results[:2])


async def sync_to_async_vs_coroutine() -> tuple[str, set[str]]:
    """asgiref's two modes race a coroutine."""
    log: list[str] = []

    async def coro() -> str:
        log.append("coro")
        return "loop"

    results = await asyncio.gather(
        sync_to_async(_record)(log, "sensitive"),
        sync_to_async(_record, thread_sensitive=False)(log, "insensitive"),
        coro(),
    )
    return " ".join(log), set(results[:2])


def _orders(main, seeds: range) -> set:
    return {run(main, RandomChoices(seed)).unwrap() for seed in seeds}


# --- choice sources --------------------------------------------------------------------------


def test_choice_sources_record_only_real_decisions() -> None:
    fifo = FifoChoices()
    assert fifo.choose(1, "x") == 0
    assert len(fifo.tape) == 0
    assert fifo.choose(3, "ready") == 0
    assert fifo.tape == Tape([0], [3], ["ready"])
    with pytest.raises(ValueError, match="at least one option"):
        fifo.choose(0, "x")

    rnd = RandomChoices(1)
    picks = [rnd.choose(4, "ready") for _ in range(50)]
    assert set(picks) == {0, 1, 2, 3}
    assert rnd.tape.choices == picks


def test_tape_json_round_trip() -> None:
    tape = Tape([1, 0, 2], [2, 2, 3], ["ready", "ready", "ready+time"])
    assert Tape.from_json(tape.to_json()) == tape
    assert Tape.from_dict({"choices": [1, 0]}) == Tape([1, 0])
    with pytest.raises(ValueError, match="3 choices but 2 sizes"):
        Tape.from_dict({"choices": [1, 0, 1], "sizes": [2, 2]})


# --- ordering --------------------------------------------------------------------------------


def test_fifo_gives_the_plain_asyncio_order() -> None:
    result = run(interleave, FifoChoices())
    assert result.unwrap() == "a0 b0 a1 b1 a2 b2"
    assert result.tape.choices and set(result.tape.choices) == {0}
    assert run(interleave).unwrap() == asyncio.run(interleave())  # FIFO == what asyncio itself does


def test_same_seed_gives_same_tape_and_trace() -> None:
    first = run(interleave, RandomChoices(5))
    run(interleave, RandomChoices(6))  # global counters move in between (asyncio task names...)
    again = run(interleave, RandomChoices(5))
    assert first.value == again.value
    assert first.tape == again.tape
    assert first.trace == again.trace
    assert len({run(interleave, RandomChoices(seed)).tape.to_json() for seed in range(10)}) > 1


def test_racing_coroutines_run_in_both_orders() -> None:
    assert run(first_writer).unwrap() == "AB"
    assert _orders(first_writer, range(30)) == {"AB", "BA"}


def test_tape_replays_a_recorded_order_exactly() -> None:
    recorded = next(
        result for seed in range(100) if (result := run(first_writer, RandomChoices(seed))).value == "BA"
    )
    tape = Tape.from_json(recorded.tape.to_json())
    for _ in range(3):
        replay = run(first_writer, TapeChoices(tape))
        assert replay.unwrap() == "BA"
        assert replay.trace == recorded.trace
        assert replay.tape == recorded.tape


# --- virtual time ----------------------------------------------------------------------------


def test_an_hour_of_sleep_is_instant_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    wall = time.perf_counter()
    result = run(main)
    assert result.unwrap() == 3600.0
    assert result.virtual_time == 3600.0
    assert time.perf_counter() - wall < 5  # i.e. it did not sleep for an hour


def test_timeouts_fire_in_virtual_time() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), timeout=5)
        after_wait_for = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.Event().wait()
        return after_wait_for - start, loop.time() - after_wait_for

    assert run(main).unwrap() == (5.0, 2.0)


# --- offloads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "fifo"),
    [
        # run_in_executor queues both calls before gather starts the coroutine...
        (offloads_vs_coroutine, "q1 q2 coro"),
        # ...while sync_to_async queues them from the first steps of the tasks gather creates.
        (sync_to_async_vs_coroutine, "coro sensitive insensitive"),
    ],
)
def test_offloaded_calls_complete_at_chosen_points_on_a_worker_thread(scenario, fifo: str) -> None:
    fifo_order, threads = run(scenario).unwrap()
    assert fifo_order == fifo  # FIFO = a thread that answers at once
    assert len(threads) == 1 and threading.current_thread().name not in threads  # one non-loop thread
    orders = {run(scenario, RandomChoices(seed)).unwrap()[0] for seed in range(40)}
    assert len(orders) >= 3, orders  # the offloads really compete with the coroutine
    for seed in range(5):  # and every order is repeatable
        assert run(scenario, RandomChoices(seed)).value == run(scenario, RandomChoices(seed)).value
    labels = [event.label for event in run(scenario).trace]
    assert any(label.startswith("offload:_record") for label in labels)


def test_a_slow_offload_can_lose_to_a_timer() -> None:
    async def main() -> str:
        try:
            return await asyncio.wait_for(sync_to_async(lambda: "row")(), timeout=1)
        except TimeoutError:
            return "timeout"

    assert run(main).unwrap() == "row"
    assert _orders(main, range(20)) == {"row", "timeout"}
    assert "ready+time" in run(main, RandomChoices(0)).tape.labels


def test_asgiref_thread_sensitive_context_stays_deterministic() -> None:
    async def main() -> str:
        async with ThreadSensitiveContext():
            return await sync_to_async(lambda: threading.current_thread().name)()

    result = run(main)
    assert result.unwrap() != threading.current_thread().name
    # Its __aexit__ would otherwise join an executor on a fresh thread and wake us from there.
    assert result.foreign_callbacks == 0


def test_async_to_sync_inside_an_offloaded_call() -> None:
    async def inner() -> str:
        return await sync_to_async(lambda: threading.current_thread().name)()

    def outer() -> tuple[str, str]:
        return threading.current_thread().name, async_to_sync(inner)()

    async def main() -> tuple[str, str]:
        return await sync_to_async(outer)()

    outer_thread, inner_thread = run(main).unwrap()
    assert outer_thread == inner_thread != threading.current_thread().name


def test_offloaded_code_sees_the_calling_process() -> None:
    async def main() -> tuple[object, object, object]:
        proc = spawn_process("web")

        async def job() -> object:
            return await sync_to_async(lambda: current_process())()

        return current_process(), await proc.create_task(job()), proc

    driver, seen, proc = run(main).unwrap()
    assert driver is None and seen is proc


# --- simulated processes ---------------------------------------------------------------------


def test_crash_freezes_a_process_while_another_continues() -> None:
    log: list[tuple[str, object]] = []
    children: list[asyncio.Task[None]] = []

    async def ticker(name: str) -> None:
        async def child() -> None:
            try:
                await asyncio.sleep(100)
            finally:
                log.append((name, "child finally"))

        try:
            children.append(asyncio.create_task(child()))  # inherits the process
            for i in range(10):
                log.append((name, i))
                await asyncio.sleep(1)
        finally:
            log.append((name, "finally"))

    async def main() -> list[str]:
        web, worker = spawn_process("web"), spawn_process("worker")
        web.create_task(ticker("web"))
        worker_task = worker.create_task(ticker("worker"))
        await asyncio.sleep(2.5)
        crash(web)
        assert web.crashed and len(web.tasks()) == 2
        await worker_task
        restarted = spawn_process("web")
        await restarted.create_task(asyncio.sleep(1))
        return [p.label for p in asyncio.get_running_loop().processes]

    result = run(main)
    gc.collect()  # frozen coroutines must not be closed by garbage collection either
    assert result.unwrap() == ["web.1", "worker.1", "web.2"]
    assert [i for name, i in log if name == "web"] == [0, 1, 2]  # never resumed, no finally
    assert [i for name, i in log if name == "worker"] == [*range(10), "finally", "child finally"]
    assert result.loop_errors == []  # no "Task was destroyed but it is pending!"


def test_crash_drops_pending_timers_offloads_and_async_generators() -> None:
    calls: list[str] = []

    def db_write() -> None:
        calls.append("db_write")

    async def events():
        try:
            while True:
                yield 1
                await asyncio.sleep(1)
        finally:
            calls.append("generator finally")

    async def victim() -> None:
        async for _ in events():
            await sync_to_async(db_write)()

    async def main() -> None:
        proc = spawn_process("web")
        proc.create_task(victim())
        await asyncio.sleep(0)  # FIFO: the victim's first step queues its offload, then we crash it
        crash(proc)
        await asyncio.sleep(10)

    result = run(main)
    gc.collect()
    assert result.ok and calls == []


def test_process_helpers_need_a_controlled_loop() -> None:
    async def main() -> None:
        spawn_process("web")

    with pytest.raises(SchedulerError, match="must be called from a coroutine run by"):
        asyncio.run(main())


def test_a_crashed_process_cannot_start_tasks() -> None:
    async def main() -> None:
        proc = spawn_process("web")
        proc.crash()
        proc.create_task(asyncio.sleep(0))

    result = run(main)
    assert isinstance(result.error, SchedulerError) and "restarts it" in str(result.error)


# --- hangs and bounds ------------------------------------------------------------------------


def test_a_deadlock_is_reported_with_stacks() -> None:
    async def main() -> None:
        never = asyncio.get_running_loop().create_future()

        async def stuck_consumer() -> None:
            await never

        await asyncio.create_task(stuck_consumer())

    result = run(main)
    assert isinstance(result.error, Deadlock)
    names = [name for name, _ in result.error.waiting]
    assert names == ["main", "test_a_deadlock_is_reported_with_stacks.main.stuck_consumer-1"]
    assert "await never" in str(result.error) and "in stuck_consumer" in str(result.error)


def test_waiting_on_a_crashed_process_is_a_deadlock() -> None:
    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def producer() -> None:
            await asyncio.sleep(5)
            await queue.put(1)

        proc = spawn_process("producer")
        proc.create_task(producer())
        await asyncio.sleep(1)
        crash(proc)
        await queue.get()

    result = run(main)
    assert isinstance(result.error, Deadlock)
    assert "Crashed processes (frozen, never resumed): producer.1" in str(result.error)
    assert result.error.virtual_time == 1.0


def test_max_steps_bound() -> None:
    async def spin() -> None:
        while True:  # a livelock on purpose
            await asyncio.sleep(0)

    result = run(spin, max_steps=500)
    assert isinstance(result.error, BoundExceeded)
    assert result.error.bound == "max_steps" and result.error.steps == 500
    assert "task:main" in str(result.error)


def test_max_virtual_time_bound() -> None:
    async def tick() -> None:
        while True:  # a timer that never stops, on purpose
            await asyncio.sleep(1)

    result = run(tick, max_virtual_time=60)
    assert isinstance(result.error, BoundExceeded)
    assert result.error.bound == "max_virtual_time" and result.error.virtual_time == 60.0


# --- tapes -----------------------------------------------------------------------------------


def test_tape_exhaustion_and_mismatch_are_clear_errors() -> None:
    recorded = run(interleave, RandomChoices(3))
    assert len(recorded.tape) >= 2

    short = run(interleave, TapeChoices(recorded.tape.choices[:1]))
    assert isinstance(short.error, TapeExhausted)
    assert "diverged from the recording" in str(short.error)

    wrong_size = Tape([0], [7], ["ready"])
    assert isinstance(run(interleave, TapeChoices(wrong_size)).error, TapeMismatch)

    too_long = run(interleave, TapeChoices([*recorded.tape.choices, 0]))
    assert isinstance(too_long.error, TapeMismatch) and "ended after" in str(too_long.error)


def test_a_short_tape_can_be_a_prefix_followed_by_fifo() -> None:
    # a1, b1 in FIFO order, then B's next two steps jump ahead of A's second step.
    result = run(planted_bug, TapeChoices([0, 0, 1, 1], fifo_after_end=True))
    assert isinstance(result.error, AssertionError)
    assert result.tape.choices[:4] == [0, 0, 1, 1] and set(result.tape.choices[4:]) <= {0}


# --- hypothesis ------------------------------------------------------------------------------


def test_hypothesis_finds_and_shrinks_an_order_dependent_bug() -> None:
    assert run(planted_bug).ok  # plain FIFO hides the bug
    tapes: list[Tape] = []

    @settings(
        max_examples=300,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def explore(data: st.DataObject) -> None:
        result = run(planted_bug, HypothesisChoices(data))
        tapes.append(result.tape)
        result.unwrap()

    with pytest.raises(AssertionError, match="B ran before A"):
        explore()
    minimal = tapes[-1]  # Hypothesis re-runs the shrunk example last
    assert isinstance(run(planted_bug, TapeChoices(minimal)).error, AssertionError)
    # Shrinking is shortlex (fewer decisions first, then smaller indices): B needs three steps in
    # before A's second, which takes at most five two-way decisions.
    assert len(minimal) <= 5 and set(minimal.choices) <= {0, 1}, minimal


# --- results, errors, hygiene ----------------------------------------------------------------


def test_main_errors_and_callback_errors_are_reported() -> None:
    async def main() -> None:
        asyncio.get_running_loop().call_soon(lambda: 1 / 0)
        await asyncio.sleep(0)
        raise ValueError("boom")

    result = run(main)
    assert isinstance(result.error, ValueError)
    with pytest.raises(ValueError, match="boom"):
        result.unwrap()
    assert [type(e.exception) for e in result.loop_errors] == [ZeroDivisionError]


def test_leftover_tasks_are_cancelled_at_shutdown() -> None:
    log: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(1000)
        finally:
            log.append("cleaned up")

    async def main() -> str:
        leftover = asyncio.create_task(background())
        await asyncio.sleep(0)
        assert not leftover.done()
        return "done"

    result = run(main)
    assert result.unwrap() == "done" and log == ["cleaned up"] and result.shutdown_error is None


def test_callbacks_from_foreign_threads_are_taken_in() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(future.set_result, "hi")).start()
        return await future

    result = run(main)
    assert result.unwrap() == "hi" and result.foreign_callbacks == 1


def test_a_stuck_offloaded_call_is_reported_not_waited_for() -> None:
    release = threading.Event()

    async def main() -> None:
        await sync_to_async(release.wait)()  # blocks the worker until the test releases it

    try:
        result = run(main, offload_timeout=0.05)
    finally:
        release.set()  # let the abandoned worker thread finish
    assert isinstance(result.error, OffloadTimeout)
    assert "did not return within 0.05s" in str(result.error)
    assert run(offloads_vs_coroutine).ok  # the next run gets a fresh worker


def test_controlled_loop_on_its_own() -> None:
    loop = ControlledLoop(RandomChoices(2))
    try:
        assert loop.run_until_complete(interleave()) == run(interleave, RandomChoices(2)).value
        assert loop.tape == run(interleave, RandomChoices(2)).tape
    finally:
        loop.close()


def test_runs_leak_no_threads_or_loops() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> str:
        loops.append(asyncio.get_running_loop())
        return await sync_to_async_vs_coroutine()

    run(main)  # starts the shared worker thread
    threads = threading.active_count()
    for seed in range(100):
        run(main, RandomChoices(seed))
    assert threading.active_count() == threads
    assert all(loop.is_closed() for loop in loops)
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
