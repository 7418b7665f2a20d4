"""One Playwright driver and one Chromium per process; a context handed to each session.

:class:`BrowserPool` launches lazily on the loop thread, keeps one spare context warm so a new
session can browse at once, and relaunches Chromium on next use after a crash. It owns the web
policy's :class:`~sidekick.web.guard.Guard` (started before Chromium, closed last) and tells each
session's :class:`~sidekick.browser.context.SessionBrowser` about the requests the guard stopped in
its context. Every await on the browser has a timeout; close order is contexts, browser, Playwright,
guard; a browser that will not close is killed by PID (its own processes only).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from typing import TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from sidekick.browser.chromium import find_browser, launch_args
from sidekick.browser.context import CRASHED, PreparedContext, Report, SessionBrowser, Timeouts, first_line
from sidekick.browser.state import BrowserState
from sidekick.closing import close_quietly
from sidekick.config import Settings
from sidekick.errors import BrowserCrashedError, BrowserError, BrowserUnavailableError, SessionClosedError
from sidekick.procs import browser_main_pids, driver_pids, kill_trees
from sidekick.web.guard import Guard

log = logging.getLogger(__name__)
T = TypeVar("T")

VIEWPORT = {"width": 1280, "height": 800}


async def _bounded(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise BrowserError(f"{what} took longer than {seconds:g} s.") from None


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
        self._spare: PreparedContext | None = None
        self._spare_task: asyncio.Task[None] | None = None
        self._live: dict[BrowserContext, SessionBrowser] = {}  # handed-out contexts and their sessions
        self._closed = False
        self.launches = 0
        self.crashes = 0
        self.executable: str | None = None
        self._browser_pid: int | None = None
        self._driver_pid: int | None = None

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
        """Contexts handed to sessions and still usable (the warm spare is not one)."""
        return sum(1 for s in self._live.values() if s.alive)

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
                drivers_before = await asyncio.to_thread(driver_pids)
                self._playwright = await _bounded(
                    async_playwright().start(), self.timeouts.launch, "Starting Playwright"
                )
                # Known by PID so that a close that hangs kills this pool's driver, not another's.
                new_drivers = await asyncio.to_thread(driver_pids) - drivers_before
                self._driver_pid = min(new_drivers) if len(new_drivers) == 1 else None
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
                        f"Chromium at {executable} could not be started: {first_line(exc)}"
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
        await close_quietly(browser.close(), self.timeouts.close, "Closing a crashed Chromium")

    async def _stop_playwright(self) -> None:
        pw, self._playwright = self._playwright, None
        if pw is not None:
            await close_quietly(pw.stop(), self.timeouts.close, "Stopping Playwright")

    async def _new(self, state: BrowserState | None = None) -> PreparedContext:
        browser = await self._ensure_browser()
        generation = self._generation
        try:
            context = await _bounded(
                browser.new_context(
                    viewport=VIEWPORT,  # type: ignore[arg-type]
                    accept_downloads=self.settings.allow_downloads,
                    # Service workers' requests would bypass the web policy's routing.
                    service_workers="block",
                    storage_state=state.storage if state is not None else None,  # type: ignore[arg-type]
                ),
                self.timeouts.context,
                "Opening a browser context",
            )
        except PlaywrightError:
            if not self.browser_connected():
                raise BrowserCrashedError(CRASHED) from None
            raise
        try:
            if self.guard is not None:
                report = functools.partial(self._blocked, context)
                await _bounded(self.guard.install(context, report), self.timeouts.context, "Installing the web policy")
            page = await _bounded(context.new_page(), self.timeouts.context, "Opening a page")
        except BaseException:
            await close_quietly(context.close(), self.timeouts.close, "Closing a half-opened context")
            raise
        return PreparedContext(context, page, generation)

    def _blocked(self, context: BrowserContext, url: str, reason: str) -> None:
        # The guard was installed before anyone owned the context (a spare): find its owner now.
        owner = self._live.get(context)
        if owner is not None:
            owner.blocked(url, reason)

    async def _refill_spare(self) -> None:
        try:
            spare = await self._new()
        except Exception as exc:  # a spare is an optimisation; the next session just waits
            log.info("Could not warm a spare context: %s", exc)
            return
        if self._closed or self._spare is not None:
            await spare.aclose(self.timeouts.close)
        else:
            self._spare = spare

    def schedule_spare(self) -> None:
        idle = self._spare_task is None or self._spare_task.done()
        if self._warm_spare and not self._closed and self._spare is None and idle:
            self._spare_task = asyncio.get_running_loop().create_task(self._refill_spare())

    async def new_session_browser(
        self, report: Report | None = None, state: BrowserState | None = None
    ) -> SessionBrowser:
        """A fresh context and page for one session (the warm spare when there is one); ``report``
        hears of every request the web policy stops in it. With a saved ``state`` the context opens
        with its cookies and local storage (not the spare, which has none); the caller goes back to
        ``state.url`` itself."""
        if self._closed:
            raise SessionClosedError("The browser pool is shut down.")
        if state is not None and state.empty:
            state = None
        prepared = None
        if state is None:
            prepared, self._spare = self._spare, None
        if prepared is not None and not self.is_current(prepared.generation):
            await prepared.aclose(self.timeouts.close)
            prepared = None
        if prepared is None:
            prepared = await self._new(state)
        # No refill here: warming a context costs Chromium about 0.1 s of CPU, and started now it
        # competes with this session's first page load (measured on 2 cores: navigate + screenshot
        # 179 ms with the refill running alongside, 92 ms without). The session asks for it once
        # its first page is open (SessionBrowser.goto), or when it closes (forget).
        if self._closed or not self.is_current(prepared.generation):
            await prepared.aclose(self.timeouts.close)
            raise SessionClosedError("The browser pool is shut down.") if self._closed else BrowserCrashedError(CRASHED)
        sb = SessionBrowser(self, prepared, report)
        self._live[prepared.context] = sb
        return sb

    async def warm(self) -> None:
        """Launch now and have a spare ready (used at start-up, so the first session is quick)."""
        if self._spare is None:
            self.schedule_spare()
        if self._spare_task is not None:
            await asyncio.shield(self._spare_task)

    def forget(self, sb: SessionBrowser) -> None:
        """A session's context is closing: it is no longer this pool's to close."""
        if self._live.get(sb.context) is sb:
            del self._live[sb.context]
        if not self._closed:
            self.schedule_spare()

    # -- closing -------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close every context, then Chromium, then the driver. Idempotent and bounded."""
        if self._closed:
            return
        self._closed = True
        task, self._spare_task = self._spare_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=self.timeouts.close)
        launching = self._launching
        if launching is not None and not launching.done():
            await asyncio.wait([launching], timeout=self.timeouts.launch + 5)
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare.aclose(self.timeouts.close)
        for sb in list(self._live.values()):
            await sb.aclose()
        own = [pid for pid in (self._browser_pid, self._driver_pid) if pid is not None]
        browser, self._browser = self._browser, None
        closed = True
        if browser is not None:
            closed = await close_quietly(browser.close(), self.timeouts.close, "Closing Chromium")
        pw, self._playwright = self._playwright, None
        if pw is not None:
            closed = await close_quietly(pw.stop(), self.timeouts.close, "Stopping Playwright") and closed
        if self.guard is not None:
            await close_quietly(self.guard.aclose(), self.timeouts.close, "Closing the web policy guard")
        if not closed:
            # Only this pool's Chromium and driver (and what they started): other pools in the
            # process (tests, benchmarks) keep theirs.
            killed = await asyncio.to_thread(kill_trees, own)
            log.warning("Browser close timed out; killed %d leftover processes.", killed)

