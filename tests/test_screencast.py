"""The live view on real Chromium: frames come when the page changes and not while it is still, at
most the frame-rate cap, from whichever page is current, and every way a view ends stops its cast."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sidekick.browser.context import SessionBrowser
from sidekick.browser.pool import BrowserPool
from sidekick.browser.screencast import FOLLOW_SECONDS, Frame, LiveView, LiveViews, Screencast
from tests.support.fakes.site import LocalSite
from tests.support.waiting import wait_until

STILL = "<html><head><title>Still</title></head><body><h1 id='h'>Still</h1></body></html>"
# Repaints on every animation frame (about 60 a second): the cap, not the page, sets the rate.
ANIMATED = """<html><head><title>Animated</title></head><body><h1 id='n'>0</h1><script>
let n = 0; const tick = () => { document.getElementById('n').textContent = ++n; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
</script></body></html>"""


@pytest.fixture
async def sb(pool: BrowserPool, site: LocalSite) -> AsyncIterator[SessionBrowser]:
    site.route("/still", STILL)
    site.route("/animated", ANIMATED)
    browser = await pool.new_session_browser()
    try:
        yield browser
    finally:
        await browser.aclose()


@contextlib.asynccontextmanager
async def watching(sb: SessionBrowser, url: str, fps: float) -> AsyncIterator[LiveView]:
    """A live view of ``sb`` on ``url`` that needs nobody to ask for frames (a long lease); closed after."""
    await sb.goto(url)
    view = LiveView(sb, fps=fps, lease=60)
    await view.start()
    try:
        yield view
    finally:
        await view.aclose()


async def settled(view: LiveView, quiet: float = 1.0) -> int:
    """The view's frame count once no frame has come for ``quiet`` seconds."""
    seq = -1
    while True:
        now = view.frame.seq if view.frame else 0
        if now == seq:
            return seq
        seq = now
        await asyncio.sleep(quiet)


async def test_frames_come_when_the_page_changes_and_not_while_it_is_still(sb: SessionBrowser, site: LocalSite) -> None:
    async with watching(sb, site.url("/still"), fps=10) as view:
        # A page that paints nothing after the cast starts may send one frame, or none.
        before = await settled(view)
        await asyncio.sleep(1.5)
        assert (view.frame.seq if view.frame else 0) == before, "a still page sent frames"

        await sb.page.evaluate("document.getElementById('h').textContent = 'Changed'")
        await wait_until(lambda: view.frame is not None and view.frame.seq > before, timeout=10, what="a new frame")
        assert view.frame is not None
        assert view.frame.jpeg[:2] == b"\xff\xd8", "JPEG"
        assert view.frame.url.endswith("/still")
        assert view.frame.taken_at > 0


async def test_a_stream_gets_each_new_frame_as_it_comes_and_ends_when_its_ticket_is_revoked(
    sb: SessionBrowser, site: LocalSite
) -> None:
    """``LiveViews.frames(ticket)`` (the MJPEG route's source) yields the next frame when it comes, not
    at its next wait: with a minute's wait it must be back long before; Reset (``stop``) ends it."""
    await sb.goto(site.url("/still"))
    loop = asyncio.get_running_loop()

    async def browser_of(sid: str) -> SessionBrowser | None:
        return sb if sid == "tab" else None

    views = LiveViews(browser_of, lambda coro: loop.create_task(coro), fps=10, lease=60)
    try:
        assert views.frames("no such ticket") is None
        ticket = views.ticket("tab")
        assert ticket is not None and views.ticket("tab") == ticket and views.ticket("other") != ticket
        frames = views.frames(ticket, wait=60)
        assert frames is not None
        first = await asyncio.wait_for(anext(frames), 10)  # the stream opens the view; its first frame
        view = views.view("tab")
        assert view is not None and first.seq >= 1 and first.jpeg[:2] == b"\xff\xd8"
        last = await settled(view)

        waiting = asyncio.ensure_future(anext(frames))
        await asyncio.sleep(0.3)
        if last == first.seq:
            assert not waiting.done(), "a still page sent the stream a frame"
        await sb.page.evaluate("document.getElementById('h').textContent = 'Changed'")
        frame = await asyncio.wait_for(waiting, 10)
        assert frame.seq > first.seq

        ending = asyncio.ensure_future(anext(frames))
        await asyncio.sleep(0.2)
        await views.stop("tab")  # Reset: the ticket is revoked, the view ended
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(ending, 10)
        assert views.frames(ticket) is None
        assert views.ticket("tab") != ticket  # the next watch gets a new name
    finally:
        await views.aclose()
    assert views.ticket("tab") is None  # closed: nothing to watch


async def test_a_stream_nobody_reads_lets_the_view_end(sb: SessionBrowser, site: LocalSite) -> None:
    """The lease is renewed only while a stream waits for frames: once its reader is gone (the tab
    dropped the image), the view ends unwatched."""
    await sb.goto(site.url("/animated"))
    loop = asyncio.get_running_loop()

    async def browser_of(sid: str) -> SessionBrowser | None:
        return sb

    views = LiveViews(browser_of, lambda coro: loop.create_task(coro), fps=10, lease=1.0)
    try:
        ticket = views.ticket("tab")
        assert ticket is not None
        frames = views.frames(ticket, wait=0.3)
        assert frames is not None
        reading = asyncio.ensure_future(_read_for(frames, 2.5))
        count = await reading
        view = views.view("tab")
        assert view is not None and count >= 3 and not view.ended, "the view ended while its stream read"
        await frames.aclose()  # type: ignore[attr-defined]  # the tab went away
        await wait_until(lambda: view.ended, timeout=10, what="the unread view ended")
        assert view.cast is None
    finally:
        await views.aclose()


async def _read_for(frames: AsyncIterator[Frame], seconds: float) -> int:
    count, end = 0, asyncio.get_running_loop().time() + seconds
    async for _ in frames:
        count += 1
        if asyncio.get_running_loop().time() > end:
            break
    return count


async def test_the_frame_rate_cap_holds_on_a_page_that_repaints_all_the_time(
    sb: SessionBrowser, site: LocalSite
) -> None:
    async with watching(sb, site.url("/animated"), fps=4) as view:
        await wait_until(lambda: view.frame is not None, timeout=10, what="a first frame")
        assert view.frame is not None
        first, start = view.frame.seq, asyncio.get_running_loop().time()
        await asyncio.sleep(3)
        assert view.frame is not None
        frames = view.frame.seq - first
        seconds = asyncio.get_running_loop().time() - start
        # Chromium keeps up to two frames in flight before it waits for an acknowledgement, so two
        # may come close together; after that, one per quarter second.
        assert 1 <= frames <= 4 * seconds + 3, f"{frames} frames in {seconds:.1f} s at a cap of 4 a second"


async def test_the_view_follows_a_popup(sb: SessionBrowser, site: LocalSite) -> None:
    async with watching(sb, site.url("/popup"), fps=10) as view:
        await sb.page.get_by_role("button", name="Open form window").click()
        await wait_until(lambda: sb.page.url.endswith("/form"), timeout=10, what="the popup current")
        await wait_until(
            lambda: view.frame is not None and view.frame.url.endswith("/form"), timeout=10, what="a frame of the popup"
        )
        assert view.casts == 2
        popup = sb.page
        assert view.cast is not None and view.cast.page is popup


async def test_a_closed_view_has_stopped_chromiums_screencast(sb: SessionBrowser, site: LocalSite) -> None:
    await sb.goto(site.url("/animated"))
    view = LiveView(sb, fps=10, lease=60)
    await view.start()
    await wait_until(lambda: view.frame is not None, timeout=10, what="a first frame")
    cast = view.cast
    assert cast is not None and cast.casting
    await view.aclose()
    await view.aclose()  # idempotent
    assert view.ended and cast.stopped and not cast.casting
    seq = view.frame.seq if view.frame else 0
    await asyncio.sleep(0.5)
    assert (view.frame.seq if view.frame else 0) == seq, "frames after the view closed"
    # Playwright refuses a second screencast on a page while one runs: this one starts, so ours
    # was stopped in the driver and in Chromium, not just ignored here.
    again = Screencast(sb.page, lambda jpeg, at: True, fps=10)
    await again.start()
    await wait_until(lambda: again.frames > 0, timeout=10, what="frames of a new screencast")
    await again.aclose()


async def test_views_end_when_unwatched_when_the_browser_closes_and_when_stopped(
    pool: BrowserPool, site: LocalSite
) -> None:
    site.route("/animated", ANIMATED)
    browsers = {sid: await pool.new_session_browser() for sid in ("lease", "reset", "stop", "exit")}
    for browser in browsers.values():
        await browser.goto(site.url("/animated"))

    async def browser_of(sid: str) -> SessionBrowser | None:
        return browsers.get(sid)

    loop = asyncio.get_running_loop()
    views = LiveViews(browser_of, lambda coro: loop.create_task(coro), fps=10, lease=1.0)
    try:
        assert views.frame("nobody") is None  # asks for a view; there is no such browser
        opened = {sid: await views.open(sid) for sid in browsers}
        assert all(v is not None for v in opened.values())
        await wait_until(
            lambda: all(views.frame(sid) is not None for sid in ("reset", "stop", "exit")), timeout=10, what="frames"
        )
        casts = {sid: v.cast for sid, v in opened.items() if v is not None}

        async def watch(sids: tuple[str, ...]) -> None:  # a tab asking for frames of these
            while True:
                for sid in sids:
                    views.frame(sid)
                await asyncio.sleep(0.1)

        watching = asyncio.create_task(watch(("reset", "stop", "exit")))
        try:

            def ended(sid: str) -> bool:
                view = opened[sid]
                return view is not None and view.ended

            await wait_until(lambda: ended("lease"), timeout=10, what="the unwatched view ended")
            assert not any(ended(sid) for sid in ("reset", "stop", "exit"))
            await browsers["reset"].aclose()  # Reset or idle close the session's browser
            await wait_until(lambda: ended("reset"), timeout=10, interval=FOLLOW_SECONDS, what="closed browser")
            await views.stop("stop")
            assert ended("stop") and not ended("exit")
            await views.aclose()
            await views.aclose()
        finally:
            watching.cancel()
        for sid, cast in casts.items():
            assert cast is not None and cast.stopped and not cast.casting, sid
        assert len(views) == 0
        assert views.frame("exit") is None  # closed: asks for nothing
    finally:
        await views.aclose()
        for browser in browsers.values():
            await browser.aclose()


async def test_a_view_started_while_its_page_navigates_gets_the_new_pages_frames(
    pool: BrowserPool, site: LocalSite
) -> None:
    """Chromium loses a screencast started while a navigation swaps the page's renderer: it sends
    no frame again, though the page repaints all the time. A tab opens the live view when a
    run starts, which is when the agent's first navigation is under way; the view must recover."""
    site.route("/animated", ANIMATED)
    await started_while_navigating(pool, site, lambda browser: browser.goto(site.url("/animated")))


async def test_a_view_started_while_a_click_navigates_gets_the_new_pages_frames(
    pool: BrowserPool, site: LocalSite
) -> None:
    """The same when the page navigates by itself (a link the agent clicked)."""
    site.route("/animated", ANIMATED)
    await started_while_navigating(pool, site, lambda browser: browser.page.goto(site.url("/animated")))


async def started_while_navigating(
    pool: BrowserPool, site: LocalSite, navigate: Callable[[SessionBrowser], Awaitable[object]]
) -> None:
    for delay_ms in range(0, 40, 2):  # the window is a few milliseconds wide, somewhere in here
        browser = await pool.new_session_browser()
        view = LiveView(browser, fps=10, lease=60)
        going = asyncio.create_task(navigate(browser))
        try:
            await asyncio.sleep(delay_ms / 1000)
            await view.start()
            await going

            def animated(view: LiveView = view) -> bool:
                return view.frame is not None and view.frame.url.endswith("/animated")

            # Within LOST_MAX_SECONDS and a start, or LOST_SECONDS after the navigation and a start.
            await wait_until(animated, timeout=15, what=f"a frame of the new page (cast started at {delay_ms} ms)")
        finally:
            going.cancel()
            await view.aclose()
            await browser.aclose()


async def test_a_screencast_whose_start_was_cancelled_can_start_again(sb: SessionBrowser, site: LocalSite) -> None:
    """Playwright marks a page's screencast started before it asks Chromium: a start cut short (its
    timeout under load) must not leave the page unable to cast."""
    await sb.goto(site.url("/animated"))
    first = Screencast(sb.page, lambda jpeg, at: True, fps=10)
    with pytest.raises(TimeoutError):
        await first.start(timeout=0)
    await first.aclose()
    again = Screencast(sb.page, lambda jpeg, at: True, fps=10)
    await again.start()
    await wait_until(lambda: again.frames > 0, timeout=10, what="frames of a screencast started after a cut-short one")
    await again.aclose()
