"""The live view: a session's current page as JPEG frames from Chromium's screencast, while a tab watches.

:class:`Screencast` is Playwright's ``page.screencast`` on one page, keeping only the newest frame.
Chromium sends a frame only when the page repaints, so a still page sends nothing, and it keeps at
most two frames unacknowledged: the frame callback holds each acknowledgement until ``1/fps`` has
passed since the previous frame, which caps the rate at the source (Chromium encodes no frame
nobody will see; after a still spell, two may come close together).

:class:`LiveView` follows one :class:`~sidekick.browser.context.SessionBrowser`: when its current page
changes (a popup, a new tab, a closed tab) the cast moves to the new page, and frames the old page
sends meanwhile are dropped. Chromium drops a screencast started while a navigation swaps the page's
renderer (it never sends a frame again), and a tab opens the view just as the agent's first
navigation runs. So a cast that has sent nothing since a navigation during or just after its start
(:data:`LOST_SECONDS`), or since its start (:data:`LOST_MAX_SECONDS`), is started again. It ends itself when nobody
has asked for a frame for :data:`LEASE_SECONDS` (the tab closed, was hidden or stopped following a
run) and when the browser closes (Reset, idle, the session's end).

:class:`LiveViews` keeps one view per session for the facade. Two ways to watch:

- :meth:`LiveViews.frame`, from any thread (the dashboard's script threads): the newest frame, at
  once; it renews the view's lease and, when there is no view yet, asks the loop thread to open one.
- :meth:`LiveViews.frames`, an async iterator for any event loop (the web server's, which streams
  the frames to the tab as MJPEG): each frame as soon as the frame callback has it. It is reached
  by a *ticket* (:meth:`LiveViews.ticket`), a random name for one session's view that a tab puts
  in its image's address; the ticket is revoked when the view is stopped (Reset, the tab's end).
  Waiting for a frame renews the lease, so the cast runs while a stream is connected.

Everything else runs on the loop thread. Every path that ends a view stops its screencast,
bounded: the lease running out, the browser closing, :meth:`LiveViews.stop` (Reset, the tab's end)
and :meth:`LiveViews.aclose` (exit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame as PageFrame
from playwright.async_api import Page, ScreencastFrame

from sidekick.browser.context import SessionBrowser
from sidekick.closing import close_quietly
from sidekick.errors import SidekickError

log = logging.getLogger(__name__)

LEASE_SECONDS = 3.0
"""A view nobody asked a frame of for this long is stopped."""
FOLLOW_SECONDS = 0.25
"""How often a view checks which page is current (a page that stopped painting sends no frame)."""
REOPEN_SECONDS = 0.5
"""How soon a tab asking for a frame of a session without a view asks for one again."""
WAIT_SECONDS = 1.0
"""The longest a stream waits for a frame before it renews the lease and waits again."""
LOST_SECONDS = 1.0
"""A cast that has sent no frame this long since a navigation that may have raced its start is
started again (Chromium drops a screencast started while a navigation swaps the page's renderer; a
new document paints at once)."""
LOST_MAX_SECONDS = 8.0
"""The wait for a frame from a cast silent since its start, and before a second start for silence:
on a busy machine a first frame may simply be late, and starting casts again and again there
only keeps them from sending it (and each start may race the agent's next navigation)."""
RACE_SECONDS = 1.0
"""A navigation this soon after a cast's start (or during it) may have raced it."""
START_SECONDS = 5.0
STOP_SECONDS = 2.0
QUALITY = 70
FRAME_SIZE = {"width": 800, "height": 800}  # scaled down to fit, keeping the page's shape


@dataclass(frozen=True)
class Frame:
    """One JPEG frame of the session's page."""

    jpeg: bytes
    seq: int
    """Counts up across the view's frames (and pages): a tab draws a frame only when this moved."""
    taken_at: float
    """When Chromium produced it (wall clock, seconds)."""
    url: str


class Screencast:
    """Chromium's screencast of one page. States: new → casting → stopped (final); ``aclose`` is idempotent."""

    def __init__(self, page: Page, on_frame: Callable[[bytes, float], bool], *, fps: float) -> None:
        self.page = page
        self._on_frame = on_frame
        self._gap = 1.0 / fps
        self._last = 0.0
        self._frame_at = 0.0  # when the last frame came (monotonic)
        self._started_at = 0.0  # when the start began (and the navigation listener was added)
        self._navigated_at: float | None = None  # the last main-frame navigation the start may have raced
        self._cast_at = 0.0  # when the start ended
        self.frames = 0
        self.casting = False
        self.stopped = False

    async def start(self, timeout: float = START_SECONDS) -> None:
        if self.stopped or self.casting:
            raise SidekickError("A screencast starts once.")
        self.page.on("framenavigated", self._navigated)
        self._started_at = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await self.page.screencast.start(on_frame=self._frame, quality=QUALITY, size=FRAME_SIZE)  # type: ignore[arg-type]
        except BaseException:
            # Playwright marks the page's screencast started before it asks Chromium: a start that
            # failed or was cut short must be stopped, or the page can never be cast again.
            await close_quietly(self.page.screencast.stop(), STOP_SECONDS, "Stopping a screencast that did not start")
            raise
        self._cast_at = time.monotonic()
        self.casting = True

    def _navigated(self, frame: PageFrame) -> None:
        # Only a navigation during the start or just after it can have raced it: a cast that was
        # running before a navigation follows the page to its new renderer.
        now = time.monotonic()
        if frame is self.page.main_frame and (not self.casting or now - self._cast_at <= RACE_SECONDS):
            self._navigated_at = now

    def lost(self, patience: float = LOST_SECONDS) -> bool:
        """Whether Chromium seems to have dropped the cast: no frame has come for ``patience`` s since
        a navigation that may have raced its start (a new document paints at once), or for
        :data:`LOST_MAX_SECONDS` since its start (a fresh cast sends the page as it is at once)."""
        if not self.casting:
            return False
        now = time.monotonic()
        if self._navigated_at is not None and self._frame_at < self._navigated_at:
            return now - self._navigated_at > patience
        # Silent since the start and no navigation seen: most likely just a busy machine, so only
        # after a long wait (a navigation that committed just before the start can race it too).
        return self._frame_at < self._started_at and now - self._started_at > LOST_MAX_SECONDS

    def _frame(self, raw: ScreencastFrame) -> Awaitable[None] | None:
        if self.stopped:
            return None
        now = time.monotonic()
        self._frame_at = now
        if self._on_frame(raw["data"], raw["timestamp"] / 1000):
            self.frames += 1
        wait = self._last + self._gap - now
        self._last = max(now, self._last + self._gap)
        # Playwright acknowledges the frame to Chromium once this returns (or its awaitable ends),
        # and Chromium sends no next frame before: holding it here is the frame-rate cap.
        return asyncio.sleep(wait) if wait > 0 else None

    async def aclose(self, timeout: float = STOP_SECONDS) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._started_at:
            self.page.remove_listener("framenavigated", self._navigated)
        if self.casting and not self.page.is_closed():
            await close_quietly(self.page.screencast.stop(), timeout, "Stopping a screencast")
        self.casting = False


class LiveView:
    """The screencast of whichever page is a session's current one, while someone watches.

    States: new → live → ended (final). Lives on the loop thread; :attr:`frame` and :meth:`watched`
    are safe from any thread. :meth:`newer` (loop thread) waits for the next frame or the end.
    """

    def __init__(self, browser: SessionBrowser, *, fps: float, lease: float = LEASE_SECONDS) -> None:
        self._browser = browser
        self._fps = fps
        self._lease = lease
        self._cast: Screencast | None = None
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self.frame: Frame | None = None
        self._fresh = asyncio.Event()  # set (and replaced) at each frame kept, and at the end
        self.watched_at = time.monotonic()
        self.ended = False
        self.casts = 0  # pages cast so far (a popup or a tab switch starts another)
        self._silent_restarts = 0  # casts started again for silence since the last frame came

    @property
    def browser(self) -> SessionBrowser:
        return self._browser

    @property
    def cast(self) -> Screencast | None:
        return self._cast

    def watched(self) -> None:
        self.watched_at = time.monotonic()

    async def newer(self, seq: int, timeout: float) -> Frame | None:
        """The newest frame, waiting up to ``timeout`` s for one whose number is not ``seq`` (loop thread)."""
        if not self.ended and (self.frame is None or self.frame.seq == seq):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._fresh.wait()
        return self.frame

    def _wake(self) -> None:
        fresh, self._fresh = self._fresh, asyncio.Event()
        fresh.set()

    async def start(self) -> None:
        await self._follow()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="sidekick-live-view")

    def _current(self) -> Page | None:
        try:
            return self._browser.page
        except SidekickError:  # closed or crashed: nothing to show
            return None

    async def _follow(self) -> None:
        """Cast the current page, if it is not the one being cast."""
        page = self._current()
        if page is None or page.is_closed():
            return
        cast = self._cast
        if cast is not None and cast.page is page and not cast.stopped:
            if not cast.lost(LOST_MAX_SECONDS if self._silent_restarts else LOST_SECONDS):
                return
            self._silent_restarts += 1
            log.debug("The live view of %s sent no frame since its start or navigation; starting it again", page.url)
        self._cast = None
        if cast is not None:
            await cast.aclose()
        cast = Screencast(page, lambda jpeg, at: self._keep(page, jpeg, at), fps=self._fps)
        try:
            await cast.start()
        except (PlaywrightError, TimeoutError, SidekickError) as exc:
            log.info("No live view of %s: %s", page.url, str(exc) or "timed out")
            await cast.aclose()
            return
        self._cast = cast
        self.casts += 1

    def _keep(self, page: Page, jpeg: bytes, taken_at: float) -> bool:
        if self.ended or self._current() is not page:  # the old page after a tab switch
            return False
        self._seq += 1
        self._silent_restarts = 0
        self.frame = Frame(jpeg=jpeg, seq=self._seq, taken_at=taken_at, url=page.url)
        self._wake()
        return True

    async def _watch(self) -> None:
        try:
            while not self.ended:
                await asyncio.sleep(FOLLOW_SECONDS)
                if time.monotonic() - self.watched_at > self._lease or not self._browser.alive:
                    break
                await self._follow()
        finally:
            if not self.ended:
                await self._end()

    async def _end(self) -> None:
        self.ended = True
        self._wake()
        cast, self._cast = self._cast, None
        if cast is not None:
            await cast.aclose()

    async def aclose(self) -> None:
        """Stop the screencast and the follower. Idempotent, bounded."""
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task], timeout=STOP_SECONDS)
        if not self.ended:
            await self._end()


Submit = Callable[[Coroutine[Any, Any, Any]], "concurrent.futures.Future[Any] | asyncio.Future[Any]"]
"""Schedules a coroutine on the loop thread from any thread (the facade's ``runtime.submit``)."""
BrowserOf = Callable[[str], Awaitable[SessionBrowser | None]]
"""A session's open browser, or None (never opens one)."""


class LiveViews:
    """One :class:`LiveView` per session id. States: open → closed (final); ``aclose`` is idempotent."""

    def __init__(self, browser_of: BrowserOf, submit: Submit, *, fps: float, lease: float = LEASE_SECONDS) -> None:
        self._browser_of = browser_of
        self._submit = submit
        self.fps = fps
        self._lease = lease
        self._views: dict[str, LiveView] = {}
        self._asked: dict[str, float] = {}
        self._tickets: dict[str, str] = {}  # ticket -> session id
        self._ticket_of: dict[str, str] = {}  # session id -> ticket
        self._tickets_lock = threading.Lock()  # tickets are handed out and read from any thread
        self._closed = False

    def __len__(self) -> int:
        return sum(1 for v in self._views.values() if not v.ended)

    def view(self, session_id: str) -> LiveView | None:
        return self._views.get(session_id)

    def frame(self, session_id: str) -> Frame | None:
        """The newest frame of the session's page (any thread), at once; asking renews the view's
        lease, and opens the view if there is none (then it returns None)."""
        view = self._views.get(session_id)
        if view is not None and not view.ended:
            view.watched()
            return view.frame
        now = time.monotonic()
        if not self._closed and now - self._asked.get(session_id, 0.0) >= REOPEN_SECONDS:
            self._asked[session_id] = now
            try:
                self._submit(self.open(session_id))
            except SidekickError:  # the loop has stopped: there is nothing to watch
                pass
        return None

    def ticket(self, session_id: str) -> str | None:
        """The name of the session's view for :meth:`frames` (any thread): the same until the view
        is stopped, then a new one; None once closed. It is a capability: whoever has it may watch."""
        with self._tickets_lock:
            if self._closed:
                return None
            ticket = self._ticket_of.get(session_id)
            if ticket is None:
                ticket = secrets.token_urlsafe(24)
                self._ticket_of[session_id], self._tickets[ticket] = ticket, session_id
            return ticket

    def release(self, session_id: str) -> None:
        """Revoke the session's ticket (any thread): its streams end within ``WAIT_SECONDS``, and the
        view, unless asked for again, ends when its lease runs out. For a tab that stopped showing
        the live image (the run ended, the tab was hidden): a browser may keep loading an image it
        no longer shows, so the server ends the stream."""
        with self._tickets_lock:
            ticket = self._ticket_of.pop(session_id, None)
            if ticket is not None:
                self._tickets.pop(ticket, None)

    def _session_of(self, ticket: str) -> str | None:
        with self._tickets_lock:
            return self._tickets.get(ticket)

    def frames(self, ticket: str, *, wait: float = WAIT_SECONDS) -> AsyncIterator[Frame] | None:
        """Each new frame of the ticket's view, for a consumer on any event loop; None for an unknown
        ticket. It ends when the ticket is revoked (Reset, the tab's end, exit). While someone
        iterates, the view's lease is renewed (at least every ``wait`` s) and the view reopened
        when it ended but its session's browser is open again."""
        if self._session_of(ticket) is None:
            return None
        return self._frames(ticket, wait)

    async def _frames(self, ticket: str, wait: float) -> AsyncIterator[Frame]:
        seq = 0
        while True:
            try:
                future = self._submit(self._next(ticket, seq, wait))
            except SidekickError:  # the loop has stopped
                return
            # Cancelling this await (the consumer went away) cancels the wait on the loop thread too.
            live, frame = await asyncio.wrap_future(future)  # an asyncio future stays as it is
            if not live:
                return
            if frame is not None and frame.seq != seq:
                seq = frame.seq
                yield frame

    async def _next(self, ticket: str, seq: int, wait: float) -> tuple[bool, Frame | None]:
        """(Whether the ticket is still good, the newest frame after waiting up to ``wait`` s for one
        numbered other than ``seq``) (loop thread)."""
        session_id = self._session_of(ticket)
        if session_id is None:  # revoked (closing revokes every ticket)
            return False, None
        view = self._views.get(session_id)
        if view is None or view.ended:
            view = await self.open(session_id)
        if view is None or view.ended:  # no browser open (yet): look again soon
            await asyncio.sleep(min(wait, REOPEN_SECONDS))
            return self._session_of(ticket) is not None, None
        view.watched()
        frame = await view.newer(seq, wait)
        return self._session_of(ticket) is not None, frame

    async def open(self, session_id: str) -> LiveView | None:
        """The session's view, started if its browser is open (loop thread)."""
        view = self._views.get(session_id)
        if self._closed or (view is not None and not view.ended):
            return view
        browser = await self._browser_of(session_id)
        if browser is None or not browser.alive or self._closed:
            return None
        current = self._views.get(session_id)
        if current is not None and not current.ended:  # another open won the race
            return current
        view = LiveView(browser, fps=self.fps, lease=self._lease)
        self._views[session_id] = view
        await view.start()
        return view

    async def stop(self, session_id: str) -> None:
        """End the session's view and revoke its ticket (Reset, the tab's end)."""
        self.release(session_id)
        view = self._views.pop(session_id, None)
        self._asked.pop(session_id, None)
        if view is not None:
            await view.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        with self._tickets_lock:
            self._closed = True
            self._tickets.clear()
            self._ticket_of.clear()
        for session_id in list(self._views):
            await self.stop(session_id)
