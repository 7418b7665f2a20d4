"""One session's browser: its own BrowserContext (cookies, storage, pages) and its current page.

A :class:`SessionBrowser` is handed out by :class:`~sidekick.browser.pool.BrowserPool`, which keeps
the context's owner relation: the pool launched the browser, the session owns the context. Pages a
site opens become current by themselves. Every call on the page is bounded, and Playwright's failures
become typed Sidekick errors (:class:`BrowserTimeoutError`, :class:`BrowserCrashedError`,
:class:`SessionClosedError`, :class:`NavigationError`). :meth:`SessionBrowser.aclose` closes pages,
then the context; it is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from playwright.async_api import BrowserContext, Frame, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from sidekick.closing import close_quietly
from sidekick.errors import (
    BrowserCrashedError,
    BrowserError,
    BrowserTimeoutError,
    NavigationError,
    SessionClosedError,
)
from sidekick.events import Screenshot

if TYPE_CHECKING:
    from sidekick.browser.pool import BrowserPool

T = TypeVar("T")

Report = Callable[[str, str], None]
"""Called with (url, reason) for each request the web policy stopped in a session's context."""

CRASHED = "The browser stopped unexpectedly (crashed or was killed). It restarts on your next action."
CLOSED = "This browser session was reset or ended."


@dataclass(frozen=True)
class Timeouts:
    launch: float = 30.0
    context: float = 15.0
    action: float = 15.0
    navigation: float = 20.0
    close: float = 5.0


@dataclass(frozen=True)
class PreparedContext:
    """A context and page opened ahead of use (the pool's warm spare), not yet anyone's."""

    context: BrowserContext
    page: Page
    generation: int

    async def aclose(self, timeout: float) -> None:
        for page in list(self.context.pages):
            await close_quietly(page.close(), timeout, "Closing a page")
        await close_quietly(self.context.close(), timeout, "Closing a browser context")


class SessionBrowser:
    """One session's BrowserContext and current page. States: open → closed (final)."""

    def __init__(self, pool: BrowserPool, prepared: PreparedContext, report: Report | None = None) -> None:
        self._pool = pool
        self._prepared = prepared
        self._context = prepared.context
        self._page = prepared.page
        self.generation = prepared.generation
        self._report = report
        self.blocks = 0
        self.last_block_reason = ""
        self._closed = False
        self.created_at = time.monotonic()
        self._context.on("page", self._on_page)

    def _on_page(self, page: Page) -> None:
        # Popups and target=_blank links become the page the agent works on.
        self._page = page

    def blocked(self, url: str, reason: str) -> None:
        """The web policy stopped a request of this context: count it and tell the session."""
        self.blocks += 1
        self.last_block_reason = reason
        if self._report is not None:
            self._report(url, reason)

    @property
    def context(self) -> BrowserContext:
        return self._context

    @property
    def page(self) -> Page:
        self._check_usable()
        if self._page.is_closed():
            live = [p for p in self._context.pages if not p.is_closed()]
            if live:
                self._page = live[-1]
        return self._page

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        """Open, and on the browser that is running now (not one that crashed)."""
        return not self._closed and self._pool.is_current(self.generation)

    def _check_usable(self) -> None:
        if self._closed:
            raise SessionClosedError(CLOSED)
        if not self._pool.is_current(self.generation):
            raise BrowserCrashedError(CRASHED)

    async def call(self, fn: Callable[[Page], Awaitable[T]], *, timeout: float, what: str) -> T:
        """Run ``fn(page)`` with a timeout, turning Playwright failures into Sidekick errors."""
        page = self.page
        try:
            async with asyncio.timeout(timeout):
                return await fn(page)
        except (TimeoutError, PlaywrightTimeoutError):
            self._check_usable()
            raise BrowserTimeoutError(f"{what} did not finish within {timeout:g} s.") from None
        except PlaywrightError as exc:
            self._check_usable()  # closed or crashed says so plainly
            if "closed" in str(exc) or page.is_closed():
                # The driver may report the closed target before the browser's disconnect event.
                for _ in range(20):
                    if not self._pool.browser_connected():
                        raise BrowserCrashedError(CRASHED) from None
                    await asyncio.sleep(0.05)
            raise BrowserError(f"{what} failed: {first_line(exc)}") from None

    async def goto(self, url: str, timeout: float | None = None) -> Screenshot:
        seconds = timeout or self._pool.timeouts.navigation
        if self._pool.guard is not None:
            verdict = await self._pool.guard.check(url)
            if not verdict.allowed:
                self.blocked(url, verdict.reason)
                raise NavigationError(f"Sidekick's web policy did not open {url}: {verdict.reason}")
        page = self.page
        blocks_before = self.blocks
        # Chromium commits its error page a moment after a failed load; unless we wait for it, it
        # interrupts the session's next navigation. Listen from before the load, so an error page
        # that was already showing does not count.
        error_page: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_navigated(frame: Frame) -> None:
            if frame == page.main_frame and frame.url.startswith("chrome-error:") and not error_page.done():
                error_page.set_result(None)

        page.on("framenavigated", on_navigated)
        try:
            await self.call(
                lambda p: p.goto(url, wait_until="domcontentloaded", timeout=seconds * 1000),
                timeout=seconds + 0.5,
                what=f"Opening {url}",
            )
        except BrowserTimeoutError:
            await self.stop_loading()
            raise NavigationError(f"{url} did not finish loading within {seconds:g} s.") from None
        except BrowserCrashedError:
            raise
        except BrowserError as exc:
            if "net::ERR_" in str(exc):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await error_page
            if self.blocks > blocks_before and self.last_block_reason:
                raise NavigationError(
                    f"Sidekick's web policy blocked where {url} leads: {self.last_block_reason}"
                ) from None
            raise NavigationError(explain_navigation(url, str(exc))) from None
        finally:
            page.remove_listener("framenavigated", on_navigated)
        return await self.screenshot()

    async def stop_loading(self, timeout: float = 2.0) -> None:
        """Press the browser's Stop button for a load still pending after we gave up on it.

        Until a navigation commits, Chromium answers no script or screenshot on that page, so every
        later call would wait on a site that does not answer. Playwright has no call for Stop;
        Chromium's DevTools protocol does.
        """
        with contextlib.suppress(PlaywrightError, TimeoutError, BrowserError, SessionClosedError):
            async with asyncio.timeout(timeout):
                cdp = await self._context.new_cdp_session(self.page)
                try:
                    await cdp.send("Page.stopLoading")
                finally:
                    await cdp.detach()

    async def screenshot(self) -> Screenshot:
        timeout = self._pool.timeouts.action
        png = await self.call(
            lambda p: p.screenshot(type="png", timeout=timeout * 1000, animations="disabled"),
            timeout=timeout + 1,
            what="Taking a screenshot",
        )
        page = self.page
        title = ""
        with contextlib.suppress(PlaywrightError, TimeoutError):
            async with asyncio.timeout(2):
                title = await page.title()
        return Screenshot(png=png, url=page.url, title=title, taken_at=time.time())

    async def aclose(self) -> None:
        """Close the pages, then the context. Idempotent; bounded; never raises for a dead browser."""
        if self._closed:
            return
        self._closed = True
        self._pool.forget(self)
        await self._prepared.aclose(self._pool.timeouts.close)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_NET_ERRORS = {
    "ERR_NAME_NOT_RESOLVED": "the site's name could not be found",
    "ERR_CONNECTION_REFUSED": "the site refused the connection",
    "ERR_INTERNET_DISCONNECTED": "there is no internet connection",
    "ERR_ADDRESS_UNREACHABLE": "the address is unreachable",
    "ERR_CONNECTION_TIMED_OUT": "the connection timed out",
    "ERR_CONNECTION_RESET": "the connection was reset",
    "ERR_BLOCKED_BY_CLIENT": "Sidekick's web policy blocked it",
    "ERR_ABORTED": "the page stopped loading (often a download or a blocked request)",
    "ERR_TOO_MANY_REDIRECTS": "it redirects in a loop",
    "ERR_UNSAFE_PORT": "browsers refuse that port",
    "ERR_INVALID_URL": "the address is not valid",
    "ERR_SOCKS_CONNECTION_FAILED": "it could not be reached, or Sidekick's web policy blocked where it leads",
}


def explain_navigation(url: str, detail: str) -> str:
    match = re.search(r"net::(ERR_[A-Z_]+)", detail)
    if match:
        code = match.group(1)
        meaning = _NET_ERRORS.get(code) or (
            "the site's certificate is not valid" if code.startswith("ERR_CERT") else code
        )
        return f"Could not open {url}: {meaning}."
    return f"Could not open {url}: {detail}"
