"""One connection to one MCP server, with a state, an owner task, and restarts with backoff.

The MCP SDK's stdio and HTTP clients are anyio task groups: each must be entered and exited in the
same task, or anyio fails the exit ("exit cancel scope in a different task"). So every run of a
server has one **owner task** that enters the transport and the ``ClientSession``, lists the tools,
hands the session out, then waits until it is told to stop or the process exits, and exits both in
that same task. Calls go straight to the session from the callers' tasks (``ClientSession`` matches
answers to requests by id), each bounded by the server's timeout, startup included.

States: ``new`` (never started), ``starting``, ``ready``, ``failed`` (it exited, hung, or could not
start; the next use starts it again once the backoff has passed), ``closed`` (for good). A call that
hangs past its timeout stops the server, because a server stuck on one request is rarely fine for
the next. Backoff doubles from 0.5 s to 30 s and is cleared by a successful call.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED, CallToolResult

from sidekick.errors import ToolError
from sidekick.mcp.config import ServerConfig
from sidekick.mcp.procs import GRACE_SECONDS, kill_mcp_processes, tree
from sidekick.mcp.transport import ProcessInfo, stdio_transport
from sidekick.tools.base import untrusted

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# The owner's exit: ClientSession close plus end_group (about 3 grace periods), with room to spare.
_STOP_SECONDS = 4 * GRACE_SECONDS + 2
# What a server may see of our environment: enough to find and run its interpreter, nothing more
# (no model or Sidekick keys, no proxies unless its own "env" names them).
BASIC_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ")


class McpServerError(ToolError):
    """An MCP server could not start, crashed, hung, or is closed; ``str()`` is a plain message."""


class ServerState(enum.StrEnum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the server lists it (converted by langchain-mcp-adapters)."""

    name: str
    description: str
    schema: dict[str, Any]
    read_only: bool


@dataclass
class _Run:
    """One start of the server: its owner task and what it learned."""

    ready: asyncio.Future[ClientSession]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    info: ProcessInfo = field(default_factory=ProcessInfo)
    task: asyncio.Task[None] | None = None


PROXY_PLACEHOLDER = "${SIDEKICK_PROXY}"


def server_env(config: ServerConfig, proxy_url: str | None = None) -> dict[str, str]:
    """Basics from our environment, then the server's own ``env`` (``${SIDEKICK_PROXY}`` expanded)."""
    env = {key: os.environ[key] for key in BASIC_ENV if key in os.environ}
    for key, value in config.env.items():
        if PROXY_PLACEHOLDER in value:
            if proxy_url is None:
                raise McpServerError(
                    f"MCP server {config.name!r}: env {key} asks for {PROXY_PLACEHOLDER}, but the web "
                    "policy's proxy is not running."
                )
            value = value.replace(PROXY_PLACEHOLDER, proxy_url)
        env[key] = value
    return env


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpError | McpServerError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"command not found ({exc.filename or exc})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return "stopped before it was ready"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class McpServer:
    """One server for one owner (a session, or the process). Lives on the loop thread."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        cwd: Path,
        timeout: float,
        label: str | None = None,
        proxy_url: str | None = None,
    ) -> None:
        self.config = config
        self.proxy_url = proxy_url
        self.cwd = cwd
        self.timeout = timeout
        self.label = label or config.name
        self._state = ServerState.NEW
        self._run: _Run | None = None
        self._session: ClientSession | None = None
        self._start_lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self.tools: tuple[ToolSpec, ...] = ()
        self.last_error: str | None = None
        self.starts = 0

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def pid(self) -> int | None:
        """The process we started (the group leader), while it runs."""
        run = self._run
        return run.info.pid if run is not None and not run.info.exited.is_set() else None

    def pids(self) -> list[int]:
        """The leader and its descendants now (for tests and the churn benchmark)."""
        pid = self.pid
        return [p.pid for p in tree(pid)] if pid is not None else []

    # -- use ---------------------------------------------------------------------------------------
    async def start(self) -> tuple[ToolSpec, ...]:
        """Start (if not running) and return the tools; bounded by the server's timeout."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._ensure_started(deadline)
        except TimeoutError:
            await self._fail(f"did not start within {self.timeout:g} s")
            raise McpServerError(f"MCP server {self.config.name!r} did not start within {self.timeout:g} s.") from None
        return self.tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call ``tool``; every failure is a :class:`McpServerError` (or ToolError) with a plain message."""
        name = self.config.name
        deadline = asyncio.get_running_loop().time() + self.timeout
        started = False
        try:
            async with asyncio.timeout_at(deadline):
                session = await self._ensure_started(deadline)
                started = True
                result = await session.call_tool(tool, arguments)
        except TimeoutError:
            what = f"{tool} did not finish" if started else "the server did not start"
            await self._fail(f"{what} within {self.timeout:g} s")
            raise McpServerError(
                f"MCP server {name!r}: {what} within {self.timeout:g} s; the server was stopped "
                "and starts again on its next use."
            ) from None
        except McpError as exc:
            if exc.error.code != CONNECTION_CLOSED:  # the server answered with an error: it is fine
                said = untrusted(exc.error.message, f"MCP server {name}", 2000)
                raise ToolError(f"MCP server {name!r} refused {tool}: {said}") from None
            await self._lost()
            raise McpServerError(
                f"MCP server {name!r} stopped during {tool} ({self._reason()}); it starts again on its next use."
            ) from None
        except ToolError:
            raise
        except Exception as exc:  # a transport failure (HTTP refused, a broken pipe): start afresh next time
            await self._fail(_describe(exc))
            raise McpServerError(
                f"MCP server {name!r} failed during {tool} ({_describe(exc)}); it starts again on its next use."
            ) from None
        self._failures = 0
        return result

    async def stop(self) -> None:
        """Close the running process (idle, failure); a later use starts it again. Bounded."""
        run = self._run
        if run is None or run.task is None:
            return
        run.stopping = True
        if self._state is ServerState.STARTING:
            run.task.cancel()  # initialize() is not watching the wake event
        run.wake.set()
        done, _ = await asyncio.wait({run.task}, timeout=_STOP_SECONDS)
        if not done:
            log.warning("MCP server %s did not stop in time; cancelling its owner", self.label)
            run.task.cancel()
            done, _ = await asyncio.wait({run.task}, timeout=_STOP_SECONDS)
        if not done:  # the owner is wedged: do not let its processes outlive us
            kill_mcp_processes()
        if self._run is run:
            self._run = None
            self._session = None
            if self._state in (ServerState.READY, ServerState.STARTING):
                self._state = ServerState.NEW

    async def aclose(self) -> None:
        """Close for good; idempotent. Calls after this fail with a plain error."""
        if self._state is ServerState.CLOSED:
            return
        self._state = ServerState.CLOSED
        await self.stop()

    # -- inside --------------------------------------------------------------------------------------
    def _reason(self) -> str:
        return (self.last_error or "it exited").split(": ", 1)[0]

    async def _lost(self) -> None:
        """The connection closed under a call: let the owner record the exit, or fail the run ourselves."""
        run = self._run
        if run is None or run.task is None:
            return
        if self.config.transport == "stdio":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GRACE_SECONDS):
                    await run.info.exited.wait()
        if run.info.exited.is_set():
            await asyncio.wait({run.task}, timeout=_STOP_SECONDS)
        else:  # alive but no longer talking to us (closed stdout, dropped HTTP session)
            await self._fail("closed the connection")

    async def _fail(self, reason: str) -> None:
        self._record_failure(reason)
        await self.stop()

    def _record_failure(self, reason: str) -> None:
        if self._state is ServerState.CLOSED:
            return
        self._failures += 1
        self._retry_at = time.monotonic() + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
        self.last_error = reason
        self._state = ServerState.FAILED
        log.info("MCP server %s failed: %s", self.label, reason)

    async def _ensure_started(self, deadline: float) -> ClientSession:
        async with self._start_lock:
            if self._state is ServerState.CLOSED:
                raise McpServerError(f"MCP server {self.config.name!r} is closed (the session was reset or ended).")
            if self._state is ServerState.READY and self._session is not None:
                return self._session
            if self._run is not None:  # a failed run still ending: let it finish first
                await self.stop()
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                if asyncio.get_running_loop().time() + wait >= deadline:
                    raise McpServerError(
                        f"MCP server {self.config.name!r} failed recently ({self._reason()}); "
                        f"it can be started again in {wait:.0f} s."
                    )
                await asyncio.sleep(wait)
            run = _Run(asyncio.get_running_loop().create_future())
            self._run = run
            self._state = ServerState.STARTING
            self.starts += 1
            run.task = asyncio.create_task(self._own(run), name=f"mcp-owner-{self.label}")
            try:
                session = await asyncio.shield(run.ready)
            except McpServerError:
                await self.stop()
                if self._state is not ServerState.CLOSED:
                    self._state = ServerState.FAILED
                raise
            except BaseException:  # our caller's timeout or cancellation: do not leave it starting
                await self.stop()
                raise
            if self._state is ServerState.CLOSED or self._run is not run:  # closed while it started
                raise McpServerError(f"MCP server {self.config.name!r} is closed (the session was reset or ended).")
            self._session = session
            self._state = ServerState.READY
            return session

    async def _own(self, run: _Run) -> None:
        """Enter transport and session, serve until told to stop or the process exits, exit both here."""
        try:
            async with AsyncExitStack() as stack:
                if self.config.command is not None:
                    self.cwd.mkdir(parents=True, exist_ok=True)  # a session's workspace may not exist yet
                    read, write = await stack.enter_async_context(
                        stdio_transport(
                            [self.config.command, *self.config.args],
                            env=server_env(self.config, self.proxy_url),
                            cwd=self.cwd,
                            label=self.label,
                            info=run.info,
                        )
                    )
                else:
                    assert self.config.url is not None
                    client = await stack.enter_async_context(create_mcp_http_client(headers=dict(self.config.headers)))
                    read, write, _ = await stack.enter_async_context(
                        streamable_http_client(self.config.url, http_client=client)
                    )
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = tuple(_spec(t) for t in await load_mcp_tools(session))
                if not run.ready.done():
                    run.ready.set_result(session)
                watcher = asyncio.ensure_future(run.info.exited.wait())
                watcher.add_done_callback(lambda _: run.wake.set())
                try:
                    await run.wake.wait()
                finally:
                    watcher.cancel()
                if not run.stopping:
                    self._session = None
                    self._record_failure(self._exit_reason(run))
        except BaseException as exc:
            if isinstance(exc, McpServerError) and not run.ready.done():
                run.ready.set_exception(exc)
            reason = self._exit_reason(run) if run.info.exited.is_set() else _describe(exc)
            if not run.ready.done():
                run.ready.set_exception(
                    McpServerError(f"MCP server {self.config.name!r} could not start ({reason.split(': ', 1)[0]}).")
                )
                if not run.stopping:
                    self._record_failure(reason)
            elif not run.stopping:
                self._record_failure(reason)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if run.ready.done() and not run.ready.cancelled():
                run.ready.exception()  # retrieved: nobody else may be waiting any more

    def _exit_reason(self, run: _Run) -> str:
        code = run.info.returncode
        reason = f"exited with code {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)}"
        tail = run.info.stderr_tail()
        return f"{reason}: {tail}" if tail else reason


def _spec(tool: Any) -> ToolSpec:
    schema = tool.args_schema if isinstance(tool.args_schema, dict) else {"type": "object", "properties": {}}
    return ToolSpec(
        name=tool.name,
        description=tool.description or "",
        schema=schema,
        read_only=(tool.metadata or {}).get("readOnlyHint") is True,
    )
