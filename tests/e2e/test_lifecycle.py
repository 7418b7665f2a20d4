"""A session's browser is freed on every path a person can take: closing the tab, Reset, and the
server being stopped; and bad input in the address box is a message, not a traceback.

One dashboard serves the module (each test starts once the previous one's sessions are freed);
the SIGTERM test stops a server, so it runs its own.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import psutil
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.child import is_alive
from tests.support.dashboard import (
    ERROR,
    EXCEPTION,
    IMAGE,
    TOAST,
    DashboardServer,
    Tabs,
    metric,
    open_address,
    open_app,
    rerun,
    save_artifact,
    sidekick_server,
)
from tests.support.fakes.site import LocalSite
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# on_release runs about 1 s after the websocket closes, the watchdog's grace is 1 s: allow plenty.
RELEASE_TIMEOUT = 15.0


async def browse(page: Page, url: str, title: str) -> None:
    """Open ``url`` from the dashboard and check its screenshot and caption are shown."""
    await open_address(page, url)
    await expect(page.locator(IMAGE).first).to_be_visible()
    caption = page.locator("[data-testid='stCaptionContainer']", has_text=url)
    await expect(caption).to_contain_text(title)


async def back_to(server: DashboardServer, baseline: int, what: str) -> None:
    await wait_until(lambda: server.process_count() <= baseline, timeout=RELEASE_TIMEOUT, what=what)


async def test_closing_the_tab_frees_its_browser(
    dashboard: DashboardServer, baseline: int, tabs: Tabs, site: LocalSite
) -> None:
    page = await tabs.open()
    await browse(page, site.url("/"), "Sidekick test site")
    assert dashboard.process_count() > baseline, "browsing should hold a context (and its renderer)"
    await save_artifact(page, "session-end-1-browsing")

    await page.close()
    await back_to(dashboard, baseline, f"server back to {baseline} browser processes after the tab closed")

    # A fresh tab sees only itself. (Sessions counts tabs that have used the browser, so browse first.)
    fresh = await tabs.open()
    await browse(fresh, site.url("/about"), "About")

    async def only_this_tab() -> bool:
        if await metric(fresh, "Sessions") == "1":
            return True
        # The panel counts at each run; an earlier test's tab may still be on its way out.
        await rerun(fresh, fresh.get_by_role("button", name="Open", exact=True).click)
        return False

    await wait_until(only_this_tab, timeout=RELEASE_TIMEOUT, interval=0.5, what="Sessions showing 1")
    await save_artifact(fresh, "session-end-2-fresh-tab")


async def test_reset_frees_the_context_and_clears_the_screenshot(
    dashboard: DashboardServer, baseline: int, tabs: Tabs, site: LocalSite
) -> None:
    page = await tabs.open()
    await browse(page, site.url("/"), "Sidekick test site")
    assert dashboard.process_count() > baseline

    await rerun(page, page.get_by_role("button", name="Reset", exact=True).click)
    await expect(page.locator(TOAST)).to_contain_text("Freed 1 browser context")
    await back_to(dashboard, baseline, f"server back to {baseline} browser processes after Reset")
    await expect(page.locator(IMAGE)).to_have_count(0)
    await save_artifact(page, "reset")


async def test_a_bad_address_is_a_message_and_the_tab_still_works(
    dashboard: DashboardServer, tabs: Tabs, site: LocalSite
) -> None:
    page = await tabs.open()
    for text, hint in [("not a url", ""), ("file:///etc/passwd", "file")]:
        await open_address(page, text)
        error = page.locator(ERROR)
        await expect(error).to_be_visible()
        message = (await error.inner_text()).strip()
        assert message and hint in message.lower(), message
        await expect(page.locator(EXCEPTION)).to_have_count(0)
        assert "Traceback" not in await page.locator("body").inner_text()
        await save_artifact(page, f"bad-input-{text}")

    await browse(page, site.url("/about"), "About")
    await expect(page.locator(ERROR)).to_have_count(0)
    await save_artifact(page, "bad-input-then-good")


async def test_sigterm_leaves_no_browser_process_behind(user_browser: Browser, site: LocalSite, tmp_path: Path) -> None:
    server = sidekick_server(tmp_path / "server")
    await asyncio.to_thread(server.start)
    try:
        page = await open_app(user_browser, server.url)
        try:
            await browse(page, site.url("/"), "Sidekick test site")
            await save_artifact(page, "sigterm-1-browsing")
            report = server.browser_processes()
            assert report.driver_pids and report.browser_pids, report
            procs = []
            for pid in (*report.driver_pids, *report.browser_pids):
                try:
                    procs.append(psutil.Process(pid))  # keeps the creation time: immune to PID reuse
                except psutil.NoSuchProcess:
                    pass

            code = await asyncio.to_thread(server.stop, signal.SIGTERM, 15.0)
            assert not server.killed, f"the server ignored SIGTERM:\n{server.output()}"
            # uvicorn shuts down gracefully, then re-raises SIGTERM: the process ends by the signal.
            assert code in (0, -signal.SIGTERM), f"the server exited with {code}:\n{server.output()}"

            def survivors() -> list[int]:
                return [p.pid for p in procs if is_alive(p)]

            try:
                await wait_until(lambda: not survivors(), timeout=5, what="every browser process gone")
            except TimeoutError:
                pytest.fail(f"orphaned after SIGTERM: {survivors()}\n{server.output()}")
            await save_artifact(page, "sigterm-2-server-gone")
        finally:
            await page.close()
    finally:
        await asyncio.to_thread(server.close)
