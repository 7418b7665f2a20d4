"""The registry of live sessions and every path that frees them.

A :class:`Session` is one dashboard tab (or one CLI run): its browser context and its
:class:`~sidekick.runs.Runner`, each made on first use from the process's :class:`SessionDeps`.
:class:`SessionRegistry` lives on the loop thread and frees sessions on every path the brief promises:

- **Reset**: :meth:`SessionRegistry.reset`, awaited, returns a :class:`Freed` report;
- **session end**: :meth:`SessionRegistry.end`, submitted by Streamlit's ``on_release``;
- **watchdog**: sessions whose Streamlit session is no longer active (``is_active``) for longer than
  the grace period are ended, covering whatever ``on_release`` misses;
- **idle**: a session unused for ``SIDEKICK_IDLE_MINUTES`` has its context closed; the next use
  opens a fresh one;
- **exit**: :meth:`SessionRegistry.aclose` ends them all (the facade calls it at process exit).

A session works on one conversation at a time (:meth:`Session.open_conversation`), and the browser
state and the workspace belong to that conversation, not to the tab: a reload (a new Streamlit
session), a restart or another server on the same database find them again by the conversation. The
session saves its browser's state (:class:`~sidekick.browser.state.BrowserState`) to the store a
moment after each use of the browser, off the agent's path, and when it closes the context (idle, tab
closed, exit, moving to another conversation); a crashed context can no longer be read, so the last
save is what comes back. The next context opens from the saved state and goes back to its page.
Reset deletes it. Deleting a conversation deletes its browser state and its workspace folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from langchain_core.tools import BaseTool

from sidekick.browser.context import SessionBrowser
from sidekick.browser.pool import BrowserPool
from sidekick.browser.state import BrowserState
from sidekick.config import Settings
from sidekick.errors import SessionClosedError, SidekickError
from sidekick.events import Screenshot
from sidekick.mcp import McpHub, SessionMcp
from sidekick.models import Models
from sidekick.procs import ProcessReport, browser_processes
from sidekick.runs import Runner, RunnerDeps
from sidekick.store import BaseStore
from sidekick.web.urls import normalize_url

log = logging.getLogger(__name__)

SAVE_QUIET_SECONDS = 1.0
"""A browser's state is saved this long after it was last used (uses in between make one save)."""
RESTORE_SECONDS = 10.0
"""Going back to the saved page gives up after this (the session goes on from a blank page)."""


@dataclass(frozen=True, kw_only=True)
class SessionDeps:
    """What every session is built from: the process's shared resources."""

    settings: Settings
    pool: BrowserPool
    store: BaseStore
    models: Models | None
    mcp: McpHub | None = None
    """The process's MCP servers; a session's own servers start on its first call to one."""
    replica: str = "local"
    """This server's name in conversation leases (one conversation runs on one replica at a time)."""

    def workspace(self, user: str, thread_id: str) -> Path:
        """A conversation's folder, inside its user's: files belong to whoever made them."""
        return (_workspaces(self.settings.data_dir) / _safe(user) / _safe(thread_id)).resolve()


def _workspaces(data_dir: Path) -> Path:
    return data_dir / "workspaces"


async def remove_workspaces(data_dir: Path, thread_ids: Iterable[str]) -> None:
    """Delete these conversations' workspace folders (whichever user's they are)."""

    def remove(names: list[str]) -> None:
        root = _workspaces(data_dir)
        users = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
        for user in users:
            for name in names:
                shutil.rmtree(user / name, ignore_errors=True)

    names = [_safe(t) for t in thread_ids]
    if names:
        await asyncio.to_thread(remove, names)


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
    """One user's session: a browser context on demand, and its runner (built on first use)."""

    def __init__(self, session_id: str, deps: SessionDeps, user: str | None = None) -> None:
        self.id = session_id
        self.user = user or deps.settings.local_user
        """Who this session works for: its conversations and files are theirs."""
        self._deps = deps
        self._pool = deps.pool
        self._runner: Runner | None = None
        self._mcp: SessionMcp | None = None
        self._browser: SessionBrowser | None = None
        self._browser_lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None  # saves the browser's state after each use
        self._state: BrowserState | None = None  # as last saved or restored
        self.thread: str | None = None
        """The conversation this session works on: the browser state and workspace are its own."""
        self.closed = False
        self.created_at = time.monotonic()
        self.last_active = self.created_at
        self.inactive_since: float | None = None  # set by the watchdog when Streamlit forgets the tab

    def touch(self) -> None:
        self.last_active = time.monotonic()

    @property
    def workspace(self) -> Path:
        """The conversation's folder for the file and Python tools (created on first use); a
        session not told its conversation (a bare runner, in tests) has one of its own."""
        return self._deps.workspace(self.user, self.thread or self.id)

    async def open_conversation(self, thread_id: str) -> None:
        """Work on ``thread_id`` from now on. Leaving another conversation stops its run and closes
        its browser (its state saved for it); the tools are built again for the new workspace, and
        the browser opens next from the new conversation's saved state, or clean."""
        if self.closed:
            raise SessionClosedError("This session was ended; reload the page to start a new one.")
        if thread_id == self.thread:
            return
        if self.thread is not None:
            await self.release()
        else:
            await self.cancel()  # a browser opened before any conversation stays, as this one's
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.aclose()
        mcp, self._mcp = self._mcp, None
        if mcp is not None:
            await mcp.aclose()  # its servers were started in the old workspace
        self.thread, self._state = thread_id, None

    @property
    def has_browser(self) -> bool:
        return self._browser is not None and not self._browser.closed

    @property
    def holds_resources(self) -> bool:
        """A browser context or MCP server processes that idle cleanup would free."""
        return self.has_browser or (self._mcp is not None and self._mcp.running)

    async def browser(self) -> SessionBrowser:
        """This session's live context, opened (or reopened after a crash or idle) on demand."""
        if self.closed:
            raise SessionClosedError("This session was ended; reload the page to start a new one.")
        self.touch()
        async with self._browser_lock:
            if self._browser is None or not self._browser.alive:
                old, self._browser = self._browser, None
                await _stopped(self._take_keeper())
                if old is not None:
                    await old.aclose()
                state = await self._saved_state()
                browser = await self._pool.new_session_browser(report=self._report_blocked, state=state)
                if self.closed:  # ended while we were opening it
                    await browser.aclose()
                    raise SessionClosedError("This session was ended while its browser was opening.")
                self._browser, self._state = browser, state
                if state is not None and state.url:
                    await _go_back(browser, state.url)
                self._keeper = asyncio.get_running_loop().create_task(
                    self._keep(browser), name=f"sidekick-keep-{self.id}"
                )
            return self._browser

    # -- the browser's state, kept for the conversation ------------------------------------------
    async def _saved_state(self) -> BrowserState | None:
        if self.thread is None:
            return None
        try:
            return await self._deps.store.browser_state(self.user, self.thread)
        except SidekickError as exc:  # the store is away: open clean rather than not at all
            log.warning("Could not read the saved browser state of %s: %s", self.thread, exc)
            return None

    async def _keep(self, browser: SessionBrowser) -> None:
        """Save the state a moment after each use (a crashed browser can no longer be read)."""
        while True:
            await browser.changed()
            await asyncio.sleep(SAVE_QUIET_SECONDS)
            await self._save(browser)

    async def _save(self, browser: SessionBrowser) -> None:
        thread = self.thread
        if thread is None or not browser.alive:
            return
        try:
            state = await browser.capture_state(self._state)
            if state == self._state:
                return  # nothing new since the last save (or the restore)
            await self._deps.store.save_browser_state(self.user, thread, state)
        except SidekickError as exc:  # crashed meanwhile, or the store is away: the last save stands
            log.info("Could not save the browser state of %s: %s", thread, exc)
            return
        self._state = state

    def _take_keeper(self) -> asyncio.Task[None] | None:
        keeper, self._keeper = self._keeper, None
        return keeper

    async def forget_state(self) -> None:
        """Delete the conversation's saved browser state (Reset: the next browser starts clean)."""
        self._state = None
        if self.thread is not None:
            try:
                await self._deps.store.delete_browser_state(self.user, self.thread)
            except SidekickError as exc:
                log.warning("Could not delete the saved browser state of %s: %s", self.thread, exc)

    def _report_blocked(self, url: str, reason: str) -> None:
        if self._runner is not None:
            self._runner.report_blocked(url, reason)

    async def open_url(self, text: str) -> Screenshot:
        url = normalize_url(text)
        browser = await self.browser()
        shot = await browser.goto(url)
        self.touch()
        return shot

    @property
    def busy(self) -> bool:
        """A run is in progress (idle cleanup must wait for it)."""
        return self._runner is not None and self._runner.running

    @property
    def runner(self) -> Runner:
        """This session's runner, built on first use (its tools bound to this session)."""
        if self.closed:
            raise SessionClosedError("This session was ended; reload the page to start a new one.")
        self.touch()
        if self._runner is None:
            deps = self._deps
            self._runner = Runner(
                RunnerDeps(
                    settings=deps.settings,
                    models=deps.models,
                    store=deps.store,
                    workspace=self.workspace,
                    owner=self.user,
                    replica=self._deps.replica,
                    get_browser=self.browser,
                    more_tools=self._mcp_tools if deps.mcp is not None else None,
                    # The Python sandbox's only way to the web (SIDEKICK_PYTHON_NETWORK=1): the guard.
                    proxy_socket=deps.pool.guard.sandbox_socket if deps.pool.guard is not None else None,
                )
            )
        return self._runner

    async def _mcp_tools(self) -> list[BaseTool]:
        assert self._deps.mcp is not None
        if self._mcp is None:
            self._mcp = self._deps.mcp.session(self.id, self.workspace)
        return await self._mcp.tools()

    @property
    def thread_id(self) -> str | None:
        """The conversation this session is running a turn of, if any."""
        return self._runner.thread_id if self._runner is not None else None

    async def cancel(self) -> bool:
        """Stop the run in progress, waiting for it to wind down; whether there was one."""
        return self._runner is not None and await self._runner.cancel()

    async def release(self, *, keep_state: bool = True) -> tuple[int, int]:
        """Stop the run in progress and close the browser context (its state saved for the
        conversation first, unless ``keep_state`` is False); the session stays usable.

        Returns (contexts closed, runs stopped).
        """
        stopped = 1 if await self.cancel() else 0
        async with self._browser_lock:
            browser, self._browser = self._browser, None
            keeper = self._take_keeper()
        await _stopped(keeper)
        if browser is not None and keep_state:
            await self._save(browser)
        if self._runner is not None:
            self._runner.forget_screen()
        if self._mcp is not None:
            # Its servers end now (whole process groups); the tools start them afresh on next use.
            await self._mcp.suspend()
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
        if self._runner is not None:
            await self._runner.aclose()
        if self._mcp is not None:
            await self._mcp.aclose()


class SessionRegistry:
    """Live sessions by id, with the watchdog and idle sweeper. Runs on the loop thread."""

    def __init__(
        self,
        deps: SessionDeps,
        *,
        is_active: Callable[[str], bool] | None = None,
        sweep_interval: float | None = None,
    ) -> None:
        self._deps = deps
        idle_seconds = deps.settings.idle_minutes * 60
        grace_seconds = deps.settings.session_grace_seconds
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
            session = self._sessions[session_id] = Session(session_id, self._deps)
            self._ensure_watchdog()
        return session

    async def claim(self, session_id: str, user: str) -> Session:
        """The session for this tab, working for ``user``; a tab signed in as someone else since
        its session began gets a new one (the old one is ended first)."""
        session = self._sessions.get(session_id)
        if session is not None and session.user != user:
            await self.end(session_id)
            session = None
        if session is None:
            if self._closed:
                raise SessionClosedError("Sidekick is shutting down.")
            session = self._sessions[session_id] = Session(session_id, self._deps, user)
            self._ensure_watchdog()
        return session

    def find(self, session_id: str) -> Session | None:
        """The session if it exists (never creates one)."""
        return self._sessions.get(session_id)

    async def cancel_thread(self, thread_id: str) -> int:
        """Stop every run on ``thread_id`` and wait for each to wind down; how many were stopped."""
        running = [s for s in self._sessions.values() if s.thread_id == thread_id]
        return sum([await s.cancel() for s in running])

    async def reset(self, session_id: str) -> Freed:
        """Free the session's context and runs and forget its browser state, wait for Chromium to
        let go, report what was freed."""
        session = self._sessions.get(session_id)
        if session is None:
            return Freed(0, 0, 0.0)
        before = await asyncio.to_thread(browser_processes)
        contexts, stopped = await session.release(keep_state=False)
        await session.forget_state()
        gone = (await _settled(before)).gone_since(before) if contexts else ProcessReport(())
        return Freed(contexts=contexts, processes=gone.processes, megabytes=gone.total_mb, runs_cancelled=stopped)

    async def delete_conversation(self, thread_id: str) -> None:
        """Stop every run on the conversation and close its browsers (nothing saved), then delete it
        from the store (browser states too) and its workspace folder."""
        for session in [s for s in self._sessions.values() if s.thread == thread_id or s.thread_id == thread_id]:
            await session.release(keep_state=False)
        await self._deps.store.delete(thread_id)
        await remove_workspaces(self._deps.settings.data_dir, [thread_id])

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
            if session.holds_resources and not session.busy and now - session.last_active >= self.idle_seconds:
                log.info("Session %s idle; closing its browser context and MCP servers.", session.id)
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


async def _go_back(browser: SessionBrowser, url: str) -> None:
    """Open the page the saved state was on, through the web policy; a page that does not load
    leaves the session on a blank page, usable."""
    try:
        await browser.goto(url, timeout=RESTORE_SECONDS)
    except SidekickError as exc:
        log.info("Could not go back to %s after reopening the browser: %s", url, exc)


async def _stopped(task: asyncio.Task[None] | None, timeout: float = 5.0) -> None:
    if task is not None:
        task.cancel()
        await asyncio.wait([task], timeout=timeout)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "_"
