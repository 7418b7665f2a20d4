"""Shared fixtures: a local website, settings in a temp folder, and a real browser pool.

Every fixture closes what it creates, and the session ends by checking that no Chromium or
Playwright-driver process descends from the test process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidekick.agent import Agent
from sidekick.browser import BrowserPool
from sidekick.config import Settings
from sidekick.models import Models
from sidekick.resources import browser_processes
from sidekick.sessions import Session
from sidekick.store import Store
from tests.agent_support import Rig
from tests.fakes.openai_server import FakeOpenAI
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


# -- the agent against the fake model ----------------------------------------------------------
@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def llm(llm_server: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI server, with nothing scripted and no requests recorded."""
    llm_server.reset()
    return llm_server


@pytest.fixture
async def rig(tmp_path: Path, pool: BrowserPool, llm: FakeOpenAI, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """An Agent with its own Session, Store and Models; ``indirect`` params override settings."""
    overrides = getattr(request, "param", {})
    settings = Settings(
        data_dir=tmp_path,
        openai_base_url=llm.base_url,
        openai_api_key="test",
        model_retries=0,
        model_timeout_seconds=5,
        tool_timeout_seconds=5,
        **overrides,
    )
    store = await Store(tmp_path / "sidekick.sqlite").open()
    models = Models(settings)
    session = Session("s1", pool)
    agent = Agent(settings=settings, models=models, store=store, workspace=tmp_path / "ws", get_browser=session.browser)
    try:
        yield Rig(settings, store, models, session, agent)
    finally:
        await agent.aclose()
        await session.aclose()
        await models.aclose()
        await store.aclose()
