"""One Playwright driver per process, its browsers, and a context handed to each session.

:class:`BrowserPool` opens its browsers lazily on the loop thread: one Chromium launched here, or,
with ``SIDEKICK_BROWSER_ENDPOINTS``, one connection per browser server
(:mod:`sidekick.browser.endpoints`). A new session's context goes to the least-loaded connected
endpoint. It keeps one spare context warm so a new session can browse at once (on remote endpoints:
one spare, on the least-loaded). A local Chromium that crashed relaunches on next use; a remote
endpoint that dropped is retried in the background with backoff (1 s doubling to 30 s, until the
pool closes), and the sessions it held open their next context elsewhere. It owns the web policy's
:class:`~sidekick.web.guard.Guard` (started before any browser, closed last): a local Chromium uses
its SOCKS proxy through launch flags, each remote context gets its own credentials on the guard's
HTTP proxy (revoked when the context closes), and every context gets the guard's routing checks.
Every await on a browser has a timeout; close order is contexts (each, awaited, also on remote
browsers, where disconnecting alone would leave a DevTools endpoint's contexts open), browsers,
Playwright, guard; a local browser that will not close is killed by PID (its own processes only).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable
from typing import TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from sidekick.browser.chromium import find_browser, launch_args
from sidekick.browser.context import CRASHED, PreparedContext, Report, SessionBrowser, Timeouts, first_line
from sidekick.browser.endpoints import Endpoint, EndpointStatus, backoff, connect, launch_headers, parse_endpoints
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
    """The process's Playwright driver and browsers, opened lazily; contexts handed to sessions.

    All methods must run on the loop thread. Each :class:`Endpoint` is down ⇄ up; closed is final
    for the pool. A crash or a dropped connection moves an endpoint down (see the module docstring).
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
        self.endpoints: tuple[Endpoint, ...] = tuple(
            Endpoint(spec) for spec in parse_endpoints(settings.browser_endpoints)
        ) or (Endpoint(),)
        self._playwright: Playwright | None = None
        self._driver_lock = asyncio.Lock()
        self._generations = itertools.count(1)
        self._by_generation: dict[int, Endpoint] = {}
        self._spare: PreparedContext | None = None
        self._spare_task: asyncio.Task[None] | None = None
        self._live: dict[BrowserContext, SessionBrowser] = {}  # handed-out contexts and their sessions
        self._closed = False
        self.launches = 0
        self.crashes = 0
        self.executable: str | None = None
        self._driver_pid: int | None = None

    # -- state ---------------------------------------------------------------------------------
    def is_current(self, generation: int) -> bool:
        ep = self._by_generation.get(generation)
        return ep is not None and ep.generation == generation and ep.connected

    def browser_connected(self) -> bool:
        return any(ep.connected for ep in self.endpoints)

    def crash_message(self, generation: int) -> str:
        """What a session hears when the browser of ``generation`` is gone: plain, and what happens next."""
        ep = self._by_generation.get(generation)
        if ep is None or not ep.remote:
            return CRASHED
        where = "on another browser server" if len(self.endpoints) > 1 else "once the server is back"
        return f"The connection to the browser server {ep.name} was lost. Your next action opens the browser {where}."

    @property
    def open_contexts(self) -> int:
        """Contexts our browsers have open now (sessions' plus the warm spare)."""
        return sum(len(ep.contexts) for ep in self.endpoints if ep.connected)

    @property
    def session_contexts(self) -> int:
        """Contexts handed to sessions and still usable (the warm spare is not one)."""
        return sum(1 for s in self._live.values() if s.alive)

    @property
    def browser_pid(self) -> int | None:
        """The local Chromium's main process id (found by process accounting at launch)."""
        ep = self.endpoints[0]
        return ep.browser_pid if not ep.remote and ep.connected else None

    def endpoint_status(self) -> tuple[EndpointStatus, ...]:
        """Each remote endpoint: connected or not, and the contexts we hold there (empty when local)."""
        return tuple(
            EndpointStatus(ep.name, connected=True, contexts=len(ep.contexts))
            if ep.connected
            else EndpointStatus(ep.name, connected=False, contexts=0, problem=ep.problem)
            for ep in self.endpoints
            if ep.remote
        )

    # -- opening browsers ----------------------------------------------------------------------
    async def _ensure_browser(self, ep: Endpoint) -> Browser:
        if self._closed:
            raise SessionClosedError("The browser pool is shut down.")
        if ep.connected:
            return ep.browser  # type: ignore[return-value]
        # The open runs as its own task, shielded from its callers: a caller cancelled halfway (a
        # stopped run, a spare no longer wanted) must not leave a driver or Chromium without owner.
        if ep.opening is None or ep.opening.done():
            ep.opening = asyncio.get_running_loop().create_task(self._open(ep), name=f"sidekick-open-{ep.name}")
            ep.opening.add_done_callback(_retrieve)
        return await asyncio.shield(ep.opening)

    async def _open(self, ep: Endpoint) -> Browser:
        # Only one open task exists per endpoint at a time (see _ensure_browser), so no lock is needed.
        if ep.connected:
            return ep.browser  # type: ignore[return-value]
        await self._drop(ep)
        try:
            browser = await (self._connect(ep) if ep.remote else self._launch(ep))
        except Exception as exc:
            if ep.remote:
                ep.failures += 1
                ep.problem = first_line(exc)
                self._schedule_retry(ep)
            raise
        generation = next(self._generations)
        ep.generation, ep.failures, ep.problem = generation, 0, ""
        self._by_generation[generation] = ep
        browser.on("disconnected", lambda _b: self._on_disconnected(ep, generation))
        ep.browser = browser
        return browser

    async def _driver(self) -> Playwright:
        async with self._driver_lock:
            if self._playwright is None:
                drivers_before = await asyncio.to_thread(driver_pids)
                self._playwright = await _bounded(
                    async_playwright().start(), self.timeouts.launch, "Starting Playwright"
                )
                # Known by PID so that a close that hangs kills this pool's driver, not another's.
                new_drivers = await asyncio.to_thread(driver_pids) - drivers_before
                self._driver_pid = min(new_drivers) if len(new_drivers) == 1 else None
            return self._playwright

    async def _launch(self, ep: Endpoint) -> Browser:
        executable = find_browser(self.settings)
        args = launch_args()
        if self.guard is not None:
            await _bounded(self.guard.start(), self.timeouts.launch, "Starting the web policy proxy")
            args += self.guard.launch_args()
        mains_before = await asyncio.to_thread(browser_main_pids)
        for attempt in (1, 2):
            playwright = await self._driver()
            try:
                browser = await _bounded(
                    playwright.chromium.launch(
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
        self.launches += 1
        self.executable = executable
        new_mains = await asyncio.to_thread(browser_main_pids) - mains_before
        ep.browser_pid = min(new_mains) if len(new_mains) == 1 else None
        return browser

    async def _connect(self, ep: Endpoint) -> Browser:
        assert ep.spec is not None
        extra: list[str] = []
        if self.guard is not None:
            await _bounded(self.guard.start(), self.timeouts.launch, "Starting the web policy proxy")
            extra = self.guard.remote_launch_args()
        playwright = await self._driver()
        try:
            browser = await _bounded(
                connect(playwright, ep.spec, launch_headers(self.settings, extra), self.timeouts.launch),
                self.timeouts.launch + 2,
                f"Connecting to {ep.name}",
            )
        except (PlaywrightError, BrowserError) as exc:
            detail = first_line(exc).replace(ep.spec.url, ep.name)  # no token from the address
            raise BrowserUnavailableError(f"The browser server {ep.name} could not be reached: {detail}") from None
        self.launches += 1
        return browser

    def _on_disconnected(self, ep: Endpoint, generation: int) -> None:
        if generation != ep.generation or self._closed:
            return
        self.crashes += 1
        self._release(ep)
        if ep.remote:
            ep.drops += 1
            ep.problem = "the connection was lost"
            log.warning("Browser server %s disconnected; its sessions move on their next action.", ep.name)
            self._schedule_retry(ep)
        else:
            log.warning("Chromium disconnected (generation %s); it relaunches on next use.", generation)

    def _release(self, ep: Endpoint) -> None:
        """Forget what lived in ``ep``'s browser (gone with it): its contexts' proxy credentials are revoked."""
        contexts, ep.contexts = ep.contexts, {}
        for proxy in contexts.values():
            if proxy is not None:
                proxy.close()
        for context in [c for c, sb in self._live.items() if sb.generation == ep.generation]:
            del self._live[context]  # each of those sessions sees `alive` False
        if self._spare is not None and self._spare.generation == ep.generation:
            self._spare = None

    async def _drop(self, ep: Endpoint) -> None:
        """Forget a dead browser: its contexts are gone with it."""
        if ep.browser is None:
            return
        browser, ep.browser = ep.browser, None
        self._release(ep)
        await close_quietly(browser.close(), self.timeouts.close, f"Closing a lost browser ({ep.name})")

    def _schedule_retry(self, ep: Endpoint) -> None:
        if not self._closed and (ep.retrying is None or ep.retrying.done()):
            ep.retrying = asyncio.get_running_loop().create_task(self._retry(ep), name=f"sidekick-retry-{ep.name}")

    async def _retry(self, ep: Endpoint) -> None:
        """Try a remote endpoint again after 1, 2, 4 … 30 s until it connects or the pool closes."""
        while not self._closed and not ep.connected:
            await asyncio.sleep(backoff(ep.failures or 1))
            try:
                await self._ensure_browser(ep)
                log.info("Browser server %s is connected again.", ep.name)
            except Exception as exc:  # _open counted it; the loop waits longer next time
                log.info("Browser server %s is still unreachable: %s", ep.name, first_line(exc))

    async def _stop_playwright(self) -> None:
        pw, self._playwright = self._playwright, None
        if pw is not None:
            await close_quietly(pw.stop(), self.timeouts.close, "Stopping Playwright")

    async def _pick(self) -> Endpoint:
        """The endpoint for a new context: the least-loaded connected one (opening them if none is)."""
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        up = [ep for ep in self.endpoints if ep.connected]
        if not up:
            # Nothing is connected (first use, or every server dropped): try them all now, for a
            # session is waiting, and take the first that answers; the others go on connecting.
            pending = {asyncio.ensure_future(self._ensure_browser(ep)) for ep in self.endpoints}
            try:
                while pending and not any(ep.connected for ep in self.endpoints):
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        if not task.cancelled():
                            task.exception()  # seen: each failure is kept as its endpoint's problem
            finally:
                for task in pending:
                    task.cancel()  # only the wait: each open task is shielded and carries on
            up = [ep for ep in self.endpoints if ep.connected]
            if not up:
                if self._closed:
                    raise SessionClosedError("The browser pool is shut down.")
                problems = "; ".join(f"{ep.name}: {ep.problem}" for ep in self.endpoints)
                raise BrowserUnavailableError(f"No browser server answers ({problems}). Sidekick keeps trying.")
        return min(up, key=lambda ep: ep.load)

    # -- contexts ------------------------------------------------------------------------------
    async def _new(self, state: BrowserState | None = None) -> PreparedContext:
        ep = await self._pick()
        ep.opening_contexts += 1
        try:
            return await self._new_on(ep, state)
        finally:
            ep.opening_contexts -= 1

    async def _new_on(self, ep: Endpoint, state: BrowserState | None) -> PreparedContext:
        browser = await self._ensure_browser(ep)
        generation = ep.generation
        proxy = None
        if ep.remote and self.guard is not None:
            # A remote browser reaches the network only through the guard: its own credentials.
            proxy = await _bounded(self.guard.open_context_proxy(), self.timeouts.context, "Opening the policy proxy")
        try:
            context = await _bounded(
                browser.new_context(
                    viewport=VIEWPORT,  # type: ignore[arg-type]
                    accept_downloads=self.settings.allow_downloads,
                    # Service workers' requests would bypass the web policy's routing.
                    service_workers="block",
                    storage_state=state.storage if state is not None else None,  # type: ignore[arg-type]
                    proxy=proxy.playwright if proxy is not None else None,  # type: ignore[arg-type]
                ),
                self.timeouts.context,
                "Opening a browser context",
            )
        except BaseException as exc:
            if proxy is not None:
                proxy.close()
            if isinstance(exc, PlaywrightError) and not self.is_current(generation):
                raise BrowserCrashedError(self.crash_message(generation)) from None
            raise
        ep.contexts[context] = proxy
        context.on("close", lambda _c: self._context_closed(ep, context))
        try:
            if self.guard is not None:
                report = functools.partial(self._blocked, context)
                await _bounded(self.guard.install(context, report), self.timeouts.context, "Installing the web policy")
            page = await _bounded(context.new_page(), self.timeouts.context, "Opening a page")
        except BaseException:
            await close_quietly(context.close(), self.timeouts.close, "Closing a half-opened context")
            self._context_closed(ep, context)
            raise
        return PreparedContext(context, page, generation)

    @staticmethod
    def _context_closed(ep: Endpoint, context: BrowserContext) -> None:
        proxy = ep.contexts.pop(context, None)
        if proxy is not None:
            proxy.close()

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
            if self._closed:
                raise SessionClosedError("The browser pool is shut down.")
            raise BrowserCrashedError(self.crash_message(prepared.generation))
        sb = SessionBrowser(self, prepared, report)
        self._live[prepared.context] = sb
        return sb

    async def warm(self) -> None:
        """Open the browser now and have a spare ready (used at start-up, so the first session is quick)."""
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
        """Close every context, then the browsers, then the driver. Idempotent and bounded."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._spare_task, *(ep.retrying for ep in self.endpoints)) if t is not None]
        self._spare_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeouts.close)
        opening = [ep.opening for ep in self.endpoints if ep.opening is not None and not ep.opening.done()]
        if opening:
            await asyncio.wait(opening, timeout=self.timeouts.launch + 5)
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare.aclose(self.timeouts.close)
        for sb in list(self._live.values()):
            await sb.aclose()
        own = [pid for pid in (self.endpoints[0].browser_pid, self._driver_pid) if pid is not None]
        closed = True
        for ep in self.endpoints:
            browser, ep.browser = ep.browser, None
            if browser is not None:
                # Whatever context is still open (a session's close that timed out) is closed before
                # we disconnect: a remote browser may outlive our connection.
                for context in list(ep.contexts):
                    await close_quietly(context.close(), self.timeouts.close, "Closing a browser context")
                what = f"Disconnecting from {ep.name}" if ep.remote else "Closing Chromium"
                closed = await close_quietly(browser.close(), self.timeouts.close, what) and closed
            self._release(ep)
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
