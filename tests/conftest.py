"""Shared fixtures: a local website, settings in a temp folder, and a real browser pool.

Every fixture closes what it creates, and the session ends by checking that no Chromium or
Playwright-driver process descends from the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.procs import browser_processes
from sidekick.sessions import SessionDeps, SessionRegistry
from sidekick.store import Store
from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.fakes.site import HangingLoad, LocalSite
from tests.support.guard import PrivateTarget
from tests.support.runs import MakeRegistry, Rig, agent_settings, open_rig
from tests.support.waiting import poll, wait_until


@pytest.fixture(scope="session")
def site() -> Iterator[LocalSite]:
    with LocalSite() as s:
        yield s


@pytest.fixture(autouse=True)
def _reset_site(site: LocalSite) -> None:
    site.reset()


@pytest.fixture
def target() -> Iterator[PrivateTarget]:
    """A server on 127.0.0.2 standing for a private target; it counts every connection made to it."""
    with contextlib.closing(PrivateTarget()) as t:
        yield t


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", session_grace_seconds=1.0)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[BrowserPool]:
    async with contextlib.aclosing(BrowserPool(settings)) as p:
        yield p


@pytest.fixture
async def hanging(pool: BrowserPool, site: LocalSite) -> AsyncIterator[Callable[[float], Awaitable[HangingLoad]]]:
    """Starts a session's navigation to the site's ``/hang`` (with that navigation timeout) and
    returns once the site saw the request; cancels the navigation and closes the session after the
    test, failure or not."""

    async def settle(loading: asyncio.Task[Any]) -> None:
        loading.cancel()
        await asyncio.wait([loading], timeout=10)
        if loading.done() and not loading.cancelled():
            loading.exception()  # retrieved: the test has judged it

    async with contextlib.AsyncExitStack() as stack:

        async def start(timeout: float) -> HangingLoad:
            browser = await pool.new_session_browser()
            stack.push_async_callback(browser.aclose)
            await browser.goto(site.url("/"))
            assert pool.browser_pid is not None
            loading = asyncio.create_task(browser.goto(site.url("/hang"), timeout=timeout))
            stack.push_async_callback(settle, loading)
            await wait_until(lambda: "/hang" in site.hits, timeout=10, what="the hanging page requested")
            return HangingLoad(browser, pool.browser_pid, loading)

        yield start


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real SQLite store in a temporary folder (one it has to create)."""
    async with Store(tmp_path / "store" / "sidekick.sqlite") as opened:
        yield opened


@pytest.fixture
async def registries(settings: Settings, pool: BrowserPool, store: Store) -> AsyncIterator[MakeRegistry]:
    """Makes session registries on the shared pool (no model); closes every one, even on failure."""
    made: list[SessionRegistry] = []

    def make(*, idle_seconds: float = 900, grace_seconds: float = 1, **kw: Any) -> SessionRegistry:
        kw.setdefault("sweep_interval", 3600)
        timing = dataclasses.replace(settings, idle_minutes=idle_seconds / 60, session_grace_seconds=grace_seconds)
        registry = SessionRegistry(SessionDeps(settings=timing, pool=pool, store=store, models=None), **kw)
        made.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in reversed(made):
            await registry.aclose()


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_browsers() -> Iterator[None]:
    yield
    left = poll(lambda: browser_processes(memory=False).processes == 0, timeout=10)
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
    """A session with its runner, store and models; ``indirect`` params override settings."""
    async with open_rig(agent_settings(tmp_path, llm, **getattr(request, "param", {})), pool) as made:
        yield made
