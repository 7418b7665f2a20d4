"""One session's browser: its own BrowserContext (cookies, storage, pages) and its current page.

A :class:`SessionBrowser` is handed out by :class:`~sidekick.browser.pool.BrowserPool`, which keeps
the context's owner relation: the pool launched the browser, the session owns the context. Pages a
site opens become current by themselves. Every call on the page is bounded, and Playwright's failures
become typed Sidekick errors (:class:`BrowserTimeoutError`, :class:`BrowserCrashedError`,
:class:`SessionClosedError`, :class:`NavigationError`). :meth:`SessionBrowser.aclose` closes pages,
then the context; it is idempotent.

A JavaScript dialog (alert, confirm, prompt) freezes its page: no script, screenshot or snapshot
answers until it is closed. So the session holds an open dialog as :attr:`SessionBrowser.dialog`,
and a call that a dialog interrupts fails at once with :class:`DialogOpenError` (the call itself
finishes when the dialog is answered) instead of waiting out its timeout. The dialog stays open for
:meth:`SessionBrowser.answer_dialog` and is dismissed by :meth:`SessionBrowser.dismiss_dialog`, or
after :data:`DIALOG_SECONDS` so that a run that ended never leaves a page frozen.

Each page's documents are counted (:meth:`SessionBrowser.document`): element refs are numbered anew
in every document, so a ref read from one must never be used on the next.

What the session would lose with its context (cookies, local storage, the page it is on) is read by
:meth:`SessionBrowser.capture_state`, while the context is alive: a crashed one cannot be read.
:meth:`SessionBrowser.changed` wakes its owner after each call on the page and each navigation, so the
owner can save it a moment later, off the agent's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from playwright.async_api import BrowserContext, CDPSession, Dialog, Frame, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from sidekick.browser.snapshot import Snapshot
from sidekick.browser.state import BrowserState
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
DIALOG_SECONDS = 60.0  # an unanswered dialog is dismissed after this, so no page stays frozen

# Each frame's origin and local storage, read in the page (opaque origins and storage a sandbox
# refuses give no origin). Playwright's storage_state() reads the same from open frames, but visits
# every origin the context has ever seen and has no frame open now in a hidden page: about 200 ms
# for one such origin (measured), where this costs a few ms; see capture_state.
_LOCAL_STORAGE = """() => {
  try {
    if (location.origin === "null") return null;
    const items = [];
    for (let i = 0; i < localStorage.length; i++) {
      const name = localStorage.key(i);
      items.push({name, value: localStorage.getItem(name)});
    }
    return {origin: location.origin, localStorage: items};
  } catch (e) { return null; }
}"""


class DialogOpenError(BrowserError):
    """A JavaScript dialog opened while a call was waiting on the page; the page waits for it."""


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
        self.snapshot: Snapshot | None = None
        """The latest snapshot the tools took; element refs resolve against it."""
        self.dialog: Dialog | None = None
        self._dialog_opened = asyncio.Event()
        self._dialog_timer: asyncio.TimerHandle | None = None
        self._parked: set[asyncio.Future[Any]] = set()  # calls a dialog interrupted
        self._documents: dict[int, int] = {}
        self._signals: dict[int, tuple[CDPSession, str]] = {}
        self._background: set[asyncio.Future[Any]] = set()
        self._changed = asyncio.Event()
        self._context.on("page", self._on_page)
        self._watch_page(self._page)

    def _on_page(self, page: Page) -> None:
        # Popups and target=_blank links become the page the agent works on.
        self._page = page
        self._watch_page(page)

    def _watch_page(self, page: Page) -> None:
        key = id(page)
        self._documents[key] = 0

        def navigated(frame: Frame) -> None:
            if frame.parent_frame is None:
                self._documents[key] = self._documents.get(key, 0) + 1
                self._changed.set()

        def closed(_page: Page) -> None:
            self._documents.pop(key, None)
            self._signals.pop(key, None)

        page.on("framenavigated", navigated)
        page.on("dialog", self._on_dialog)
        page.on("close", closed)
        task = asyncio.ensure_future(self._open_signals(page))
        self._background.add(task)
        task.add_done_callback(_settle_quietly(self._background))

    async def _open_signals(self, page: Page) -> None:
        """A DevTools session on ``page`` for the browser's early signals: Chromium reports that a
        click asked for a navigation or a window before Playwright's own click returns, while
        Playwright's request and page events may come later. Without it actions still work; they
        just cannot expect a new tab before it appears."""
        with contextlib.suppress(PlaywrightError, TimeoutError):
            async with asyncio.timeout(self._pool.timeouts.action):
                cdp = await self._context.new_cdp_session(page)
                await cdp.send("Page.enable")
                tree = await cdp.send("Page.getFrameTree")
                self._signals[id(page)] = (cdp, str(tree["frameTree"]["frame"]["id"]))

    def signals(self, page: Page) -> tuple[CDPSession, str] | None:
        """``page``'s DevTools session and its main frame's id, once open (see _open_signals)."""
        return self._signals.get(id(page))

    def document(self, page: Page) -> int:
        """How many times ``page``'s main frame has navigated: a snapshot's refs hold for one value."""
        return self._documents.get(id(page), 0)

    # -- dialogs -------------------------------------------------------------------------------
    def _on_dialog(self, dialog: Dialog) -> None:
        if self.dialog is not None or self._closed:
            # One at a time: a second (another tab's) is dismissed so it cannot freeze its page.
            self._spawn(dialog.dismiss())
            return
        self.dialog = dialog
        self._dialog_opened.set()
        self._dialog_timer = asyncio.get_running_loop().call_later(
            DIALOG_SECONDS, lambda: self._spawn(self.dismiss_dialog())
        )

    def describe_dialog(self) -> str:
        """``a confirm dialog: "Sure?"`` (the message is the site's, flattened and defused)."""
        dialog = self.dialog
        if dialog is None:
            return "no dialog"
        message = line_of(dialog.message, 300)
        kind = "an alert" if dialog.type == "alert" else f"a {dialog.type}"
        default = ""
        if dialog.type == "prompt" and dialog.default_value:
            default = f' (default answer "{line_of(dialog.default_value)}")'

        return f'{kind} dialog: "{message}"{default}'

    async def answer_dialog(self, accept: bool, text: str | None = None, timeout: float = 5.0) -> str:
        """Accept (with ``text`` for a prompt) or dismiss the open dialog; what it was."""
        dialog = self.dialog
        if dialog is None:
            raise BrowserError("No dialog is open.")
        what = self.describe_dialog()
        self._clear_dialog()
        try:
            async with asyncio.timeout(timeout):
                if accept:
                    await dialog.accept(text) if text is not None else await dialog.accept()
                else:
                    await dialog.dismiss()
        except (PlaywrightError, TimeoutError) as exc:
            self._check_usable()
            raise BrowserError(f"Answering the dialog failed: {first_line(exc) or 'timed out'}") from None
        await self._finish_parked(timeout)
        return what

    async def dismiss_dialog(self, timeout: float = 5.0) -> str | None:
        """Dismiss the open dialog, if any; what it was."""
        if self.dialog is None:
            return None
        with contextlib.suppress(BrowserError, SessionClosedError):
            return await self.answer_dialog(False, timeout=timeout)
        return None

    def _clear_dialog(self) -> None:
        self.dialog = None
        self._dialog_opened.clear()
        if self._dialog_timer is not None:
            self._dialog_timer.cancel()
            self._dialog_timer = None

    async def _finish_parked(self, timeout: float) -> None:
        """Let the calls the dialog interrupted end (they do once it is closed); their results are moot."""
        parked, self._parked = list(self._parked), set()
        if parked:
            await asyncio.wait(parked, timeout=timeout)
            for future in parked:
                if not future.done():
                    future.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._parked.add(task)
        task.add_done_callback(_settle_quietly(self._parked))

    async def _unless_dialog(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or DialogOpenError as soon as a dialog blocks the page."""
        if self.dialog is not None:
            raise DialogOpenError(f"The page is showing {self.describe_dialog()}; answer it with handle_dialog.")
        task = asyncio.ensure_future(awaitable)
        opened = asyncio.ensure_future(self._dialog_opened.wait())
        try:
            await asyncio.wait({task, opened}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            opened.cancel()
        if task.done():
            return task.result()
        self._parked.add(task)
        task.add_done_callback(_settle_quietly(self._parked))
        raise DialogOpenError(f"The page opened {self.describe_dialog()}.")

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
            raise BrowserCrashedError(self._pool.crash_message(self.generation))

    async def call(self, fn: Callable[[Page], Awaitable[T]], *, timeout: float, what: str) -> T:
        """Run ``fn(page)`` with a timeout, turning Playwright failures into Sidekick errors."""
        page = self.page
        try:
            async with asyncio.timeout(timeout):
                return await self._unless_dialog(fn(page))
        except (TimeoutError, PlaywrightTimeoutError):
            self._check_usable()
            raise BrowserTimeoutError(f"{what} did not finish within {timeout:g} s.") from None
        except PlaywrightError as exc:
            self._check_usable()  # closed or crashed says so plainly
            if self.dialog is not None:
                raise DialogOpenError(f"The page is showing {self.describe_dialog()}.") from None
            if "closed" in str(exc) or page.is_closed():
                # The driver may report the closed target before the browser's disconnect event.
                for _ in range(20):
                    if not self._pool.is_current(self.generation):
                        raise BrowserCrashedError(self._pool.crash_message(self.generation)) from None
                    await asyncio.sleep(0.05)
            raise BrowserError(f"{what} failed: {first_line(exc)}") from None
        finally:
            self._changed.set()  # whatever it did (a click that signs in, a form) may have changed the state

    async def goto(self, url: str, timeout: float | None = None) -> Screenshot:
        try:
            return await self._goto(url, timeout)
        finally:
            # The page is open and shown (or failed): now the pool may warm its next spare without
            # slowing this load down (see BrowserPool.new_session_browser).
            self._pool.schedule_spare()

    async def _goto(self, url: str, timeout: float | None) -> Screenshot:
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
        except (BrowserCrashedError, DialogOpenError):
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
        for attempt in (1, 2):
            try:
                png = await self.call(
                    lambda p: p.screenshot(type="png", timeout=timeout * 1000, animations="disabled"),
                    timeout=timeout + 1,
                    what="Taking a screenshot",
                )
                break
            except BrowserError as exc:
                # Chromium now and then refuses a capture while a new tab is being shown; the
                # second asks once it has.
                if attempt == 2 or "Unable to capture screenshot" not in str(exc):
                    raise
        page = self.page
        title = ""
        with contextlib.suppress(PlaywrightError, TimeoutError):
            async with asyncio.timeout(2):
                title = await page.title()
        return Screenshot(png=png, url=page.url, title=title, taken_at=time.time())

    # -- state that outlives the context --------------------------------------------------------
    async def changed(self) -> None:
        """Wait until the page was used or navigated since the last call returned."""
        await self._changed.wait()
        self._changed.clear()

    async def capture_state(self, carried: BrowserState | None = None, timeout: float = 5.0) -> BrowserState:
        """The context's cookies, each open frame's local storage and the current page's URL.

        Local storage of origins with no frame open now cannot have changed since it was last read,
        so it comes from ``carried`` (the state saved before, or restored from). Bounded; a frame
        that cannot answer (navigating, or frozen by a dialog) keeps its carried storage. Raises
        BrowserError when the browser cannot be read at all.
        """
        self._check_usable()
        origins = {o["origin"]: o for o in (carried.storage.get("origins", []) if carried else []) if "origin" in o}
        try:
            async with asyncio.timeout(timeout):
                cookies = await self._context.cookies()
                if self.dialog is None:  # a dialog freezes its page's scripts: read no frame then
                    for page in list(self._context.pages):
                        for frame in page.frames:
                            with contextlib.suppress(PlaywrightError, TimeoutError):
                                async with asyncio.timeout(1.0):
                                    found = await frame.evaluate(_LOCAL_STORAGE)
                                if found:
                                    origins[found["origin"]] = found
                url = self._page.url if not self._page.is_closed() else None
        except (PlaywrightError, TimeoutError) as exc:
            self._check_usable()
            raise BrowserError(f"Reading the browser's state failed: {first_line(exc) or 'timed out'}") from None
        kept = [o for o in origins.values() if o.get("localStorage")]
        page_url = url if url and url.startswith(("http:", "https:")) else None
        return BrowserState(storage={"cookies": cookies, "origins": kept}, url=page_url)

    async def aclose(self) -> None:
        """Close the pages, then the context. Idempotent; bounded; never raises for a dead browser."""
        if self._closed:
            return
        self._closed = True
        self._pool.forget(self)
        self._clear_dialog()
        background, self._background = list(self._background), set()
        for task in background:
            task.cancel()
        await self._prepared.aclose(self._pool.timeouts.close)
        await self._finish_parked(self._pool.timeouts.close)
        if background:
            await asyncio.wait(background, timeout=self._pool.timeouts.close)


def _settle_quietly(owner: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        owner.discard(future)
        if not future.cancelled():
            future.exception()  # seen: a call a dialog interrupted, or a dismiss on a closed page

    return done


def line_of(text: str, limit: int = 200) -> str:
    """Site-chosen text made safe to show outside an untrusted block: one line, markers defused."""
    flat = " ".join(text.split()).replace("<<<", "‹‹‹").replace(">>>", "›››")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
