"""Broken configuration is a message on the page, never a traceback, and whatever can work still does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.support.dashboard import EXCEPTION, IMAGE, open_address, open_app, save_artifact, sidekick_server
from tests.support.fakes.site import LocalSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_a_malformed_secrets_file_is_a_warning_and_the_browser_still_works(
    user_browser: Browser, site: LocalSite, tmp_path: Path
) -> None:
    server = sidekick_server(tmp_path / "server")
    (tmp_path / "server" / "secrets.toml").write_text('OPENAI_API_KEY = "sk-unterminated\n[broken\n')
    await asyncio.to_thread(server.start)
    try:
        page = await open_app(user_browser, server.url)
        body = page.locator("body")
        assert "could not be read, so it was ignored" in await body.inner_text()
        assert "sk-unterminated" not in await body.inner_text()  # no secret echoed back
        assert await page.locator(EXCEPTION).count() == 0
        await open_address(page, site.url("/about"))
        await page.locator(IMAGE).first.wait_for(timeout=30_000)
        await save_artifact(page, "config-malformed-secrets")
        await page.close()
    finally:
        await asyncio.to_thread(server.close)


async def test_a_malformed_setting_is_a_clear_message(user_browser: Browser, tmp_path: Path) -> None:
    server = sidekick_server(tmp_path / "server", SIDEKICK_MAX_EVALUATIONS="lots")
    await asyncio.to_thread(server.start)
    try:
        page = await open_app(user_browser, server.url)
        text = await page.locator("body").inner_text()
        assert "SIDEKICK_MAX_EVALUATIONS must be a whole number" in text
        assert await page.locator(EXCEPTION).count() == 0
        await save_artifact(page, "config-malformed-setting")
        await page.close()
    finally:
        await asyncio.to_thread(server.close)
