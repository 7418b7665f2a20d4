"""One Playwright driver and one Chromium per process; a BrowserContext (and page) per session.

:class:`BrowserPool` launches lazily on the loop thread, keeps one spare context warm so a new
session can browse at once, and relaunches Chromium on next use after a crash. A
:class:`SessionBrowser` is one session's context: its own cookies and storage, a current page (pages
a site opens become current), and an idempotent :meth:`SessionBrowser.aclose`. Every await on the
browser has a timeout; close order is page, context, browser, Playwright.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from playwright.async_api import Browser, BrowserContext, Frame, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from sidekick.config import Settings
from sidekick.errors import (
    BrowserCrashedError,
    BrowserError,
    BrowserUnavailableError,
    NavigationError,
    SessionClosedError,
)
from sidekick.events import Screenshot
from sidekick.policy import Verdict
from sidekick.resources import browser_main_pids, kill_browser_processes

log = logging.getLogger(__name__)
T = TypeVar("T")

CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
VIEWPORT = {"width": 1280, "height": 800}
CRASHED = "The browser stopped unexpectedly (crashed or was killed). It restarts on your next action."
NO_BROWSER = (
    "No Chromium was found. Run `make run` (it installs one), or install Chromium yourself "
    "(`python -m playwright install chromium`, or `apt-get install chromium` on Debian/Ubuntu) "
    "or set SIDEKICK_BROWSER_PATH to a Chromium executable."
)


@dataclass(frozen=True)
class Timeouts:
    launch: float = 30.0
    context: float = 15.0
    action: float = 15.0
    navigation: float = 20.0
    close: float = 5.0


# -- discovery ---------------------------------------------------------------------------------
def playwright_chromium() -> str | None:
    """Playwright's own downloaded Chromium, if `playwright install chromium` ever succeeded."""
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(Path.home() / ".cache" / "ms-playwright")
    patterns = ("chromium-*/chrome-linux*/chrome", "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
                "chromium-*/chrome-win*/chrome.exe")
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
        if found:
            return found[0]
    return None


def system_chromium() -> str | None:
    # Debian's /usr/bin/chromium is a shell wrapper; the real binary skips its warning and a fork.
    for path in ("/usr/lib/chromium/chromium",):
        if os.access(path, os.X_OK):
            return path
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def find_browser(settings: Settings) -> str:
    """SIDEKICK_BROWSER_PATH, else Playwright's Chromium, else a system Chromium."""
    if settings.browser_path:
        if not os.access(settings.browser_path, os.X_OK):
            raise BrowserUnavailableError(
                f"SIDEKICK_BROWSER_PATH={settings.browser_path} is not an executable file."
            )
        return settings.browser_path
    found = playwright_chromium() or system_chromium()
    if not found:
        raise BrowserUnavailableError(NO_BROWSER)
    return found


def launch_args() -> list[str]:
    args = list(CHROMIUM_FLAGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root.
    return args


async def _bounded(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise BrowserError(f"{what} took longer than {seconds:g} s.") from None


class Guard(Protocol):
    """The web policy as the pool uses it (implemented by ``sidekick.guard.Guard``); the pool owns it:
    starts it before launching Chromium and closes it last."""

    async def start(self) -> None: ...

    def launch_args(self) -> list[str]: ...

    async def check(self, url: str) -> Verdict: ...

    async def install(self, context: BrowserContext, report: Callable[[str, str], None]) -> None: ...

    async def aclose(self) -> None: ...


class BlockSink:
    """Where a context's blocked requests are reported: counted, and passed to whoever owns it now."""

    def __init__(self) -> None:
        self.count = 0
        self.last_reason = ""
        self.target: Callable[[str, str], None] | None = None

    def __call__(self, url: str, reason: str) -> None:
        self.count += 1
        self.last_reason = reason
        if self.target is not None:
            self.target(url, reason)


# -- one session's context ---------------------------------------------------------------------
class SessionBrowser:
    """One session's BrowserContext and current page. States: open → closed (final)."""

    def __init__(
        self, pool: BrowserPool, context: BrowserContext, page: Page, generation: int, blocked: BlockSink
    ) -> None:
        self._pool = pool
        self._context = context
        self._page = page
        self.generation = generation
        self.blocked = blocked
        self._closed = False
        self.created_at = time.monotonic()
        context.on("page", self._on_page)

    def _on_page(self, page: Page) -> None:
        # Popups and target=_blank links become the page the agent works on.
        self._page = page

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
            raise SessionClosedError("This browser session was reset or ended.")
        if not self._pool.is_current(self.generation):
            raise BrowserCrashedError(CRASHED)

    async def call(self, fn: Callable[[Page], Awaitable[T]], *, timeout: float, what: str) -> T:
        """Run ``fn(page)`` with a timeout, turning Playwright failures into Sidekick errors."""
        page = self.page
        try:
            async with asyncio.timeout(timeout):
                return await fn(page)
        except TimeoutError:
            raise NavigationError(f"{what} did not finish within {timeout:g} s.") from None
        except PlaywrightTimeoutError:
            raise NavigationError(f"{what} did not finish within {timeout:g} s.") from None
        except PlaywrightError as exc:
            self._check_usable()  # closed or crashed says so plainly
            if "closed" in str(exc) or page.is_closed():
                # The driver may report the closed target before the browser's disconnect event.
                for _ in range(20):
                    if not self._pool.browser_connected():
                        raise BrowserCrashedError(CRASHED) from None
                    await asyncio.sleep(0.05)
            raise BrowserError(f"{what} failed: {_first_line(exc)}") from None

    async def goto(self, url: str, timeout: float | None = None) -> Screenshot:
        seconds = timeout or self._pool.timeouts.navigation
        if self._pool.guard is not None:
            verdict = await self._pool.guard.check(url)
            if not verdict.allowed:
                self.blocked(url, verdict.reason)
                raise NavigationError(f"Sidekick's web policy did not open {url}: {verdict.reason}")
        page = self.page
        blocks_before = self.blocked.count
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
        except BrowserError as exc:
            if isinstance(exc, BrowserCrashedError | SessionClosedError):
                raise
            if "did not finish within" in str(exc) or "Timeout" in str(exc):
                await self.stop_loading()
                raise NavigationError(f"{url} did not finish loading within {seconds:g} s.") from None
            if "net::ERR_" in str(exc):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await error_page
            if self.blocked.count > blocks_before and self.blocked.last_reason:
                raise NavigationError(
                    f"Sidekick's web policy blocked where {url} leads: {self.blocked.last_reason}"
                ) from None
            raise NavigationError(_explain_navigation(url, str(exc))) from None
        finally:
            page.remove_listener("framenavigated", on_navigated)
        return await self.screenshot()

    async def stop_loading(self, timeout: float = 2.0) -> None:
        """Press the browser's Stop button for a load still pending after we gave up on it.

        Until a navigation commits, Chromium answers no script or screenshot on that page, so every
        later call would wait on a site that does not answer. Playwright has no call for Stop;
        Chromium's DevTools protocol does.
        """
        with contextlib.suppress(PlaywrightError, TimeoutError, BrowserError):
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
        self._pool._forget(self)
        timeout = self._pool.timeouts.close
        for page in list(self._context.pages):
            with contextlib.suppress(PlaywrightError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await page.close()
        with contextlib.suppress(PlaywrightError, TimeoutError):
            async with asyncio.timeout(timeout):
                await self._context.close()


def normalize_url(text: str) -> str:
    """What a person or a model typed, made into an http(s) URL ("example.com/x" gets https://),
    or a NavigationError that says what is wrong."""
    url = text.strip()
    if not url:
        raise NavigationError("Type a web address, for example https://example.com.")
    if len(url) > 4096:
        raise NavigationError("That address is too long (over 4096 characters).")
    if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        raise NavigationError("A web address cannot contain spaces or control characters.")
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)", url)
    if scheme is None:
        url = "https://" + url
    elif scheme.group(1).lower() not in ("http", "https"):
        raise NavigationError(f"Only http and https addresses can be opened (not {scheme.group(1)[:20]}:).")
    elif not url.lower().startswith(f"{scheme.group(1).lower()}://"):
        raise NavigationError(f"{text.strip()[:80]!r} is not a web address; write it like https://example.com.")
    host = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if not host or host.startswith(":"):
        raise NavigationError(f"{text.strip()[:80]!r} is not a web address; write it like https://example.com.")
    return url


def _first_line(exc: BaseException) -> str:
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


def _explain_navigation(url: str, detail: str) -> str:
    match = re.search(r"net::(ERR_[A-Z_]+)", detail)
    if match:
        code = match.group(1)
        meaning = _NET_ERRORS.get(code) or (
            "the site's certificate is not valid" if code.startswith("ERR_CERT") else code
        )
        return f"Could not open {url}: {meaning}."
    if "did not finish within" in detail:
        return f"{url} did not finish loading: {detail.split(': ', 1)[-1]}"
    return f"Could not open {url}: {detail}"


def _retrieve(task: asyncio.Task[Browser]) -> None:
    """Mark a background task's failure as seen (its awaiting callers got it, or none is left)."""
    if not task.cancelled():
        task.exception()


# -- the pool ----------------------------------------------------------------------------------

class BrowserPool:
    """The process's Playwright driver and Chromium, launched lazily; contexts handed to sessions.

    All methods must run on the loop thread. States: idle (nothing launched) ⇄ running; closed is
    final. A crash moves running back to idle (the next use relaunches).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeouts: Timeouts | None = None,
        warm_spare: bool = True,
        guard: Guard | None = None,
    ) -> None:
        self.settings = settings
        self.timeouts = timeouts or Timeouts()
        self._warm_spare = warm_spare
        self.guard = guard
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._generation = 0
        self._launching: asyncio.Task[Browser] | None = None
        self._spare: SessionBrowser | None = None
        self._spare_task: asyncio.Task[None] | None = None
        self._live: set[SessionBrowser] = set()
        self._closed = False
        self.launches = 0
        self.crashes = 0
        self.executable: str | None = None
        self._browser_pid: int | None = None

    # -- state ---------------------------------------------------------------------------------
    def is_current(self, generation: int) -> bool:
        return generation == self._generation and self.browser_connected()

    def browser_connected(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    @property
    def open_contexts(self) -> int:
        """Contexts Chromium has open now (sessions' plus the warm spare)."""
        return len(self._browser.contexts) if self.browser_connected() else 0  # type: ignore[union-attr]

    @property
    def session_contexts(self) -> int:
        return sum(1 for s in self._live if s.alive)

    @property
    def browser_pid(self) -> int | None:
        """The running Chromium's main process id (found by process accounting at launch)."""
        return self._browser_pid if self.browser_connected() else None

    # -- launching -----------------------------------------------------------------------------
    async def _ensure_browser(self) -> Browser:
        if self._closed:
            raise SessionClosedError("The browser pool is shut down.")
        if self.browser_connected():
            return self._browser  # type: ignore[return-value]
        # The launch runs as its own task, shielded from its callers: a caller cancelled halfway (a
        # stopped run, a spare no longer wanted) must not leave a driver or Chromium without owner.
        if self._launching is None or self._launching.done():
            self._launching = asyncio.get_running_loop().create_task(self._launch(), name="sidekick-launch")
            self._launching.add_done_callback(_retrieve)
        return await asyncio.shield(self._launching)

    async def _launch(self) -> Browser:
        # Only one launch task exists at a time (see _ensure_browser), so no lock is needed.
        if self.browser_connected():
            return self._browser  # type: ignore[return-value]
        await self._drop_browser()
        executable = find_browser(self.settings)
        args = launch_args()
        if self.guard is not None:
            await _bounded(self.guard.start(), self.timeouts.launch, "Starting the web policy proxy")
            args += self.guard.launch_args()
        mains_before = await asyncio.to_thread(browser_main_pids)
        for attempt in (1, 2):
            if self._playwright is None:
                self._playwright = await _bounded(
                    async_playwright().start(), self.timeouts.launch, "Starting Playwright"
                )
            try:
                browser = await _bounded(
                    self._playwright.chromium.launch(
                        executable_path=executable,
                        headless=self.settings.headless,
                        args=args,
                        timeout=self.timeouts.launch * 1000,
                    ),
                    self.timeouts.launch + 2,
                    "Launching Chromium",
                )
                break
            except (PlaywrightError, BrowserError) as exc:
                # The driver itself may have died with the browser: restart it once.
                await self._stop_playwright()
                if attempt == 2:
                    raise BrowserUnavailableError(
                        f"Chromium at {executable} could not be started: {_first_line(exc)}"
                    ) from None
        self._generation += 1
        self.launches += 1
        self.executable = executable
        new_mains = await asyncio.to_thread(browser_main_pids) - mains_before
        self._browser_pid = min(new_mains) if len(new_mains) == 1 else None
        generation = self._generation
        browser.on("disconnected", lambda _b: self._on_disconnected(generation))
        self._browser = browser
        return browser

    def _on_disconnected(self, generation: int) -> None:
        if generation == self._generation and not self._closed:
            self.crashes += 1
            log.warning("Chromium disconnected (generation %s); it relaunches on next use.", generation)

    async def _drop_browser(self) -> None:
        """Forget a dead browser: its contexts are gone with it."""
        if self._browser is None:
            return
        browser, self._browser = self._browser, None
        self._spare = None
        self._live.clear()  # their contexts died with the browser; each session sees `alive` False
        with contextlib.suppress(PlaywrightError, TimeoutError):
            async with asyncio.timeout(self.timeouts.close):
                await browser.close()

    async def _stop_playwright(self) -> None:
        pw, self._playwright = self._playwright, None
        if pw is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.close):
                    await pw.stop()

    async def _new(self) -> SessionBrowser:
        browser = await self._ensure_browser()
        generation = self._generation
        try:
            context = await _bounded(
                browser.new_context(
                    viewport=VIEWPORT,  # type: ignore[arg-type]
                    accept_downloads=self.settings.allow_downloads,
                    # Service workers' requests would bypass the web policy's routing.
                    service_workers="block",
                ),
                self.timeouts.context,
                "Opening a browser context",
            )
        except PlaywrightError:
            if not self.browser_connected():
                raise BrowserCrashedError(CRASHED) from None
            raise
        sink = BlockSink()
        try:
            if self.guard is not None:
                await _bounded(self.guard.install(context, sink), self.timeouts.context, "Installing the web policy")
            page = await _bounded(context.new_page(), self.timeouts.context, "Opening a page")
        except BaseException:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.close):
                    await context.close()
            raise
        sb = SessionBrowser(self, context, page, generation, sink)
        self._live.add(sb)
        return sb

    async def _refill_spare(self) -> None:
        try:
            spare = await self._new()
        except Exception as exc:  # a spare is an optimisation; the next session just waits
            log.info("Could not warm a spare context: %s", exc)
            return
        if self._closed or self._spare is not None:
            await spare.aclose()
        else:
            self._spare = spare

    def schedule_spare(self) -> None:
        if self._warm_spare and not self._closed and (self._spare_task is None or self._spare_task.done()):
            self._spare_task = asyncio.get_running_loop().create_task(self._refill_spare())

    async def new_session_browser(self) -> SessionBrowser:
        """A fresh context and page for one session; the warm spare when there is one."""
        if self._closed:
            raise SessionClosedError("The browser pool is shut down.")
        spare, self._spare = self._spare, None
        if spare is not None and spare.alive:
            self.schedule_spare()
            return spare
        if spare is not None:
            await spare.aclose()
        sb = await self._new()
        self.schedule_spare()
        return sb

    async def warm(self) -> None:
        """Launch now and have a spare ready (used at start-up, so the first session is quick)."""
        if self._spare is None:
            self.schedule_spare()
        if self._spare_task is not None:
            await asyncio.shield(self._spare_task)

    def _forget(self, sb: SessionBrowser) -> None:
        self._live.discard(sb)
        if self._spare is sb:
            self._spare = None

    # -- closing -------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close every context, then Chromium, then the driver. Idempotent and bounded."""
        if self._closed:
            return
        self._closed = True
        task, self._spare_task = self._spare_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait([task], timeout=self.timeouts.close)
        launching = self._launching
        if launching is not None and not launching.done():
            await asyncio.wait([launching], timeout=self.timeouts.launch + 5)
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare.aclose()
        for sb in list(self._live):
            await sb.aclose()
        browser, self._browser = self._browser, None
        timed_out = False
        if browser is not None:
            try:
                async with asyncio.timeout(self.timeouts.close):
                    await browser.close()
            except TimeoutError:
                timed_out = True
            except PlaywrightError:
                pass
        pw, self._playwright = self._playwright, None
        if pw is not None:
            try:
                async with asyncio.timeout(self.timeouts.close):
                    await pw.stop()
            except TimeoutError:
                timed_out = True
            except Exception:
                pass
        if self.guard is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.close):
                    await self.guard.aclose()
        if timed_out:
            killed = kill_browser_processes()
            log.warning("Browser close timed out; killed %d leftover processes.", killed)
