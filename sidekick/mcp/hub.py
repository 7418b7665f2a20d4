"""The MCP servers of one Sidekick process: who owns which server, and what the sidebar shows.

:class:`McpHub` owns the process-scoped servers and the tool catalog; :class:`SessionMcp` owns one
session's servers. Both live on the loop thread, have an idempotent, bounded ``aclose()``, and are
async context managers.

The catalog (each server's tool names and schemas) is listed once per process: a process-scoped
server is started for it and keeps running; a session-scoped server is started once in a scratch
folder, listed and closed. So building a session's tools never starts that session's servers;
its first *call* does, in its workspace. A server whose listing failed contributes no tools to the
sessions built meanwhile (the sidebar says why) and is listed again after a pause.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from langchain_core.tools import BaseTool
from mcp.types import CallToolResult

from sidekick.config import Settings
from sidekick.mcp.config import McpConfig, Scope, ServerConfig
from sidekick.mcp.server import McpServer, McpServerError, ServerState, ToolSpec
from sidekick.mcp.tools import build_tools, tool_name

# A server whose listing failed is listed again at most this often (each session asks).
CATALOG_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ServerStatus:
    """One server for the sidebar's Tools list. ``state`` is one of :class:`ServerState`'s values."""

    name: str
    scope: Scope
    transport: str
    state: str
    tools: tuple[str, ...]
    last_error: str | None
    running: int  # processes of this server now running (one per session for session scope)


async def _close_all(closers: list[Any]) -> None:
    # Each close is bounded inside (McpServer.stop); gather so one slow server does not delay the rest.
    await asyncio.gather(*(c.aclose() for c in closers), return_exceptions=True)


class _Owner:
    """An owner of servers: ``async with`` it and the block's end closes it (``aclose()``,
    idempotent), however the block ends."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError


class McpHub(_Owner):
    def __init__(self, config: McpConfig, settings: Settings, *, proxy_url: str | None = None) -> None:
        """``proxy_url`` (the web policy's proxy, e.g. ``socks5h://127.0.0.1:PORT``) fills in
        ``${SIDEKICK_PROXY}`` in a server's ``env``."""
        self.config = config
        self.settings = settings
        self.proxy_url = proxy_url
        self._process: dict[str, McpServer] = {
            s.name: self.new_server(s, settings.data_dir, f"{s.name}@process")
            for s in config.servers
            if s.scope == "process"
        }
        self._catalog: dict[str, tuple[ToolSpec, ...]] = {}
        self._catalog_error: dict[str, tuple[str, float]] = {}
        self._catalog_locks = {s.name: asyncio.Lock() for s in config.servers}
        self._sessions: dict[str, SessionMcp] = {}
        self._scratch: Path | None = None
        self._listing: asyncio.Task[None] | None = None
        self._closed = False

    def session(self, session_id: str, workspace: Path) -> SessionMcp:
        """This session's MCP servers (the open one if there is one); starts nothing."""
        if self._closed:
            raise McpServerError("MCP servers are shut down.")
        existing = self._sessions.get(session_id)
        if existing is not None and not existing.closed:
            return existing
        created = SessionMcp(self, session_id, workspace)
        self._sessions[session_id] = created
        return created

    def status(self, session_id: str | None = None) -> list[ServerStatus]:
        """Every configured server. With ``session_id``, session-scoped servers show that session's run.

        Reads only; safe to call from any thread.
        """
        sessions = list(self._sessions.values())
        mine = self._sessions.get(session_id) if session_id is not None else None
        out = []
        for cfg in self.config.servers:
            failed = self._catalog_error.get(cfg.name)
            error = failed[0] if failed else None
            if cfg.scope == "process":
                server: McpServer | None = self._process[cfg.name]
                running = [server] if server is not None and server.pid is not None else []
            else:
                server = mine._servers.get(cfg.name) if mine is not None else None
                running = [s for m in sessions for s in list(m._servers.values()) if s.config is cfg and s.pid]
            if server is not None and server.state is not ServerState.NEW:
                state, error = server.state.value, server.last_error or error
            else:
                state = ServerState.FAILED.value if failed else ServerState.NEW.value
            names = tuple(tool_name(cfg.name, t.name) for t in self._catalog.get(cfg.name, ()))
            out.append(ServerStatus(cfg.name, cfg.scope, cfg.transport, state, names, error, len(running)))
        return out

    async def catalog(self, cfg: ServerConfig) -> tuple[ToolSpec, ...]:
        """The server's tools, listed once per process; raises McpServerError when it cannot be listed."""
        if cfg.name in self._catalog:
            return self._catalog[cfg.name]
        async with self._catalog_locks[cfg.name]:
            if cfg.name in self._catalog:
                return self._catalog[cfg.name]
            failed = self._catalog_error.get(cfg.name)
            if failed and time.monotonic() < failed[1]:
                raise McpServerError(f"MCP server {cfg.name!r}: {failed[0]}")
            try:
                if cfg.scope == "process":
                    specs = await self._process[cfg.name].start()
                else:
                    probe = self.new_server(cfg, self._scratch_dir(), f"{cfg.name}@catalog")
                    try:
                        specs = await probe.start()
                    finally:
                        await probe.aclose()
            except McpServerError as exc:
                self._catalog_error[cfg.name] = (str(exc), time.monotonic() + CATALOG_RETRY_SECONDS)
                raise
            self._catalog_error.pop(cfg.name, None)
            self._catalog[cfg.name] = specs
            return specs

    async def list_all(self) -> None:
        """List every server's tools now (failures are kept for the status, never raised)."""
        await asyncio.gather(*(self.catalog(c) for c in self.config.servers), return_exceptions=True)

    def schedule_listing(self) -> None:
        """List every server's tools in the background, so the sidebar shows them before first use."""
        if self.config.servers and not self._closed and self._listing is None:
            self._listing = asyncio.get_running_loop().create_task(self.list_all(), name="sidekick-mcp-listing")

    def new_server(self, cfg: ServerConfig, cwd: Path, label: str) -> McpServer:
        timeout = cfg.call_timeout(self.settings)
        return McpServer(cfg, cwd=cwd, timeout=timeout, label=label, proxy_url=self.proxy_url)

    def process_server(self, name: str) -> McpServer:
        return self._process[name]

    def _scratch_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="sidekick-mcp-"))
        return self._scratch

    def _forget(self, session: SessionMcp) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]

    async def aclose(self) -> None:
        """Close every session's servers, then the process-scoped ones; idempotent and bounded."""
        if self._closed:
            return
        self._closed = True
        listing, self._listing = self._listing, None
        if listing is not None and not listing.done():
            listing.cancel()
            await asyncio.wait([listing], timeout=5)
        await _close_all(list(self._sessions.values()))
        await _close_all(list(self._process.values()))
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class SessionMcp(_Owner):
    """One session's MCP servers and tools. Session-scoped servers start on their first call."""

    def __init__(self, hub: McpHub, session_id: str, workspace: Path) -> None:
        self.hub = hub
        self.session_id = session_id
        self.workspace = workspace
        self._servers: dict[str, McpServer] = {}
        self._tools: list[BaseTool] | None = None
        self._tools_lock = asyncio.Lock()
        self.closed = False

    async def tools(self) -> list[BaseTool]:
        """The tools of every server that could be listed; built once for this session."""
        async with self._tools_lock:
            if self._tools is None:
                configs = self.hub.config.servers
                listed = await asyncio.gather(*(self.hub.catalog(c) for c in configs), return_exceptions=True)
                tools: list[BaseTool] = []
                for cfg, specs in zip(configs, listed, strict=True):
                    if isinstance(specs, McpServerError):
                        continue  # the sidebar shows why; the session runs without these tools
                    if isinstance(specs, BaseException):
                        raise specs
                    tools += build_tools(cfg, specs, self._caller(cfg))
                self._tools = tools
            return list(self._tools)

    @property
    def running(self) -> bool:
        """Whether any of this session's servers has a process now."""
        return any(s.pid is not None for s in self._servers.values())

    def server(self, name: str) -> McpServer:
        """The server this session's calls to ``name`` go to (created here; not started)."""
        if self.closed:
            raise McpServerError(f"MCP server {name!r} is closed (the session was reset or ended).")
        cfg = next(c for c in self.hub.config.servers if c.name == name)
        if cfg.scope == "process":
            return self.hub.process_server(name)
        server = self._servers.get(name)
        if server is None:
            server = self.hub.new_server(cfg, self.workspace, f"{name}@{self.session_id}")
            self._servers[name] = server
        return server

    def _caller(self, cfg: ServerConfig) -> Any:
        async def call(tool: str, arguments: dict[str, Any]) -> CallToolResult:
            return await self.server(cfg.name).call(tool, arguments)

        return call

    async def suspend(self) -> None:
        """Idle: end this session's running servers; the tools stay usable and start them again."""
        await asyncio.gather(*(s.stop() for s in list(self._servers.values())), return_exceptions=True)

    async def aclose(self) -> None:
        """Reset, tab close, exit: end this session's servers (whole process groups); idempotent."""
        if self.closed:
            return
        self.closed = True
        self.hub._forget(self)
        await _close_all(list(self._servers.values()))
