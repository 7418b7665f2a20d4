"""The facade the dashboard and the CLI talk to: one :class:`Sidekick` per process.

It owns the loop thread and, on it, the conversation store (SQLite checkpointer), the chat models,
the browser pool (with the web policy's guard), the MCP servers and the session registry: acquired in
that order under an ``AsyncExitStack`` and released in reverse. Its methods are synchronous and bounded: they submit
coroutines to the loop thread and wait with a timeout, so a script thread can never hang on a dead loop.
:func:`get_sidekick` returns the process-wide instance and makes sure it is closed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from sidekick import export
from sidekick.browser.context import SessionBrowser
from sidekick.browser.endpoints import EndpointStatus
from sidekick.browser.pool import BrowserPool
from sidekick.browser.screencast import Frame, LiveViews
from sidekick.config import Settings
from sidekick.errors import ConfigError, RuntimeStoppedError, SidekickError
from sidekick.events import Screenshot
from sidekick.mcp import (
    McpConfig,
    McpHub,
    McpProcessReport,
    ServerStatus,
    kill_mcp_processes,
    load_config,
    mcp_processes,
)
from sidekick.models import Models, model_configured
from sidekick.procs import ProcessReport, browser_processes, self_memory_bytes
from sidekick.runs import MAX_CRITERIA_CHARS, MAX_MESSAGE_CHARS, RunHandle
from sidekick.runtime import LoopThread
from sidekick.sessions import Freed, SessionDeps, SessionRegistry, remove_workspaces
from sidekick.store import BaseStore, Conversation, RecordedRun, open_store, turn_of
from sidekick.tools.base import Availability
from sidekick.tools.registry import availability
from sidekick.web.guard import Guard

__all__ = [
    "MAX_CRITERIA_CHARS",
    "MAX_MESSAGE_CHARS",
    "ResourceReport",
    "Sidekick",
    "close_sidekick",
    "current_sidekick",
    "get_sidekick",
    "new_thread_id",
    "valid_thread_id",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

PROCESS_CACHE_SECONDS = 2.0
NOT_FOUND = "That conversation was not found; start a new one."
THREAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_thread_id() -> str:
    return uuid.uuid4().hex[:16]


def valid_thread_id(text: str | None) -> bool:
    return bool(text) and THREAD_ID.fullmatch(text or "") is not None


@dataclass(frozen=True)
class ResourceReport:
    """What the resources panel shows."""

    sessions: int
    sessions_with_browser: int
    contexts: int
    processes: ProcessReport
    mcp: McpProcessReport
    server_mb: float
    launches: int
    crashes: int
    live_views: int = 0
    """Sessions whose browser page is being cast to a watching tab now."""
    endpoints: tuple[EndpointStatus, ...] = ()
    """Each browser server (``SIDEKICK_BROWSER_ENDPOINTS``): connected, and our contexts there."""


class Sidekick:
    """Process-wide owner of every async resource. States: new → running → closed (final)."""

    def __init__(self, settings: Settings, *, is_active: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self._is_active = is_active
        self._runtime = LoopThread()
        self._stack = contextlib.AsyncExitStack()
        self.pool: BrowserPool | None = None
        self.registry: SessionRegistry | None = None
        self.store: BaseStore | None = None
        self.models: Models | None = None
        self.mcp: McpHub | None = None
        self.live: LiveViews | None = None
        """The live views of sessions' browsers, for the tabs that watch them."""
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This server among replicas sharing one database: the owner of its conversation leases."""
        self.mcp_problem: str | None = None
        """Why the MCP servers file was not used, when it could not be read."""
        self._closed = False
        self._lock = threading.Lock()
        self._process_cache: tuple[float, ProcessReport, McpProcessReport] | None = None

    @property
    def runtime(self) -> LoopThread:
        """The loop thread (read-only: the fault report checks it survives a failed run)."""
        return self._runtime

    @property
    def model_ready(self) -> bool:
        """A model is configured, so the agent can run (the browser box works either way)."""
        return model_configured(self.settings)

    def start(self, *, warm: bool = True, timeout: float = 60.0) -> Sidekick:
        self._runtime.start()
        try:
            self._runtime.run(self._astart(warm), timeout=timeout)
        except BaseException:
            self._runtime.stop()
            raise
        return self

    async def _astart(self, warm: bool) -> None:
        async with contextlib.AsyncExitStack() as stack:
            store = await open_store(self.settings)
            stack.push_async_callback(store.aclose)
            # Last out before the store closes: this server's claims on running conversations.
            stack.push_async_callback(store.release_all, self.replica)
            if self.settings.keep_days:
                pruned = await store.prune(self.settings.keep_days)
                await remove_workspaces(self.settings.data_dir, pruned)
                if pruned:
                    log.info("Deleted %d conversations older than %d days.", len(pruned), self.settings.keep_days)
            models = Models(self.settings) if model_configured(self.settings) else None
            if models is not None:
                stack.push_async_callback(models.aclose)
            guard = Guard(self.settings.url_policy(), listen=self.settings.guard_listen)
            pool = BrowserPool(self.settings, guard=guard)  # the pool owns the guard and closes it
            stack.push_async_callback(pool.aclose)
            await guard.start()  # now, so MCP servers can be given its address
            hub = McpHub(self._mcp_config(), self.settings, proxy_url=guard.proxy_url)
            stack.push_async_callback(hub.aclose)
            deps = SessionDeps(
                settings=self.settings, pool=pool, store=store, models=models, mcp=hub, replica=self.replica
            )
            registry = SessionRegistry(deps, is_active=self._is_active)
            stack.push_async_callback(registry.aclose)

            async def browser_of(session_id: str) -> SessionBrowser | None:
                session = registry.find(session_id)
                return await session.browser() if session is not None and session.has_browser else None

            live = LiveViews(browser_of, self._runtime.submit, fps=self.settings.live_fps)
            stack.push_async_callback(live.aclose)  # before the sessions and their browsers close
            self.live = live
            self.store, self.models, self.pool, self.registry, self.mcp = store, models, pool, registry, hub
            self._stack = stack.pop_all()
        if warm:
            # Launch in the background: the page renders at once and the first session finds a spare.
            pool.schedule_spare()
            hub.schedule_listing()  # the sidebar can show each MCP server's tools before first use

    def _mcp_config(self) -> McpConfig:
        """The MCP servers file; a broken one is reported and Sidekick runs without those tools."""
        try:
            return load_config(self.settings)
        except ConfigError as exc:
            self.mcp_problem = str(exc)
            log.warning("%s", exc)
            return McpConfig()

    def _registry(self) -> SessionRegistry:
        if self._closed or self.registry is None:
            raise RuntimeStoppedError("Sidekick is shut down; restart the app to continue.")
        return self.registry

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return self._runtime.run(coro, timeout)

    # -- browsing ------------------------------------------------------------------------------
    def open_url(self, session_id: str, url: str, timeout: float = 45.0) -> Screenshot:
        registry = self._registry()

        async def go() -> Screenshot:
            return await registry.get(session_id).open_url(url)

        return self._call(go(), timeout)

    def reset(self, session_id: str, timeout: float = 30.0) -> Freed:
        registry, live = self._registry(), self.live

        async def go() -> Freed:
            if live is not None:
                await live.stop(session_id)
            return await registry.reset(session_id)

        freed = self._call(go(), timeout)
        self._process_cache = None
        return freed

    def _processes(self) -> tuple[ProcessReport, McpProcessReport]:
        """Browser and MCP server processes with their memory, at most PROCESS_CACHE_SECONDS old:
        reading PSS for every Chromium process costs about 100 ms, and every rerun of every tab shows it."""
        cached = self._process_cache
        now = time.monotonic()
        if cached is None or now - cached[0] > PROCESS_CACHE_SECONDS:
            cached = self._process_cache = (now, browser_processes(), mcp_processes())
        return cached[1], cached[2]

    # -- who owns what ---------------------------------------------------------------------------
    @property
    def local_user(self) -> str:
        return self.settings.local_user

    def _owners(self, user: str | None) -> tuple[str, ...]:
        """The owner names a user's conversations carry (conversations from before owners existed
        belong to the local user)."""
        who = user or self.local_user
        return (who, "") if who == self.local_user else (who,)

    async def _owned(self, store: BaseStore, thread_id: str, user: str | None) -> bool:
        return await store.owner_of(thread_id) in self._owners(user)

    def attach(
        self, session_id: str, user: str | None = None, timeout: float = 30.0, *, thread_id: str | None = None
    ) -> None:
        """Register a tab as soon as it renders (it shows in the session count; its browser opens
        later), on the conversation ``thread_id`` it shows: the browser and workspace are that
        conversation's (New chat gets a clean browser). A tab signed in as someone else now gets a
        new session."""
        registry, who = self._registry(), user or self.local_user

        async def go() -> None:
            session = await registry.claim(session_id, who)
            if thread_id is not None and valid_thread_id(thread_id):
                await session.open_conversation(thread_id)

        self._call(go(), timeout)

    def end_session(self, session_id: str) -> None:
        """Free a session without waiting (safe on Streamlit's server thread)."""
        if self._closed or self.registry is None:
            return
        registry, live = self.registry, self.live

        async def go() -> None:
            if live is not None:
                await live.stop(session_id)
            await registry.end(session_id)

        with contextlib.suppress(RuntimeStoppedError):  # the loop may stop between check and submit
            self._runtime.submit(go())

    def live_frame(self, session_id: str) -> Frame | None:
        """The newest frame of the session's browser page, at once, for a tab watching it.

        Asking is watching: the session's screencast starts on the first ask (the frame comes on a
        later one; that ask returns None) and stops a few seconds after the last ask and the last
        stream (``screencast.LEASE_SECONDS``)."""
        live = self.live
        if self._closed or live is None:
            return None
        return live.frame(session_id)

    def live_ticket(self, session_id: str) -> str | None:
        """The name under which the tab streams its session's live view (:meth:`live_frames`); the same
        until Reset or the tab's end. None once closed."""
        live = self.live
        if self._closed or live is None:
            return None
        return live.ticket(session_id)

    def live_release(self, session_id: str) -> None:
        """The tab no longer shows its live image: end its streams (the ticket is revoked; the next
        :meth:`live_ticket` is a new one)."""
        live = self.live
        if live is not None:
            live.release(session_id)

    def live_frames(self, ticket: str) -> AsyncIterator[Frame] | None:
        """Each new frame of the ticket's live view, for the web server's event loop (any loop); None
        for a ticket that is unknown or revoked. Iterating is watching (see :meth:`live_frame`)."""
        live = self.live
        if self._closed or live is None:
            return None
        return live.frames(ticket)

    # -- the agent -----------------------------------------------------------------------------
    def start_run(
        self,
        session_id: str,
        message: str,
        criteria: str,
        thread_id: str,
        *,
        user: str | None = None,
        timeout: float = 15.0,
    ) -> RunHandle:
        """Start a turn; its events arrive on the returned handle. Raises SidekickError on bad input,
        and for a conversation that belongs to someone else (as if it did not exist)."""
        registry, store, who = self._registry(), self._store(), user or self.local_user
        if not valid_thread_id(thread_id):
            raise SidekickError("That conversation id is not valid; start a new conversation.")

        async def go() -> RunHandle:
            owner = await store.owner_of(thread_id)
            if owner is not None and owner not in self._owners(who):
                raise SidekickError(NOT_FOUND)
            session = await registry.claim(session_id, who)
            await session.open_conversation(thread_id)
            return await session.runner.start(message, criteria, thread_id)

        return self._call(go(), timeout)

    def answer_approval(
        self, session_id: str, thread_id: str, approved: bool, *, user: str | None = None, timeout: float = 15.0
    ) -> RunHandle:
        """Resume a run paused for approval of a side-effecting tool call."""
        registry, store, who = self._registry(), self._store(), user or self.local_user
        if not valid_thread_id(thread_id):
            raise SidekickError("That conversation id is not valid; start a new conversation.")

        async def go() -> RunHandle:
            if not await self._owned(store, thread_id, who):
                raise SidekickError(NOT_FOUND)
            session = await registry.claim(session_id, who)
            await session.open_conversation(thread_id)
            return await session.runner.resume(thread_id, approved)

        return self._call(go(), timeout)

    def cancel_run(self, session_id: str, timeout: float = 10.0) -> bool:
        registry = self._registry()

        async def go() -> bool:
            session = registry.find(session_id)
            return session is not None and await session.cancel()

        return self._call(go(), timeout)

    def history(self, thread_id: str, *, user: str | None = None, timeout: float = 15.0) -> list[tuple[str, str]]:
        """A conversation's text, read from the store (works without a model); nothing for a
        conversation that is not the user's."""
        store = self._store()
        if not valid_thread_id(thread_id):
            return []

        async def go() -> list[tuple[str, str]]:
            return await store.history(thread_id) if await self._owned(store, thread_id, user) else []

        return self._call(go(), timeout)

    def record(self, thread_id: str, *, user: str | None = None, timeout: float = 30.0) -> list[RecordedRun]:
        """Every run of a conversation as recorded: steps, checks, screenshots, answers."""
        store = self._store()
        if not valid_thread_id(thread_id):
            return []

        async def go() -> list[RecordedRun]:
            return await store.record(thread_id) if await self._owned(store, thread_id, user) else []

        return self._call(go(), timeout)

    def export(
        self,
        thread_id: str,
        *,
        fmt: str = "html",
        run_id: str | None = None,
        user: str | None = None,
        timeout: float = 30.0,
    ) -> str:
        """The conversation (or one run of it, and the approval runs that continue it) as one HTML
        page or JSON document. Raises SidekickError for an unknown conversation (or someone else's)."""
        store = self._store()
        if not valid_thread_id(thread_id) or not self.conversation_exists(thread_id, user=user):
            raise SidekickError(f"There is no conversation {thread_id[:64]!r}.")

        async def go() -> tuple[str, list[RecordedRun]]:
            listed = await store.list(10_000, owners=self._owners(user))
            title = next((c.title for c in listed if c.thread_id == thread_id), thread_id)
            return title, await store.record(thread_id)

        title, runs = self._call(go(), timeout)
        if run_id is not None:
            runs = turn_of(runs, run_id)
        return export.to_json_text(thread_id, title, runs) if fmt == "json" else export.to_html(thread_id, title, runs)

    def conversations(self, limit: int = 50, *, user: str | None = None, timeout: float = 10.0) -> list[Conversation]:
        """The user's conversations, newest first (only theirs)."""
        return self._call(self._store().list(limit, owners=self._owners(user)), timeout)

    def conversation_exists(self, thread_id: str, *, user: str | None = None, timeout: float = 10.0) -> bool:
        """Whether the conversation exists and is the user's: someone else's answers no, like a missing one."""
        store = self._store()
        return valid_thread_id(thread_id) and self._call(self._owned(store, thread_id, user), timeout)

    def delete_conversation(self, thread_id: str, *, user: str | None = None, timeout: float = 15.0) -> None:
        """Stop any run on the conversation (waiting for it, so it writes nothing more), then delete
        it with its browser state and workspace files; someone else's conversation is left alone, as
        if it did not exist."""
        store, registry = self._store(), self._registry()
        if not valid_thread_id(thread_id):
            return

        async def go() -> None:
            if not await self._owned(store, thread_id, user):
                return
            await registry.delete_conversation(thread_id)

        self._call(go(), timeout)

    def _store(self) -> BaseStore:
        self._registry()  # refuses once shut down
        assert self.store is not None
        return self.store

    def tools(
        self, session_id: str | None = None, *, discover: bool = False, timeout: float = 60.0
    ) -> list[Availability]:
        """Every tool and why it is off; then each MCP server, its state and its tools (as this
        session sees them). ``discover`` lists servers not listed yet first (starting them)."""
        rows = availability(self.settings)
        if self.mcp_problem:
            rows.append(("MCP servers", False, self.mcp_problem))
        hub = self.mcp
        if hub is None:
            return rows

        async def status() -> list[ServerStatus]:
            if discover:
                await hub.list_all()
            return hub.status(session_id)

        for server in self._call(status(), timeout):
            names = ", ".join(f"`{t}`" for t in server.tools) or "no tools listed yet"
            on = server.state != "failed"
            detail = f"MCP {server.scope} server, {server.state}: {names}"
            rows.append((server.name, on, detail if on else f"{detail}. {server.last_error or ''}".strip()))
        return rows

    def resources(self, timeout: float = 10.0) -> ResourceReport:
        registry = self._registry()
        pool = self.pool
        assert pool is not None

        live = self.live

        async def gather() -> tuple[int, int, int, int, tuple[EndpointStatus, ...]]:
            with_browser = sum(1 for s in registry.sessions() if s.has_browser)
            views = len(live) if live is not None else 0
            return len(registry), with_browser, pool.open_contexts, views, pool.endpoint_status()

        sessions, with_browser, contexts, live_views, endpoints = self._call(gather(), timeout)
        browsers, servers = self._processes()
        return ResourceReport(
            sessions=sessions,
            sessions_with_browser=with_browser,
            contexts=contexts,
            processes=browsers,
            mcp=servers,
            server_mb=self_memory_bytes() / 2**20,
            launches=pool.launches,
            crashes=pool.crashes,
            live_views=live_views,
            endpoints=endpoints,
        )

    # -- shutdown --------------------------------------------------------------------------------
    def close(self, timeout: float = 20.0) -> None:
        """Close sessions, the pool, the models and the store, then stop the loop. Idempotent, bounded."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._runtime.is_running:
            try:
                self._runtime.run(self._stack.aclose(), timeout)
            except Exception:
                log.exception("Sidekick did not shut down cleanly")
        self._runtime.stop(timeout=5)
        # Whatever MCP server a failed shutdown left behind: its process group is ours, by record.
        kill_mcp_processes()


_instance: Sidekick | None = None
_instance_lock = threading.Lock()


def current_sidekick() -> Sidekick | None:
    """The process-wide Sidekick if one was started (never starts one)."""
    return _instance


def close_sidekick() -> None:
    """Close the process-wide Sidekick now (tests, or an embedding app that restarts it)."""
    global _instance
    with _instance_lock:
        instance, _instance = _instance, None
    if instance is not None:
        atexit.unregister(instance.close)
        instance.close()


def get_sidekick(settings: Settings | None = None, *, is_active: Callable[[str], bool] | None = None) -> Sidekick:
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


