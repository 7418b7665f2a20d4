"""The registry of live sessions and every path that frees them.

A :class:`Session` is one dashboard tab (or one CLI run): its browser context, created on first use,
and whatever runs on its behalf. :class:`SessionRegistry` lives on the loop thread and frees sessions
on every path the brief promises:

- **Reset**: :meth:`SessionRegistry.reset`, awaited, returns a :class:`Freed` report;
- **session end**: :meth:`SessionRegistry.end`, submitted by Streamlit's ``on_release``;
- **watchdog**: sessions whose Streamlit session is no longer active (``is_active``) for longer than
  the grace period are ended, covering whatever ``on_release`` misses;
- **idle**: a session unused for ``SIDEKICK_IDLE_MINUTES`` has its context closed; the next use
  opens a fresh one;
- **exit**: :meth:`SessionRegistry.aclose` ends them all (the facade calls it at process exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sidekick.agent import Agent
from sidekick.browser import BrowserPool, Screenshot, SessionBrowser, normalize_url
from sidekick.errors import SessionClosedError
from sidekick.resources import ProcessReport, browser_processes

log = logging.getLogger(__name__)

AgentFactory = Callable[["Session"], Agent]


@dataclass(frozen=True)
class Freed:
    """What one Reset (or end) released."""

    contexts: int
    processes: int
    megabytes: float
    runs_cancelled: int = 0

    def describe(self) -> str:
        if not (self.contexts or self.processes or self.runs_cancelled):
            return "Nothing to free: this session had no browser open."
        parts = [f"{self.contexts} browser context{'s' if self.contexts != 1 else ''}"]
        parts.append(f"{self.processes} process{'es' if self.processes != 1 else ''}")
        parts.append(f"{self.megabytes:.0f} MB")
        if self.runs_cancelled:
            parts.append(f"{self.runs_cancelled} run{'s' if self.runs_cancelled != 1 else ''} stopped")
        return "Freed " + ", ".join(parts) + "."


class Session:
    """One user's session: a browser context on demand, and its agent (built on first use)."""

    def __init__(self, session_id: str, pool: BrowserPool, agent_factory: AgentFactory | None = None) -> None:
        self.id = session_id
        self._pool = pool
        self._agent_factory = agent_factory
        self._agent: Agent | None = None
        self._browser: SessionBrowser | None = None
        self._browser_lock = asyncio.Lock()
        self.closed = False
        self.created_at = time.monotonic()
        self.last_active = self.created_at
        self.inactive_since: float | None = None  # set by the watchdog when Streamlit forgets the tab
        # Where this session's blocked requests go (its agent's event stream), whichever context it has.
        self.on_blocked: Callable[[str, str], None] | None = None

    def touch(self) -> None:
        self.last_active = time.monotonic()

    @property
    def has_browser(self) -> bool:
        return self._browser is not None and not self._browser.closed

    async def browser(self) -> SessionBrowser:
        """This session's live context, opened (or reopened after a crash or idle) on demand."""
        if self.closed:
            raise SessionClosedError("This session was ended; reload the page to start a new one.")
        self.touch()
        async with self._browser_lock:
            if self._browser is None or not self._browser.alive:
                old, self._browser = self._browser, None
                if old is not None:
                    await old.aclose()
                self._browser = await self._pool.new_session_browser()
                self._browser.blocked.target = self._report_blocked
                if self.closed:  # ended while we were opening it
                    await self._browser.aclose()
                    self._browser = None
                    raise SessionClosedError("This session was ended while its browser was opening.")
            return self._browser

    def _report_blocked(self, url: str, reason: str) -> None:
        if self.on_blocked is not None:
            self.on_blocked(url, reason)

    async def open_url(self, text: str) -> Screenshot:
        url = normalize_url(text)
        browser = await self.browser()
        shot = await browser.goto(url)
        self.touch()
        return shot

    @property
    def busy(self) -> bool:
        """A run is in progress (idle cleanup must wait for it)."""
        return self._agent is not None and self._agent.running

    @property
    def agent(self) -> Agent:
        """This session's agent, built on first use (its tools bound to this session)."""
        if self.closed:
            raise SessionClosedError("This session was ended; reload the page to start a new one.")
        if self._agent is None:
            if self._agent_factory is None:
                raise SessionClosedError("This session has no agent.")
            self._agent = self._agent_factory(self)
        return self._agent

    async def release(self) -> tuple[int, int]:
        """Stop the run in progress and close the browser context; the session stays usable.

        Returns (contexts closed, runs stopped).
        """
        stopped = 1 if self._agent is not None and await self._agent.cancel() else 0
        async with self._browser_lock:
            browser, self._browser = self._browser, None
        contexts = 0
        if browser is not None and not browser.closed:
            contexts = 1 if browser.alive else 0
            await browser.aclose()
        return contexts, stopped

    async def aclose(self) -> None:
        """Release everything and refuse further use. Idempotent."""
        if self.closed:
            return
        self.closed = True
        await self.release()
        if self._agent is not None:
            await self._agent.aclose()


class SessionRegistry:
    """Live sessions by id, with the watchdog and idle sweeper. Runs on the loop thread."""

    def __init__(
        self,
        pool: BrowserPool,
        *,
        idle_seconds: float,
        grace_seconds: float,
        is_active: Callable[[str], bool] | None = None,
        sweep_interval: float | None = None,
        agent_factory: AgentFactory | None = None,
    ) -> None:
        self._pool = pool
        self._agent_factory = agent_factory
        self._sessions: dict[str, Session] = {}
        self.idle_seconds = idle_seconds
        self.grace_seconds = grace_seconds
        self.is_active = is_active
        self.sweep_interval = sweep_interval or max(0.5, min(5.0, grace_seconds / 2, idle_seconds / 4))
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self.ended = 0  # sessions freed since start, by any path

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Session:
        if self._closed:
            raise SessionClosedError("Sidekick is shutting down.")
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = Session(session_id, self._pool, self._agent_factory)
            self._ensure_watchdog()
        return session

    async def reset(self, session_id: str) -> Freed:
        """Free the session's context and runs, wait for Chromium to let go, report what was freed."""
        session = self._sessions.get(session_id)
        if session is None:
            return Freed(0, 0, 0.0)
        before = await asyncio.to_thread(browser_processes)
        contexts, stopped = await session.release()
        gone = (await _settled(before)).gone_since(before) if contexts else ProcessReport(())
        return Freed(contexts=contexts, processes=gone.processes, megabytes=gone.total_mb, runs_cancelled=stopped)

    async def end(self, session_id: str) -> None:
        """Close and forget a session (tab closed). Idempotent."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await session.aclose()
            self.ended += 1

    # -- watchdog ------------------------------------------------------------------------------
    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="sidekick-watchdog")

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:  # the watchdog must outlive any one bad session
                log.exception("Session sweep failed")

    async def sweep(self, now: float | None = None) -> list[str]:
        """End sessions Streamlit no longer knows; close idle sessions' contexts. Returns ended ids."""
        now = time.monotonic() if now is None else now
        ended: list[str] = []
        for session in list(self._sessions.values()):
            if self.is_active is not None:
                try:
                    active = self.is_active(session.id)
                except Exception:
                    active = True  # no Streamlit runtime (CLI, tests): never end on its say-so
                if active:
                    session.inactive_since = None
                elif session.inactive_since is None:
                    session.inactive_since = now
                elif now - session.inactive_since >= self.grace_seconds:
                    await self.end(session.id)
                    ended.append(session.id)
                    continue
            if session.has_browser and not session.busy and now - session.last_active >= self.idle_seconds:
                log.info("Session %s idle; closing its browser context.", session.id)
                await session.release()
        return ended

    async def aclose(self) -> None:
        """End every session and stop the watchdog. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait([self._watchdog], timeout=2)
        for session_id in list(self._sessions):
            await self.end(session_id)


async def _settled(before: ProcessReport, timeout: float = 2.0) -> ProcessReport:
    """Renderer processes exit a moment after their context closes: wait until one of them has."""
    deadline = time.monotonic() + timeout
    now = await asyncio.to_thread(browser_processes, memory=False)
    while not now.gone_since(before).procs and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = await asyncio.to_thread(browser_processes, memory=False)
    await asyncio.sleep(0.1)  # several renderers may exit one after another
    return await asyncio.to_thread(browser_processes, memory=False)
