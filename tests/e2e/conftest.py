"""Fixtures for the end-to-end tests: the user's browser, a shared dashboard, and tabs on it.

Two Chromiums are involved. The *user's* one belongs to the test process (``user_browser``); the
*server's* one belongs to the dashboard subprocess, and only its processes are ever counted
(``DashboardServer.browser_processes`` walks the server's descendants).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Playwright, async_playwright, expect

from tests.support.dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DashboardServer,
    Tabs,
    open_app,
    save_artifacts,
    sidekick_server,
    stable_process_count,
)
from tests.support.waiting import wait_until

# A loaded 2-core machine runs two Chromiums and a Streamlit server here: be patient, never sleep.
expect.set_options(timeout=30_000)


# Module scope, not session: tests elsewhere assert that no browser descends from the test process
# once their own pools close, so the "user" browser must be gone when the e2e modules end.
@pytest.fixture(scope="module")
async def user_playwright() -> AsyncIterator[Playwright]:
    pw = await async_playwright().start()
    try:
        yield pw
    finally:
        await pw.stop()


@pytest.fixture(scope="module")
async def user_browser(user_playwright: Playwright) -> AsyncIterator[Browser]:
    """The person at the keyboard: a Chromium of the test process, separate from the server's."""
    browser = await user_playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """One dashboard per module: session grace 1 s, a temporary data folder, no API key."""
    with sidekick_server(tmp_path_factory.mktemp("dashboard")) as server:
        yield server


@pytest.fixture(scope="module")
async def baseline(dashboard: DashboardServer, user_browser: Browser) -> int:
    """The server's browser process count with no session browsing: Chromium plus the warm spare.

    The core starts on the first page view and warms its spare in the background, so open a tab and
    wait until the count stops growing. That tab never browses, so it holds no context of its own.
    """
    page = await open_app(user_browser, dashboard.url)
    try:
        return await stable_process_count(dashboard)
    finally:
        await page.close()


@pytest.fixture
async def tabs(
    dashboard: DashboardServer, baseline: int, user_browser: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[Tabs]:
    """Starts once earlier tests' sessions are freed; saves and closes whatever tabs are left."""
    await wait_until(
        lambda: dashboard.process_count() <= baseline, timeout=30, what=f"server back to {baseline} processes"
    )
    context = await user_browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    try:
        yield Tabs(context, dashboard.url)
    finally:
        try:
            await save_artifacts(context, f"{request.node.name}-last")
        finally:
            await context.close()
