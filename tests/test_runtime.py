import asyncio
import threading
import time

import pytest

from sidekick.errors import RuntimeCallError, RuntimeStoppedError
from sidekick.runtime import LoopThread


@pytest.fixture
def loop_thread():
    lt = LoopThread().start()
    yield lt
    lt.stop()


def test_run_returns_the_result_on_the_loop_thread(loop_thread: LoopThread) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert loop_thread.run(where(), timeout=5) == "sidekick-loop"


def test_run_carries_the_coroutines_exception(loop_thread: LoopThread) -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop_thread.run(fail(), timeout=5)


def test_run_times_out_and_cancels_the_work(loop_thread: LoopThread) -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(RuntimeCallError, match=r"did not finish within 0\.2 s"):
        loop_thread.run(slow(), timeout=0.2)
    assert cancelled.wait(2)
    assert loop_thread.is_running  # the loop survives a timed-out call


def test_blocking_call_from_the_loop_thread_is_refused_not_deadlocked(loop_thread: LoopThread) -> None:
    async def inner() -> int:
        return 1

    async def outer() -> str:
        try:
            loop_thread.run(inner(), timeout=5)
        except RuntimeCallError as exc:
            return str(exc)
        return "no error"

    message = loop_thread.run(outer(), timeout=5)
    assert "from the loop thread" in message


def test_submit_after_stop_is_a_clear_error_and_leaves_no_unawaited_coroutine() -> None:
    lt = LoopThread().start()
    lt.stop()
    lt.stop()  # idempotent

    async def work() -> None:
        pass

    with pytest.raises(RuntimeStoppedError, match="stopped"):
        lt.submit(work())  # filterwarnings=error would fail on "never awaited"
    with pytest.raises(RuntimeStoppedError):
        lt.run(work(), timeout=1)


def test_submit_before_start_is_a_clear_error() -> None:
    async def work() -> None:
        pass

    with pytest.raises(RuntimeStoppedError, match="not started"):
        LoopThread().run(work(), timeout=1)


def test_start_twice_is_refused(loop_thread: LoopThread) -> None:
    with pytest.raises(RuntimeCallError, match="already running"):
        loop_thread.start()


def test_start_up_errors_reach_the_caller() -> None:
    class Broken(LoopThread):
        def _new_loop(self) -> asyncio.AbstractEventLoop:
            raise OSError("no loop for you")

    with pytest.raises(OSError, match="no loop for you"):
        Broken().start()


def test_stop_cancels_hanging_tasks_within_its_bound() -> None:
    lt = LoopThread().start()
    started = threading.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    future = lt.submit(hang())
    assert started.wait(2)
    t0 = time.monotonic()
    lt.stop(timeout=5)
    assert time.monotonic() - t0 < 2
    assert future.cancelled()
    assert not lt.is_running


def test_stop_returns_in_time_even_if_a_task_ignores_cancellation() -> None:
    lt = LoopThread().start()
    started = threading.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(1.5)  # swallows the cancel, finishing well within stop's grace

    lt.submit(stubborn())
    assert started.wait(2)
    t0 = time.monotonic()
    lt.stop(timeout=1)
    assert time.monotonic() - t0 < 2


def test_a_waiting_caller_learns_when_the_loop_stops_under_it() -> None:
    lt = LoopThread().start()

    async def hang() -> None:
        await asyncio.sleep(3600)

    result: list[BaseException] = []

    def caller() -> None:
        try:
            lt.run(hang(), timeout=30)
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=caller)
    t.start()
    time.sleep(0.2)
    lt.stop()
    t.join(5)
    assert result and isinstance(result[0], RuntimeStoppedError)
