"""What an action set off, seen from the page it acted on, and waiting for it to end.

No fixed waits: a :class:`Watch` listens from before the action to its page's request, navigation
and download events and to the context's new pages, and :func:`settle` waits only for what it saw
start (a navigation to commit and load, the requests the action started to finish), each bounded.
An action that set nothing off returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from playwright.async_api import Download, Frame, Page, Request

from sidekick.browser.context import SessionBrowser

# How long the requests an action started (fetch, XHR, a frame) may keep the page busy before we
# read it anyway; the snapshot shows what is there by then.
QUIET_SECONDS = 1.0
# How long a navigation the action started may take to commit, then to load; after that the result
# says it is still opening or still loading.
COMMIT_SECONDS = 5.0
LOAD_SECONDS = 5.0
_BUSY_TYPES = {"fetch", "xhr", "document"}


class Watch:
    """A navigation of the page (started, then committed; a reload or a POST to the same URL
    counts, which comparing URLs would miss), a new page opened by the site, downloads, and the
    requests the action started. Listens only inside its ``with`` block."""

    def __init__(self, sb: SessionBrowser, page: Page) -> None:
        self._page = page
        self._context = sb.context
        self.started = asyncio.Event()
        self.committed = asyncio.Event()
        self.landed = asyncio.Event()  # committed, opened a page, or became a download
        self.quiet = asyncio.Event()
        self.quiet.set()
        self.requested = ""
        self.new_page: Page | None = None
        self.downloads: list[Download] = []
        self.expecting = asyncio.Event()  # the browser said a navigation or a window is coming
        self._busy: set[Request] = set()
        self._signals = sb.signals(page)

    def __enter__(self) -> Watch:
        for source, event, handler in self._listeners():
            source.on(event, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for source, event, handler in self._listeners():
            source.remove_listener(event, handler)

    def _listeners(self) -> list[tuple[Any, str, Callable[[Any], None]]]:
        """(what emits it, the event, our handler) for everything the watch listens to."""
        listeners: list[tuple[Any, str, Callable[[Any], None]]] = [
            (self._page, "request", self._on_request),
            (self._page, "requestfinished", self._on_done),
            (self._page, "requestfailed", self._on_done),
            (self._page, "framenavigated", self._on_navigated),
            (self._page, "download", self._on_download),
            (self._context, "page", self._on_page),
        ]
        if self._signals is not None:
            cdp, _ = self._signals
            listeners += [
                (cdp, "Page.windowOpen", self._on_window_open),
                (cdp, "Page.frameRequestedNavigation", self._on_requested),
            ]
        return listeners

    @property
    def navigated(self) -> bool:
        return self.started.is_set()

    def _on_window_open(self, _params: Any) -> None:
        self.expecting.set()

    def _on_requested(self, params: Any) -> None:
        if self._signals is not None and params.get("frameId") == self._signals[1]:
            self.expecting.set()

    def _on_request(self, request: Request) -> None:
        if request.is_navigation_request() and request.frame == self._page.main_frame:
            self.requested = request.url
            self.started.set()
        elif request.resource_type in _BUSY_TYPES:
            self._busy.add(request)
            self.quiet.clear()

    def _on_done(self, request: Request) -> None:
        self._busy.discard(request)
        if not self._busy:
            self.quiet.set()

    def _on_navigated(self, frame: Frame) -> None:
        if frame.parent_frame is None:
            self.started.set()
            self.committed.set()
            self.landed.set()

    def _on_page(self, page: Page) -> None:
        self.new_page = page
        self.started.set()
        self.landed.set()

    def _on_download(self, download: Download) -> None:
        self.downloads.append(download)
        self.landed.set()


async def wait_quiet(watch: Watch) -> None:
    """Until what the browser said is coming has started (a navigation, a window; at most
    COMMIT_SECONDS), then until the requests the action started have finished (at most QUIET_SECONDS)."""
    if watch.expecting.is_set() and not watch.navigated:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMIT_SECONDS):
                await watch.started.wait()
    if watch.quiet.is_set() or watch.navigated:
        return
    waiters = [asyncio.ensure_future(watch.quiet.wait()), asyncio.ensure_future(watch.started.wait())]
    try:
        await asyncio.wait(waiters, timeout=QUIET_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def wait_landed(watch: Watch) -> bool:
    """Whether the navigation the action started has committed, opened a page or turned out to be
    a download (waiting up to COMMIT_SECONDS)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(COMMIT_SECONDS):
            await watch.landed.wait()
    return watch.landed.is_set()
