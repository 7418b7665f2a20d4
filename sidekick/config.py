"""Typed settings, read once from the environment (and, in the dashboard, Streamlit secrets).

Every setting is a field with its environment variable and a description; nodes, tools and the pool
receive a :class:`Settings` and never read ``os.environ`` themselves. A malformed value raises
:class:`~sidekick.errors.ConfigError` naming the variable and what it expects.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidekick.errors import ConfigError
from sidekick.web.policy import UrlPolicy

DEFAULT_MODEL = "gpt-4.1-mini"


def _setting(env: str, default: Any, doc: str, *, minimum: int | None = None) -> Any:
    """A field read from ``env``; ``minimum`` is the smallest whole number that can work."""
    return field(default=default, metadata={"env": env, "doc": doc, "minimum": minimum})


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Browser
    browser_path: str | None = _setting(
        "SIDEKICK_BROWSER_PATH", None, "Chromium executable to use instead of discovering one."
    )
    headless: bool = _setting("SIDEKICK_HEADLESS", True, "0 shows the browser window (needs a display).")
    browser_endpoints: str = _setting(
        "SIDEKICK_BROWSER_ENDPOINTS",
        "",
        "Comma-separated Playwright browser servers (ws://host:3000/) or cdp:http://host:9222 endpoints "
        "to run sessions on, least-loaded first (default: launch Chromium here).",
    )
    idle_minutes: float = _setting(
        "SIDEKICK_IDLE_MINUTES", 15.0, "Close a session's browser context after this long without use."
    )
    session_grace_seconds: float = _setting(
        "SIDEKICK_SESSION_GRACE_SECONDS",
        10.0,
        "How long the watchdog waits after a dashboard tab disappears before freeing its session.",
    )
    # Storage
    data_dir: Path = _setting(
        "SIDEKICK_DATA_DIR", Path(".sidekick"), "Conversations (SQLite) and per-session workspaces."
    )
    user: str | None = _setting(
        "SIDEKICK_USER", None, "Who owns conversations when nobody signs in (the CLI's --user; default: the OS user)."
    )
    database_url: str | None = _setting(
        "SIDEKICK_DATABASE_URL",
        None,
        "postgresql://… keeps conversations, checkpoints and run records in PostgreSQL (default: SQLite).",
    )
    lease_seconds: float = _setting(
        "SIDEKICK_LEASE_SECONDS",
        60.0,
        "How long a replica's claim on a running conversation lasts unless renewed (renewed every third of it).",
    )
    keep_days: int = _setting(
        "SIDEKICK_KEEP_DAYS",
        0,
        "Delete conversations (record, screenshots) not used for this many days, at start-up; 0 keeps them.",
    )
    screenshots_per_conversation: int = _setting(
        "SIDEKICK_SCREENSHOTS_PER_CONVERSATION",
        300,
        "Step screenshots kept per conversation; the oldest files go first.",
        minimum=1,
    )
    # Models
    openai_api_key: str | None = _setting("OPENAI_API_KEY", None, "API key for the model server.")
    openai_base_url: str | None = _setting(
        "OPENAI_BASE_URL", None, "Any OpenAI-compatible server, e.g. http://localhost:11434/v1 (Ollama)."
    )
    model: str = _setting("SIDEKICK_MODEL", DEFAULT_MODEL, "The worker model.")
    evaluator_model: str | None = _setting(
        "SIDEKICK_EVALUATOR_MODEL", None, "The evaluator model (default: the worker model)."
    )
    model_timeout_seconds: float = _setting(
        "SIDEKICK_MODEL_TIMEOUT", 60.0, "Timeout of one model request, in seconds."
    )
    model_retries: int = _setting("SIDEKICK_MODEL_RETRIES", 2, "Retries of a failed model request.")
    context_tokens: int = _setting(
        "SIDEKICK_CONTEXT_TOKENS",
        24_000,
        "Budget of one worker request, in tokens (estimated locally); older tool results are summarised to fit.",
        minimum=2_000,
    )
    # Agent budgets
    max_evaluations: int = _setting(
        "SIDEKICK_MAX_EVALUATIONS", 3, "Evaluator rounds per turn before a graceful give-up.", minimum=1
    )
    # A turn needs at least worker → evaluator; fewer steps fail every turn.
    recursion_limit: int = _setting("SIDEKICK_RECURSION_LIMIT", 60, "LangGraph steps per turn.", minimum=2)
    turn_timeout_seconds: float = _setting(
        "SIDEKICK_TURN_TIMEOUT", 300.0, "Wall-clock budget of one turn, in seconds."
    )
    tool_timeout_seconds: float = _setting(
        "SIDEKICK_TOOL_TIMEOUT", 30.0, "Budget of one tool call, in seconds."
    )
    # Optional tools
    serper_api_key: str | None = _setting("SERPER_API_KEY", None, "Enables web search (serper.dev).")
    pushover_user: str | None = _setting("PUSHOVER_USER", None, "With PUSHOVER_TOKEN, enables notifications.")
    pushover_token: str | None = _setting("PUSHOVER_TOKEN", None, "With PUSHOVER_USER, enables notifications.")
    enable_python: bool = _setting(
        "SIDEKICK_ENABLE_PYTHON", False, "1 enables the Python tool (each script in a bubblewrap sandbox)."
    )
    python_network: bool = _setting(
        "SIDEKICK_PYTHON_NETWORK",
        False,
        "1 gives the Python sandbox web access, only through the web policy's proxy (no other route out).",
    )
    mcp_config: Path | None = _setting(
        "SIDEKICK_MCP_CONFIG", None, "MCP servers file (default: mcp.json in SIDEKICK_DATA_DIR, if present)."
    )
    vision: bool = _setting("SIDEKICK_VISION", False, "1 sends the latest screenshot to the worker model.")
    live_fps: float = _setting(
        "SIDEKICK_LIVE_FPS", 10.0, "Most frames a second the live view of the browser sends a watching tab."
    )
    # Web policy
    allowed_domains: str = _setting(
        "SIDEKICK_ALLOWED_DOMAINS", "", "Comma-separated: only these domains (and subdomains) may be loaded."
    )
    blocked_domains: str = _setting(
        "SIDEKICK_BLOCKED_DOMAINS", "", "Comma-separated: these domains (and subdomains) are never loaded."
    )
    allow_private_network: bool = _setting(
        "SIDEKICK_ALLOW_PRIVATE_NETWORK", False, "1 lets the browser reach localhost and private addresses."
    )
    allow_downloads: bool = _setting("SIDEKICK_ALLOW_DOWNLOADS", False, "1 lets pages download files.")
    guard_listen: str | None = _setting(
        "SIDEKICK_GUARD_LISTEN",
        None,
        "host:port for the web policy proxy that remote browsers use (an address the browser hosts can reach).",
    )
    auto_approve: bool = _setting(
        "SIDEKICK_AUTO_APPROVE", False, "1 runs side-effecting tools (files, Python, notifications) without asking."
    )

    @property
    def local_user(self) -> str:
        """Who uses Sidekick when nobody signs in: SIDEKICK_USER, else the OS user."""
        return self.user or getpass.getuser()

    @property
    def evaluator(self) -> str:
        return self.evaluator_model or self.model

    def url_policy(self) -> UrlPolicy:
        """The web policy these settings describe (domain lists are checked when settings load)."""
        return UrlPolicy(
            allowed_domains=UrlPolicy.parse_domains(self.allowed_domains),
            blocked_domains=UrlPolicy.parse_domains(self.blocked_domains),
            allow_private_network=self.allow_private_network,
        )

    @classmethod
    def load(cls, *sources: Mapping[str, Any]) -> Settings:
        """Build settings from the first source that names each variable (default: the environment)."""
        if not sources:
            sources = (os.environ,)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = f.metadata["env"]
            raw = next((s[env] for s in sources if env in s), None)
            if raw is None or (isinstance(raw, str) and raw.strip() == ""):
                continue
            values[f.name] = _parse(env, raw, f.default, f.metadata["minimum"], f.type)
        settings = cls(**values)
        for env, text in (
            ("SIDEKICK_ALLOWED_DOMAINS", settings.allowed_domains),
            ("SIDEKICK_BLOCKED_DOMAINS", settings.blocked_domains),
        ):
            try:
                UrlPolicy.parse_domains(text)
            except ConfigError as exc:
                raise ConfigError(f"{env}: {exc}") from None
        from sidekick.browser.endpoints import parse_endpoints  # it imports this module

        parse_endpoints(settings.browser_endpoints)  # a bad endpoint is named at start-up, not first use
        if settings.guard_listen:
            from sidekick.web.http_proxy import parse_listen

            parse_listen(settings.guard_listen)
        return settings

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting: the README's configuration table."""
        def show(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, bool):
                return "1" if value else "0"
            return str(value)

        return [(f.metadata["env"], show(f.default), f.metadata["doc"]) for f in dataclasses.fields(cls)]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(env: str, raw: Any, default: Any, minimum: int | None = None, kind: Any = None) -> Any:
    text = str(raw).strip()
    if default is None and "Path" in str(kind):
        return Path(text).expanduser()
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{env} must be 1 or 0 (got {text[:40]!r}).")
    if isinstance(default, int):
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{env} must be a whole number (got {text[:40]!r}).") from None
        if value < (minimum or 0):
            if minimum:
                raise ConfigError(f"{env} must be at least {minimum} (got {value}); a smaller value fails every turn.")
            raise ConfigError(f"{env} must not be negative (got {value}).")
        return value
    if isinstance(default, float):
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{env} must be a number (got {text[:40]!r}).") from None
        if not number > 0 or number == float("inf"):
            raise ConfigError(f"{env} must be a positive number (got {text[:40]!r}).")
        return number
    if isinstance(default, Path):
        return Path(text).expanduser()
    return text
