"""The facade the dashboard and the CLI talk to: one :class:`Sidekick` per process.

It owns the loop thread, the browser pool and the session registry (and, later, the checkpointer),
acquired in order and released in reverse. Its methods are synchronous and bounded: they submit
coroutines to the loop thread and wait with a timeout, so a script thread can never hang on a dead
loop. :func:`get_sidekick` returns the process-wide instance and makes sure it is closed at exit.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from sidekick.browser import BrowserPool, Screenshot
from sidekick.config import Settings
from sidekick.errors import RuntimeStoppedError
from sidekick.resources import ProcessReport, browser_processes, self_memory_bytes
from sidekick.runtime import LoopThread
from sidekick.sessions import Freed, SessionRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What the resources panel shows."""

    sessions: int
    sessions_with_browser: int
    contexts: int
    processes: ProcessReport
    server_mb: float
    launches: int
    crashes: int


class Sidekick:
    """Process-wide owner of every async resource. States: new → running → closed (final)."""

    def __init__(self, settings: Settings, *, is_active: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self._is_active = is_active
        self._runtime = LoopThread()
        self.pool: BrowserPool | None = None
        self.registry: SessionRegistry | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def runtime(self) -> LoopThread:
        return self._runtime

    def start(self, *, warm: bool = True) -> Sidekick:
        self._runtime.start()
        try:
            self._runtime.run(self._astart(warm), timeout=60)
        except BaseException:
            self._runtime.stop()
            raise
        return self

    async def _astart(self, warm: bool) -> None:
        self.pool = BrowserPool(self.settings)
        self.registry = SessionRegistry(
            self.pool,
            idle_seconds=self.settings.idle_minutes * 60,
            grace_seconds=self.settings.session_grace_seconds,
            is_active=self._is_active,
        )
        if warm:
            # Launch in the background: the page renders at once and the first session finds a spare.
            self.pool._schedule_spare()

    def _parts(self) -> tuple[BrowserPool, SessionRegistry]:
        if self._closed or self.pool is None or self.registry is None:
            raise RuntimeStoppedError("Sidekick is shut down; restart the app to continue.")
        return self.pool, self.registry

    # -- what the UI calls -------------------------------------------------------------------------
    def open_url(self, session_id: str, url: str, timeout: float = 45.0) -> Screenshot:
        _, registry = self._parts()

        async def go() -> Screenshot:
            return await registry.get(session_id).open_url(url)

        return self._runtime.run(go(), timeout)

    def reset(self, session_id: str, timeout: float = 30.0) -> Freed:
        _, registry = self._parts()
        return self._runtime.run(registry.reset(session_id), timeout)

    def end_session(self, session_id: str) -> None:
        """Free a session without waiting (safe on Streamlit's server thread)."""
        if self._closed or self.registry is None or not self._runtime.is_running:
            return
        self._runtime.submit(self.registry.end(session_id))

    def resources(self, timeout: float = 10.0) -> Resources:
        pool, registry = self._parts()

        async def gather() -> tuple[int, int, int]:
            return len(registry), sum(1 for s in registry.sessions() if s.has_browser), pool.open_contexts

        sessions, with_browser, contexts = self._runtime.run(gather(), timeout)
        return Resources(
            sessions=sessions,
            sessions_with_browser=with_browser,
            contexts=contexts,
            processes=browser_processes(),
            server_mb=self_memory_bytes() / 2**20,
            launches=pool.launches,
            crashes=pool.crashes,
        )

    # -- shutdown --------------------------------------------------------------------------------
    def close(self, timeout: float = 20.0) -> None:
        """Close sessions, then the pool, then stop the loop. Idempotent; bounded by ``timeout``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        pool, registry = self.pool, self.registry
        if self._runtime.is_running:

            async def shutdown() -> None:
                if registry is not None:
                    await registry.aclose()
                if pool is not None:
                    await pool.aclose()

            try:
                self._runtime.run(shutdown(), timeout)
            except Exception:
                log.exception("Sidekick did not shut down cleanly")
        self._runtime.stop(timeout=5)


_instance: Sidekick | None = None
_instance_lock = threading.Lock()


def get_sidekick(
    settings: Settings | None = None, *, is_active: Callable[[str], bool] | None = None
) -> Sidekick:
    """The process-wide Sidekick, started on first call and closed at exit (atexit and SIGTERM)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            instance = Sidekick(settings or Settings.load(), is_active=is_active).start()
            _install_exit_handlers(instance)
            _instance = instance
        return _instance


def _install_exit_handlers(instance: Sidekick) -> None:
    atexit.register(instance.close)
    # Signal handlers can only be set on the main thread; under Streamlit, its own SIGTERM handler
    # stops the server and the process exits normally, so atexit covers it.
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        instance.close()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
