import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable

import pytest

from sidekick.browser.chromium import find_browser
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.errors import BrowserCrashedError, BrowserUnavailableError, NavigationError, SessionClosedError
from sidekick.procs import browser_processes
from tests.support.fakes.site import HangingLoad, LocalSite


async def test_sessions_do_not_share_cookies(pool: BrowserPool, site: LocalSite) -> None:
    a = await pool.new_session_browser()
    b = await pool.new_session_browser()
    await a.goto(site.url("/set-cookie?value=alice"))
    await a.goto(site.url("/cookies"))
    assert await a.page.text_content("#c") == "sk=alice"
    await b.goto(site.url("/cookies"))
    assert await b.page.text_content("#c") == "(none)"
    await a.aclose()
    await b.aclose()


async def test_aclose_twice_is_fine_and_use_after_close_is_a_clear_error(pool: BrowserPool, site: LocalSite) -> None:
    sb = await pool.new_session_browser()
    await sb.goto(site.url("/"))
    await sb.aclose()
    await sb.aclose()
    with pytest.raises(SessionClosedError, match="reset or ended"):
        await sb.goto(site.url("/"))


async def test_a_warm_spare_is_ready_before_the_first_session(pool: BrowserPool) -> None:
    await pool.warm()
    assert pool.open_contexts == 1 and pool.session_contexts == 0  # the spare is nobody's yet
    sb = await pool.new_session_browser()
    await pool.warm()  # the spare was handed out and a new one is warming
    assert pool.open_contexts == 2 and pool.session_contexts == 1
    await sb.aclose()
    assert pool.open_contexts == 1


async def test_screenshot_carries_png_url_and_title(pool: BrowserPool, site: LocalSite) -> None:
    sb = await pool.new_session_browser()
    shot = await sb.goto(site.url("/about"))
    assert shot.png.startswith(b"\x89PNG")
    assert shot.url == site.url("/about") and shot.title == "About"
    await sb.aclose()


async def test_unreachable_site_is_a_clear_error_and_the_session_keeps_working(
    pool: BrowserPool, site: LocalSite
) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    sb = await pool.new_session_browser()
    with pytest.raises(NavigationError, match="refused the connection"):
        await sb.goto(f"http://127.0.0.1:{closed_port}/")
    shot = await sb.goto(site.url("/"))
    assert shot.title == "Sidekick test site"
    await sb.aclose()


async def test_a_popup_becomes_the_current_page(pool: BrowserPool, site: LocalSite) -> None:
    sb = await pool.new_session_browser()
    await sb.goto(site.url("/popup"))
    async with sb.context.expect_page() as info:
        await sb.page.click("text=Open about in a new tab")
    popup = await info.value
    await popup.wait_for_load_state()
    assert sb.page is popup and await sb.page.title() == "About"
    await sb.aclose()


async def test_killing_chromium_mid_use_is_a_clear_error_and_the_next_use_relaunches(
    pool: BrowserPool, site: LocalSite, hanging: Callable[[float], Awaitable[HangingLoad]]
) -> None:
    load = await hanging(30)
    os.kill(load.chromium, signal.SIGKILL)
    with pytest.raises(BrowserCrashedError, match="restarts on your next action"):
        await asyncio.wait_for(load.loading, 10)
    assert pool.crashes == 1
    fresh = await pool.new_session_browser()
    shot = await fresh.goto(site.url("/about"))
    assert shot.title == "About" and pool.launches == 2
    await load.browser.aclose()  # closing a context of the dead browser is harmless
    await fresh.aclose()


async def test_after_the_pool_closes_no_browser_process_descends_from_us(settings: Settings, site: LocalSite) -> None:
    pool = BrowserPool(settings)
    sb = await pool.new_session_browser()
    await sb.goto(site.url("/"))
    assert browser_processes(memory=False).processes > 0
    await pool.aclose()
    await pool.aclose()  # idempotent
    for _ in range(100):
        if browser_processes(memory=False).processes == 0:
            break
        await asyncio.sleep(0.05)
    assert browser_processes(memory=False).processes == 0
    with pytest.raises(SessionClosedError):
        await pool.new_session_browser()


def test_a_configured_browser_path_that_is_not_executable_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BrowserUnavailableError, match="SIDEKICK_BROWSER_PATH"):
        find_browser(Settings(browser_path=str(tmp_path / "nope")))


def test_discovery_finds_a_chromium_here() -> None:
    assert os.access(find_browser(Settings()), os.X_OK)
