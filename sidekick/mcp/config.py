"""The MCP servers file: the ``{"mcpServers": {...}}`` form every MCP host reads, checked once.

A stdio server has ``command`` (and optional ``args``, ``env``); a streamable-HTTP server has
``url`` (and optional ``headers``). Keys of ours, all optional: ``scope`` (``"session"``, the default,
or ``"process"``), ``approve`` (``"annotations"``, the default, ``"always"`` or ``"never"``) and
``timeout`` (seconds per call, default ``SIDEKICK_TOOL_TIMEOUT``). ``type`` is accepted for files
written for other hosts and must agree with the keys given. Anything else is a mistake, and the
:class:`~sidekick.errors.ConfigError` names the file and the key, so a typo never silently drops a
setting such as ``approve``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sidekick.config import Settings
from sidekick.errors import ConfigError

Scope = Literal["session", "process"]
Approve = Literal["always", "never", "annotations"]

# Tool names reach the model as NAME__tool; OpenAI accepts [A-Za-z0-9_-]{1,64}.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_STDIO_KEYS = {"command", "args", "env"}
_HTTP_KEYS = {"url", "headers"}
_OUR_KEYS = {"scope", "approve", "timeout", "type"}
_TYPES = {
    "stdio": "stdio",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamableHttp": "http",
}
_KNOWN = ", ".join(sorted(_STDIO_KEYS | _HTTP_KEYS | _OUR_KEYS))


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """One server as the file describes it. ``command`` is set for stdio, ``url`` for HTTP."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    scope: Scope = "session"
    approve: Approve = "annotations"
    timeout: float | None = None

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    def call_timeout(self, settings: Settings) -> float:
        return self.timeout if self.timeout is not None else settings.tool_timeout_seconds


@dataclass(frozen=True)
class McpConfig:
    """The servers of one file (none when there is no file)."""

    servers: tuple[ServerConfig, ...] = ()
    path: Path | None = None


def config_path(settings: Settings) -> Path | None:
    """``SIDEKICK_MCP_CONFIG`` if set (it must exist), else ``mcp.json`` in the data folder if present."""
    if settings.mcp_config is not None:
        return settings.mcp_config
    default = settings.data_dir / "mcp.json"
    return default if default.is_file() else None


def load_config(settings: Settings) -> McpConfig:
    """Read and check the MCP servers file; an empty config when there is none."""
    path = config_path(settings)
    if path is None:
        return McpConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"MCP servers file {path}: cannot be read ({exc.strerror or exc}).") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> McpConfig:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"MCP servers file {path}: {key}: {problem}")

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"MCP servers file {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    if not isinstance(data, dict):
        raise fail("(top level)", 'must be an object such as {"mcpServers": {...}}.')
    unknown = sorted(set(data) - {"mcpServers"})
    if unknown:
        raise fail(unknown[0], 'unknown key; the file holds only "mcpServers".')
    servers = data.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise fail("mcpServers", "must be an object mapping server names to their settings.")
    return McpConfig(tuple(_server(name, entry, fail) for name, entry in servers.items()), path)


def _server(name: str, entry: Any, fail: Any) -> ServerConfig:
    where = f"mcpServers.{name}"
    if not _NAME.match(name):
        raise fail(where, "a server name may use only letters, digits, '_' and '-' (at most 32).")
    if not isinstance(entry, dict):
        raise fail(where, "must be an object with a command or a url.")
    for key in entry:
        if key not in _STDIO_KEYS | _HTTP_KEYS | _OUR_KEYS:
            raise fail(f"{where}.{key}", f"unknown key (known: {_KNOWN}).")
    stdio = bool(_STDIO_KEYS & entry.keys())
    http = bool(_HTTP_KEYS & entry.keys())
    if stdio and http:
        raise fail(where, "give either command/args/env (stdio) or url/headers (HTTP), not both.")
    if "command" not in entry and "url" not in entry:
        raise fail(where, "needs a command (stdio server) or a url (streamable-HTTP server).")
    if "type" in entry:
        kind = _TYPES.get(entry["type"]) if isinstance(entry["type"], str) else None
        if kind is None:
            raise fail(f"{where}.type", 'must be "stdio" or "http" (SSE servers are not supported).')
        if kind != ("stdio" if stdio else "http"):
            given = "command" if stdio else "url"
            raise fail(f"{where}.type", f"is {entry['type']!r} but the server is given a {given}.")

    def text(key: str) -> str:
        value = entry[key]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{where}.{key}", "must be a non-empty string.")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{where}.{key}", "must be a list of strings.")
        return tuple(value)

    def mapping(key: str) -> dict[str, str]:
        value = entry.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise fail(f"{where}.{key}", "must be an object of string values.")
        return dict(value)

    def choice(key: str, options: tuple[str, ...]) -> Any:
        value = entry.get(key, options[0])
        if value not in options:
            raise fail(f"{where}.{key}", "must be one of " + ", ".join(f'"{o}"' for o in options) + ".")
        return value

    timeout = entry.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf
    ):
        raise fail(f"{where}.timeout", "must be a positive number of seconds.")
    url = text("url") if "url" in entry else None
    if url is not None and not url.startswith(("http://", "https://")):
        raise fail(f"{where}.url", "must start with http:// or https://.")
    return ServerConfig(
        name=name,
        command=text("command") if "command" in entry else None,
        args=strings("args"),
        env=mapping("env"),
        url=url,
        headers=mapping("headers"),
        scope=choice("scope", ("session", "process")),
        approve=choice("approve", ("annotations", "always", "never")),
        timeout=float(timeout) if timeout is not None else None,
    )
