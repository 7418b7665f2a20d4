"""Shared fixtures: a local website, settings in a temp folder, and a real browser pool.

Every fixture closes what it creates, and the session ends by checking that no Chromium or
Playwright-driver process descends from the test process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidekick.browser import BrowserPool
from sidekick.config import Settings
from sidekick.resources import browser_processes
from tests.fakes.site import LocalSite


@pytest.fixture(scope="session")
def site() -> Iterator[LocalSite]:
    with LocalSite() as s:
        yield s


@pytest.fixture(autouse=True)
def _reset_site(site: LocalSite) -> None:
    site.reset()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", session_grace_seconds=1.0)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[BrowserPool]:
    p = BrowserPool(settings)
    try:
        yield p
    finally:
        await p.aclose()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_browsers() -> Iterator[None]:
    yield
    left = wait_until(lambda: browser_processes(memory=False).processes == 0, timeout=10)
    assert left, f"browser processes leaked by the test session: {browser_processes(memory=False)}"
