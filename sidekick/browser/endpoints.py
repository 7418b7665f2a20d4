"""Where the pool's browsers run: Chromium launched here, or browser servers elsewhere.

``SIDEKICK_BROWSER_ENDPOINTS`` lists Playwright browser servers (``ws://host:3000/``, what
``playwright run-server`` serves; :meth:`BrowserType.connect`) and, with a ``cdp:`` prefix, Chrome
DevTools endpoints (``cdp:http://host:9222``; :meth:`BrowserType.connect_over_cdp`). Unset, the pool
has one local :class:`Endpoint` that launches Chromium in this process tree, as before.

A browser server launches one Chromium per connection with the options sent in the
``x-playwright-launch-options`` header (:func:`launch_headers`). It honours ``headless`` always, but
``args`` and ``executablePath`` only when started with ``--unsafe`` (Playwright's
``filterLaunchOptions``); without it the server launches its own downloaded Chromium and drops our
flags. Sidekick sends ``executablePath`` only when ``SIDEKICK_BROWSER_PATH`` is set: then it names
the Chromium on the browser hosts. Playwright itself adds ``--no-sandbox`` unless asked for the
sandbox, so a server running as root needs nothing more. When our connection closes, the server
closes that Chromium. A DevTools endpoint is a browser that outlives us: closing our connection
leaves its contexts open, so the pool closes each of its contexts first (it does so everywhere).

:class:`Endpoint` is one browser source's state (up or down, its browser, why it is down); the
pool decides which one a session uses and when a down one is tried again (:func:`backoff`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from playwright.async_api import Browser, BrowserContext, Playwright

from sidekick.browser.chromium import CHROMIUM_FLAGS
from sidekick.config import Settings
from sidekick.errors import ConfigError
from sidekick.web.guard import ContextProxy

CDP_PREFIX = "cdp:"
RETRY_FIRST = 1.0
RETRY_MAX = 30.0


@dataclass(frozen=True)
class EndpointSpec:
    """One entry of ``SIDEKICK_BROWSER_ENDPOINTS``: ``url`` without the ``cdp:`` prefix."""

    url: str
    cdp: bool = False

    @property
    def name(self) -> str:
        """As configured, but without secrets (what the resources panel, messages and logs show): a
        password in the address and the query's values (browserless takes ``?token=``) are elided."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        if parts.username:
            netloc = f"{parts.username}:…@{netloc}" if parts.password else f"{parts.username}@{netloc}"
        query = "&".join(f"{pair.split('=', 1)[0]}=…" for pair in parts.query.split("&") if pair)
        shown = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
        return CDP_PREFIX + shown if self.cdp else shown


def parse_endpoints(text: str) -> tuple[EndpointSpec, ...]:
    """The endpoints in ``SIDEKICK_BROWSER_ENDPOINTS`` (comma-separated); ``ConfigError`` names a bad one."""
    specs: list[EndpointSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        cdp = item.lower().startswith(CDP_PREFIX)
        url = item[len(CDP_PREFIX):].strip() if cdp else item
        allowed = ("http", "https", "ws", "wss") if cdp else ("ws", "wss")
        parts = urlsplit(url)
        if parts.scheme.lower() not in allowed or not parts.hostname:
            want = "cdp:http://host:port" if cdp else "ws://host:port/ (or cdp:http://host:port)"
            raise ConfigError(f"SIDEKICK_BROWSER_ENDPOINTS: {item[:80]!r} is not an endpoint like {want}.")
        spec = EndpointSpec(url, cdp)
        if spec in specs:
            raise ConfigError(f"SIDEKICK_BROWSER_ENDPOINTS names {spec.name} twice.")
        specs.append(spec)
    return tuple(specs)


def launch_headers(settings: Settings, extra_args: list[str]) -> dict[str, str]:
    """The launch options a browser server applies to the Chromium it starts for us (see the module)."""
    options: dict[str, object] = {"headless": settings.headless, "args": [*CHROMIUM_FLAGS, *extra_args]}
    if settings.browser_path:
        options["executablePath"] = settings.browser_path
    return {"x-playwright-launch-options": json.dumps(options)}


async def connect(playwright: Playwright, spec: EndpointSpec, headers: dict[str, str], timeout: float) -> Browser:
    """Connect to one remote endpoint (the caller bounds the await as well)."""
    if spec.cdp:
        return await playwright.chromium.connect_over_cdp(spec.url, timeout=timeout * 1000)
    return await playwright.chromium.connect(spec.url, timeout=timeout * 1000, headers=headers)


def backoff(failures: int) -> float:
    """Seconds before the next try of an endpoint that failed ``failures`` times in a row: 1, 2, 4 … 30."""
    return float(min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class EndpointStatus:
    """One endpoint as the resources panel shows it."""

    name: str
    connected: bool
    contexts: int
    """Contexts this server has open there (its sessions' and the warm spare)."""
    problem: str = ""
    """Why it is not connected (the last error), when it is not."""


class Endpoint:
    """One browser source: Chromium launched here (``spec`` is None) or a remote endpoint.

    States: down ⇄ up; the pool owns the transitions. ``generation`` names the browser it is up
    with (unique in the pool), so a context knows whether its browser is still the current one.
    """

    def __init__(self, spec: EndpointSpec | None = None) -> None:
        self.spec = spec
        self.browser: Browser | None = None
        self.generation = 0
        self.opening: asyncio.Task[Browser] | None = None
        self.retrying: asyncio.Task[None] | None = None
        self.failures = 0
        self.problem = ""
        self.drops = 0
        self.browser_pid: int | None = None
        self.contexts: dict[BrowserContext, ContextProxy | None] = {}
        """Contexts opened in this browser and not closed yet, with their web policy credentials."""
        self.opening_contexts = 0
        """Contexts being opened here now: counted as load, so sessions opened together spread out."""

    @property
    def name(self) -> str:
        return self.spec.name if self.spec is not None else "local"

    @property
    def remote(self) -> bool:
        return self.spec is not None

    @property
    def load(self) -> int:
        return len(self.contexts) + self.opening_contexts

    @property
    def connected(self) -> bool:
        return self.browser is not None and self.browser.is_connected()

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {'up' if self.connected else 'down'}>"
