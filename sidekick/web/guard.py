"""The web policy, enforced on everything a browser context loads, not only on what the agent opens.

A :class:`Guard` applies one :class:`~sidekick.web.policy.UrlPolicy` at two layers:

1. **A SOCKS5 proxy on 127.0.0.1 enforces it.** Chromium is launched with :meth:`Guard.launch_args`, so
   every connection it makes asks the proxy for a host and port: pages, sub-resources, redirect hops,
   WebSockets, workers, prefetches and Chromium's own background requests. The proxy resolves the
   name itself, checks the policy on every address, and connects to an address it checked, so a
   second DNS answer cannot send the connection elsewhere (DNS rebinding). Chromium cannot resolve
   names itself (``--host-resolver-rules``), and WebRTC may not send UDP around the proxy. Chromium
   fails a refused request with ``net::ERR_SOCKS_CONNECTION_FAILED``, the same error it gives
   when the proxy cannot reach an allowed site.
2. **Playwright hooks on each context** (:meth:`Guard.install`) name the session and the reason, stop
   requests before any connection, and catch pages that never touch the network:

   - ``context.route("**/*")`` checks every routed request, ``file:`` included. A denied one is
     aborted (``net::ERR_BLOCKED_BY_CLIENT``); an allowed one falls back to other handlers, then the
     network. Redirect hops are never routed. The Playwright driver continues each one itself, even
     after ``route.fulfill`` with a 3xx, so ``route.fetch(max_redirects=0)`` plus ``fulfill`` could
     check only the first ``Location``. A second hop from an allowed server would go out unchecked.
     That is why the proxy is the layer that enforces the policy.
   - ``requestfailed`` reports the requests the proxy refused, which are mostly redirect hops.
   - The page ``websocket`` event reports WebSockets to denied hosts; the proxy blocks them.
     ``route_web_socket`` is not used: it replaces the page's ``WebSocket`` with a scripted mock,
     and the Node driver then opens the allowed sockets itself, outside the proxy.
   - The page URL is checked after every main-frame navigation, without DNS. A page that ends up on a
     denied URL is reported and sent to ``about:blank``: a ``blob:`` URL a script navigated to, or a
     ``data:`` URL that code opened with ``page.goto`` directly. Chromium itself refuses ``file:``
     popups and top-level ``data:`` navigations that a page starts.

Cost, measured on 2 busy cores (load average about 20) as the median of 15 loads of the test site,
over three rounds. ``/long`` (one 20 KB page) took 79-105 ms without the guard, 57-87 ms through the
proxy only, and 97-133 ms with proxy and hooks. A page with 100 images took 1.05-1.12 s, 1.07-1.12 s
and 1.08-1.17 s. The route layer costs a round trip through the driver per request, under 1 ms, and
Playwright turns off Chromium's HTTP cache for any context with routes. The route layer stays
anyway: it blocks before any connection is made and says at once which session was blocked, and why.

**A browser on another host** (``SIDEKICK_BROWSER_ENDPOINTS``) cannot use the SOCKS proxy: it listens
on 127.0.0.1, and Chromium does not authenticate to SOCKS5. Each of its contexts gets
``proxy=`` :meth:`Guard.open_context_proxy` instead: the guard's HTTP proxy
(:class:`~sidekick.web.http_proxy.HttpProxy`, CONNECT and plain ``GET http://…``) on
``SIDEKICK_GUARD_LISTEN``, with random credentials of that context alone, revoked when it closes.
It checks exactly as the SOCKS proxy does (the same :meth:`Guard._admit`). A refused tunnel fails in
Chromium with ``net::ERR_TUNNEL_CONNECTION_FAILED``; a refused plain ``http://`` request is answered
``403`` with the rule, which the page then shows. :meth:`Guard.remote_launch_args` are the flags
such a browser should be launched with. A proxy is only a door the browser chooses to use: the
browser host must also refuse direct egress (README, Security: "A remote browser host with its own way out").
:meth:`Guard.sandbox_socket` serves the same HTTP proxy on a unix socket, for the Python sandbox.

The proxy is :class:`~sidekick.web.socks.SocksProxy`; names are resolved through
:class:`~sidekick.web.dns.DnsCache`. Only addresses are cached, never verdicts, so assigning a new
:attr:`Guard.policy` applies it from the next request on.

Limits: Playwright's own HTTP client (``context.request``, ``route.fetch``) runs in the Node driver,
outside the proxy, so page traffic must not use it. A denied WebSocket opened by a worker is blocked
but not reported. ``blob:``/``data:`` sub-resources and iframes stay inside the browser and are not
checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import BrowserContext, Frame, Page, Request, Route, WebSocket

from sidekick.closing import close_quietly
from sidekick.errors import BrowserError
from sidekick.web.dns import DnsCache
from sidekick.web.http_proxy import HttpProxy, parse_listen
from sidekick.web.policy import Resolver, UrlPolicy, UrlVerdict, check_url, check_url_static
from sidekick.web.socks import Dialer, SocksProxy

__all__ = ["ContextProxy", "Dialer", "Guard"]

log = logging.getLogger(__name__)

Report = Callable[[str, str], None]

PROXY_REFUSED = ("net::ERR_SOCKS_CONNECTION_FAILED", "net::ERR_TUNNEL_CONNECTION_FAILED")
"""How Chromium fails a request a proxy refused: every SOCKS error, and a CONNECT that got no 200."""

_ACTION_SECONDS = 5.0
_LEAVE_SECONDS = 20.0  # moving a page off a denied URL: retried this long (a loaded machine is slow)
_LISTEN_SECONDS = 5.0
SANDBOX_SOCKET = "proxy.sock"


@dataclass(frozen=True, eq=False)
class ContextProxy:
    """Credentials of one remote browser context on the guard's HTTP proxy (``server``: ``http://host:port``).

    The credentials are random, kept out of ``repr`` and never logged. :meth:`close` revokes them and
    ends the connections opened with them; it is synchronous and idempotent.
    """

    server: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    _revoke: Callable[[str], None] = field(repr=False)

    @property
    def playwright(self) -> dict[str, str]:
        """For ``browser.new_context(proxy=...)``."""
        return {"server": self.server, "username": self.username, "password": self.password}

    def close(self) -> None:
        self._revoke(self.username)


class Guard:
    """Enforces a :class:`UrlPolicy` on a Chromium and its contexts (see the module docstring).

    States: new → running (:meth:`start`) → closed (:meth:`aclose`, final). :meth:`check` works in
    any state; :meth:`launch_args` and :meth:`install` need a running guard. Use it on one event loop.
    """

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        resolve: Resolver | None = None,
        cache_seconds: float = 30.0,
        dns_timeout: float = 3.0,
        dial: Dialer | None = None,
        listen: str | None = None,
    ) -> None:
        """``listen`` is ``SIDEKICK_GUARD_LISTEN`` (``host:port``): where remote browsers reach the HTTP
        proxy (default: a free port of 127.0.0.1, for a browser server on this machine)."""
        self.policy = policy
        """The policy in force; assigning a new one applies it to the next request."""
        self._hooks_blocked = 0
        self._dns = DnsCache(resolve, cache_seconds=cache_seconds, timeout=dns_timeout)
        self._dns_timeout = dns_timeout
        self._proxy = SocksProxy(self._admit, admit_timeout=dns_timeout, dial=dial)
        self._http = HttpProxy(self._admit, admit_timeout=dns_timeout, dial=dial)
        self._listen = parse_listen(listen) if listen else ("127.0.0.1", 0)
        self._http_server: str | None = None
        self._socket_dir: Path | None = None
        self._http_starting = asyncio.Lock()
        self._state: Literal["new", "running", "closed"] = "new"
        self._port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def blocked(self) -> int:
        """Requests, connections and pages this guard stopped, across all contexts."""
        return self._hooks_blocked + self._proxy.refused + self._http.refused

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._state == "running"

    async def start(self) -> None:
        """Start the proxy on a free port of 127.0.0.1. Idempotent; a closed guard cannot restart."""
        if self._state == "closed":
            raise BrowserError("The web policy guard is closed; create a new one.")
        if self._state == "running":
            return
        self._port = await self._proxy.start()
        self._state = "running"

    @property
    def proxy_url(self) -> str:
        """The proxy's address for programs that honour ``ALL_PROXY`` (names resolved by the proxy)."""
        if self._state != "running":
            raise BrowserError("Start the web policy guard (await guard.start()) first.")
        return f"socks5h://127.0.0.1:{self._port}"

    def launch_args(self) -> list[str]:
        """Chromium flags that send all its traffic through this guard's proxy (the guard must run)."""
        if self._state != "running":
            raise BrowserError("Start the web policy guard (await guard.start()) before launching Chromium.")
        return [
            f"--proxy-server=socks5://127.0.0.1:{self._port}",
            # Chromium connects to loopback directly unless told otherwise.
            "--proxy-bypass-list=<-loopback>",
            # Proxied names are resolved by the proxy; any path around it finds no addresses.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            # WebRTC would otherwise send UDP (STUN) to any address, around the proxy.
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        ]

    def remote_launch_args(self) -> list[str]:
        """Chromium flags for a browser on another host, whose contexts use :meth:`open_context_proxy`.

        An HTTP proxy is sent host names, so the guard resolves and checks them; these flags make any
        path around the proxy (the browser's own background requests, a context opened without a
        proxy) find no addresses, and keep WebRTC's UDP off. A server that refuses launch arguments
        (``playwright run-server`` without ``--unsafe``) drops them; the browser host's firewall is
        what must stop direct traffic then (see the README).
        """
        host = self._listen[0]
        return [
            f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        ]

    async def open_context_proxy(self) -> ContextProxy:
        """New credentials on the HTTP proxy for one remote context (its listener starts on first use).

        ``ContextProxy.playwright`` goes to ``browser.new_context(proxy=...)``; ``close()`` revokes it.
        """
        server = await self._http_listening()
        username, password = self._http.grant()
        return ContextProxy(f"http://{server}", username, password, self._http.revoke)

    async def sandbox_socket(self) -> Path:
        """The HTTP proxy's unix socket for the Python sandbox (it starts on first use). Whoever can open
        the file (our user, and each sandbox it is bound into) may use it without credentials; its
        folder is private (mode 0700) and removed when the guard closes."""
        if self._state != "running":
            raise BrowserError("Start the web policy guard (await guard.start()) first.")
        async with self._http_starting:
            if self._socket_dir is None:
                folder = Path(tempfile.mkdtemp(prefix="sidekick-guard-"))
                try:
                    await self._bounded_listen(self._http.listen_unix(str(folder / SANDBOX_SOCKET)), "a unix socket")
                except BaseException:
                    shutil.rmtree(folder, ignore_errors=True)
                    raise
                self._socket_dir = folder
            return self._socket_dir / SANDBOX_SOCKET

    async def _http_listening(self) -> str:
        """The HTTP proxy's ``host:port``, listening from the first call on."""
        if self._state != "running":
            raise BrowserError("Start the web policy guard (await guard.start()) first.")
        async with self._http_starting:
            if self._http_server is None:
                host, port = self._listen
                port = await self._bounded_listen(self._http.listen_tcp(host, port), f"{host}:{port}")
                shown = f"[{host}]" if ":" in host else host
                self._http_server = f"{shown}:{port}"
            return self._http_server

    async def _bounded_listen(self, listening: Awaitable[Any], where: str) -> Any:
        try:
            async with asyncio.timeout(_LISTEN_SECONDS):
                return await listening
        except (OSError, TimeoutError) as error:
            detail = getattr(error, "strerror", None) or type(error).__name__
            raise BrowserError(
                f"The web policy proxy cannot listen on {where} ({detail}); check SIDEKICK_GUARD_LISTEN."
            ) from None


    async def aclose(self) -> None:
        """Stop the proxy, drop its connections and cancel pending work. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        pending: list[asyncio.Task[Any]] = [*self._tasks, *self._dns.pending()]
        self._dns.cancel()
        for task in self._tasks:
            task.cancel()
        await self._proxy.aclose()
        await self._http.aclose()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        waiting = [t for t in pending if not t.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=_ACTION_SECONDS)

    # -- verdicts ------------------------------------------------------------------------------
    async def check(self, url: str) -> UrlVerdict:
        """The policy's verdict on ``url``, with host names resolved through the cache."""
        return await check_url(url, self.policy, self._dns.lookup, timeout=self._dns_timeout)

    async def _admit(self, host: str, port: int) -> tuple[UrlVerdict, list[str]]:
        """The verdict on ``host:port`` and the addresses to connect to (exactly those checked)."""
        resolved: list[str] = []

        async def resolve(name: str) -> list[str]:
            addresses = await self._dns.lookup(name)
            resolved[:] = addresses
            return addresses

        shown = f"[{host}]" if ":" in host else host
        verdict = await check_url(f"http://{shown}:{port}/", self.policy, resolve, timeout=self._dns_timeout)
        if not verdict.allowed:
            log.info("Refused %s:%s: %s", host, port, verdict.reason)
        # An IP literal (in the canonical form the policy judged: 0x7f000001 is 127.0.0.1), or a name
        # the policy did not resolve (private network allowed): dial that.
        return verdict, resolved or [verdict.host or host]

    # -- the context hooks ---------------------------------------------------------------------
    async def install(self, context: BrowserContext, report: Report) -> None:
        """Hook ``context`` so every request, WebSocket and page is checked and each block reported."""
        if self._state != "running":
            raise BrowserError(
                "The web policy guard is not running: start it and launch Chromium with guard.launch_args()."
            )

        async def on_route(route: Route) -> None:
            await self._on_route(route, report)

        def on_page(page: Page) -> None:
            self._watch(page, report)

        def on_request_failed(request: Request) -> None:
            if request.failure in PROXY_REFUSED:
                self._spawn(self._report_if_denied(request.url, report))

        await context.route("**/*", on_route)
        context.on("page", on_page)
        context.on("requestfailed", on_request_failed)
        for page in context.pages:
            self._watch(page, report)

    async def _on_route(self, route: Route, report: Report) -> None:
        url = route.request.url
        try:
            async with asyncio.timeout(self._dns_timeout + 1):
                verdict = await self.check(url)
        except Exception as error:  # an unexpected failure must deny, never allow, and end the route
            log.warning("Checking %s failed: %r", url, error)
            verdict = UrlVerdict(False, f"blocked: the web policy could not check it ({type(error).__name__})", None)
        try:
            async with asyncio.timeout(_ACTION_SECONDS):
                if verdict.allowed:
                    await route.fallback()
                else:
                    await route.abort("blockedbyclient")
        except Exception as error:  # the page or context went away meanwhile
            log.debug("Could not finish the route of %s: %r", url, error)
        if not verdict.allowed:
            self._hooks_blocked += 1
            _safe_report(report, url, verdict.reason)
            if url.startswith("blob:") and route.request.is_navigation_request():
                # Chromium sometimes routes a new tab's blob: page instead of committing it; refused,
                # the tab stays on an error page under that URL. The request may name the opener's
                # frame, so the page to send away is found by its URL once it shows it.
                with contextlib.suppress(Exception):
                    self._spawn(self._leave_pages_at(route.request.frame.page.context, url))

    def _watch(self, page: Page, report: Report) -> None:
        def on_navigated(frame: Frame) -> None:
            if frame.parent_frame is None:
                self._check_page(page, frame.url, report)

        def on_websocket(ws: WebSocket) -> None:
            self._spawn(self._report_if_denied(ws.url, report))

        page.on("framenavigated", on_navigated)
        page.on("websocket", on_websocket)
        # A popup may have committed its first URL before Playwright announced the page.
        self._check_page(page, page.url, report)

    def _check_page(self, page: Page, url: str, report: Report) -> None:
        # about: pages hold nothing from the network; chrome-error: is Chromium's page for a failed load.
        if url.startswith(("about:", "chrome-error:")):
            return
        # Whatever reached the page through the network passed the proxy; what did not must be a web
        # URL (a DNS check would add nothing).
        verdict = check_url_static(url, self.policy)
        if verdict.allowed:
            return
        self._hooks_blocked += 1
        _safe_report(report, url, verdict.reason)
        self._spawn(self._leave(page, url))

    async def _leave(self, page: Page, url: str) -> None:
        """Send ``page``, found at the denied ``url``, to about:blank. A new tab's own first
        navigation can interrupt that or commit after it, so it goes again while the page still
        shows ``url``; once the page is anywhere else (a later navigation included) it is done. A
        popup that cannot be moved in time (a machine under heavy load) is closed instead: no page
        may stay on what the policy denied."""
        try:
            async with asyncio.timeout(_LEAVE_SECONDS):
                for attempt in range(10):
                    try:
                        await page.goto("about:blank", timeout=_ACTION_SECONDS * 1000)
                    except Exception as error:
                        if page.is_closed() or attempt == 9:
                            raise
                        log.debug("Leaving %s was interrupted (%r); trying again", url, error)
                    await asyncio.sleep(0.1)
                    if page.is_closed() or page.url != url:
                        return
        except Exception:
            if page.is_closed() or page.url != url or await page.opener() is None:
                raise
            log.info("A popup at a URL the web policy denies could not be moved away; closing it.")
            await close_quietly(page.close(), _ACTION_SECONDS, "Closing a popup the web policy denied")

    async def _leave_pages_at(self, context: BrowserContext, url: str, seconds: float = 2.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stuck = [page for page in context.pages if not page.is_closed() and page.url == url]
            if stuck:
                await asyncio.gather(*(self._leave(page, url) for page in stuck), return_exceptions=True)
                return
            await asyncio.sleep(0.1)

    async def _report_if_denied(self, url: str, report: Report) -> None:
        # The proxy already blocked it (and counted it); this only tells the session why.
        verdict = await self.check(url)
        if not verdict.allowed:
            _safe_report(report, url, verdict.reason)

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` in the background; its failure is logged, never left unretrieved."""
        if self._state == "closed":
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("Web policy background task failed: %r", task.exception())


def _safe_report(report: Report, url: str, reason: str) -> None:
    try:
        report(url, reason)
    except Exception:  # the owner's callback must not break enforcement
        log.exception("Reporting a blocked request failed")
