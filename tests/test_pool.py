"""The browser pool's last-resort kill (regression): it ends this pool's processes, never another's."""

from __future__ import annotations

import logging
import re

import psutil
import pytest

from sidekick.browser.context import Timeouts
from sidekick.browser.pool import BrowserPool
from sidekick.browser.state import BrowserState
from sidekick.config import Settings
from sidekick.procs import browser_processes
from tests.support.fakes.site import LocalSite
from tests.support.waiting import wait_until


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Regression (bug 2): when a graceful close timed out, BrowserPool.aclose called
# kill_browser_processes(), which SIGKILLed every Chromium and Playwright driver descending from
# this process, the other pools' included (two pools in one process: tests, benchmarks, the
# dashboard's core next to a CLI core). The other pool's next goto then failed with a crash. Now
# it kills only the trees of its own browser_pid and driver pid.
async def test_a_close_that_times_out_kills_only_its_own_processes(
    settings: Settings, pool: BrowserPool, site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    other = await pool.new_session_browser()
    await other.goto(site.url("/"))
    other_pid = pool.browser_pid
    assert other_pid is not None
    other_tree = set(browser_processes(other_pid, memory=False).browser_pids) | {other_pid}
    other_driver = psutil.Process(other_pid).ppid()

    # No browser closes within a millisecond: every graceful close of this pool times out, so
    # aclose takes the last-resort path.
    doomed = BrowserPool(settings, timeouts=Timeouts(close=0.001))
    try:
        sb = await doomed.new_session_browser()
        await sb.goto(site.url("/about"))
        doomed_pid = doomed.browser_pid
        assert doomed_pid is not None and doomed_pid not in other_tree
        doomed_driver = psutil.Process(doomed_pid).ppid()
        assert doomed_driver != other_driver
    finally:
        with caplog.at_level(logging.WARNING, logger="sidekick.browser.pool"):
            await doomed.aclose()

    kills = [r.getMessage() for r in caplog.records if "Browser close timed out" in r.getMessage()]
    assert len(kills) == 1, "the close must really have timed out for this test to mean anything"
    killed = re.search(r"killed (\d+)", kills[0])
    assert killed and int(killed.group(1)) >= 1
    await wait_until(lambda: not alive(doomed_pid) and not alive(doomed_driver), timeout=10, what="doomed pool gone")

    # The other pool's Chromium and driver were not touched, and it still browses.
    assert alive(other_pid) and alive(other_driver)
    assert browser_processes(other_driver, memory=False).processes >= 2  # its Chromium and a renderer at least
    assert pool.browser_connected() and pool.crashes == 0
    shot = await other.goto(site.url("/about"))
    assert shot.title == "About"
    fresh = await pool.new_session_browser()
    try:
        assert (await fresh.goto(site.url("/form"))).title == "Contact form"
        assert pool.launches == 1, "no relaunch was needed"
    finally:
        await fresh.aclose()
        await other.aclose()


async def test_a_saved_state_opens_a_context_with_its_cookies_and_storage(pool: BrowserPool, site: LocalSite) -> None:
    first = await pool.new_session_browser()
    await first.goto(site.url("/"))
    await first.page.evaluate("document.cookie = 'signed=in; max-age=3600'; localStorage.setItem('k', 'v')")
    state = BrowserState(storage=dict(await first.context.storage_state()), url=first.page.url)
    await first.aclose()
    await pool.warm()  # a spare is ready: a restored session must not take it (it has no cookies)
    restored = await pool.new_session_browser(state=state)
    fresh = await pool.new_session_browser()
    try:
        assert restored.page.url == "about:blank"  # not navigated: the caller goes to state.url
        await restored.goto(state.url or "")
        assert await restored.page.evaluate("[document.cookie, localStorage.getItem('k')]") == ["signed=in", "v"]
        await fresh.goto(site.url("/"))
        assert await fresh.page.evaluate("[document.cookie, localStorage.getItem('k')]") == ["", None]
    finally:
        await restored.aclose()
        await fresh.aclose()
