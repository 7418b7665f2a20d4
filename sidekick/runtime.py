"""The one asyncio loop thread that owns every async object in the process.

Playwright, browser contexts, LangChain's async HTTP clients and the SQLite checkpointer are bound to
the loop that created them, so all of them live on this thread. Streamlit's script threads (and the
CLI) hand it coroutines with :meth:`LoopThread.run` (wait, with a timeout) or :meth:`LoopThread.submit`
(a ``concurrent.futures.Future``). Modelled on anyio's blocking portal: a start handshake carries
start-up errors to the caller, a blocking call from the loop's own thread is refused instead of
deadlocking, and :meth:`LoopThread.stop` cancels what is left, shuts down async generators, closes
the loop and joins the thread, within a bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sidekick.errors import RuntimeCallError, RuntimeStoppedError

T = TypeVar("T")


class LoopThread:
    """A daemon thread running one event loop. States: new → running → stopped (final)."""

    def __init__(self, name: str = "sidekick-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state = "new"
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> LoopThread:
        with self._lock:
            if self._state != "new":
                raise RuntimeCallError(f"The loop thread was already {self._state}; make a new one.")
            started = concurrent.futures.Future[None]()
            self._thread = threading.Thread(target=self._main, args=(started,), name=self._name, daemon=True)
            self._thread.start()
            try:
                started.result(timeout)
            except concurrent.futures.TimeoutError:
                self._state = "stopped"
                raise RuntimeCallError(f"The loop thread did not start within {timeout:.0f} s.") from None
            except BaseException:
                self._state = "stopped"
                raise
            self._state = "running"
            return self

    def _main(self, started: concurrent.futures.Future[None]) -> None:
        try:
            loop = self._new_loop()
            asyncio.set_event_loop(loop)
        except BaseException as exc:
            started.set_exception(exc)
            return
        self._loop = loop
        loop.call_soon(started.set_result, None)
        try:
            loop.run_forever()
        finally:
            try:
                self._cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                with contextlib.suppress(TimeoutError):  # a thread stuck in DNS must not hold up exit
                    loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), 5))
            finally:
                loop.close()

    @staticmethod
    def _cancel_all(loop: asyncio.AbstractEventLoop, grace: float = 5.0) -> None:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            # A task that swallows cancellation must not keep the process from exiting.
            loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # mark retrieved, so asyncio does not log it as never retrieved

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        if sys.platform == "win32":  # Playwright starts its driver as a subprocess.
            return asyncio.ProactorEventLoop()
        return asyncio.new_event_loop()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel remaining tasks, close the loop and join the thread. Idempotent."""
        with self._lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeCallError("stop() was called from the loop thread itself; call it from outside.")
        with contextlib.suppress(RuntimeError):  # the loop may have died already
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    # -- calls ---------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return (
            self._state == "running"
            and self._thread is not None
            and self._thread.is_alive()
            and self._loop is not None
            and self._loop.is_running()
        )

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _check_alive(self) -> None:
        if not self.is_running:
            state = "stopped" if self._state != "new" else "not started"
            raise RuntimeStoppedError(f"Sidekick's background loop is {state}; restart the app to continue.")

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop and return a future; never blocks."""
        try:
            self._check_alive()
            return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        except BaseException:
            coro.close()  # never leave a "coroutine was never awaited" behind
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait for it, at most ``timeout`` seconds.

        On timeout the coroutine is cancelled and :class:`RuntimeCallError` is raised. The loop's
        own thread may not block on itself: that would deadlock, so it is refused.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeCallError("A blocking call was made from the loop thread; await the coroutine instead.")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RuntimeCallError(f"The operation did not finish within {timeout:g} s and was cancelled.") from None
        except concurrent.futures.CancelledError:
            if not self.is_running:
                raise RuntimeStoppedError("Sidekick's background loop stopped while the call was running.") from None
            raise
        except BaseException:
            # Streamlit's rerun/stop exceptions land here: do not leave the work running orphaned.
            future.cancel()
            raise
