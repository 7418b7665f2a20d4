"""Sessions on remote browsers: two real ``playwright run-server`` processes and a DevTools Chromium.

What is left on a server is counted on the server itself: its Chromium's own list of browser
contexts (DevTools ``Target.getBrowserContexts`` through our connection, which is the only client of
the Chromium a run-server starts per connection) and the server's process tree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from sidekick.browser.context import SessionBrowser, Timeouts
from sidekick.browser.endpoints import Endpoint, EndpointSpec, EndpointStatus, backoff, parse_endpoints
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.errors import BrowserCrashedError, BrowserUnavailableError, ConfigError, NavigationError
from sidekick.facade import Sidekick
from sidekick.procs import browser_processes
from sidekick.sessions import SessionDeps, SessionRegistry
from sidekick.store import Store
from sidekick.web.guard import Guard
from sidekick.web.policy import UrlPolicy
from tests.support.fakes.site import LocalSite
from tests.support.run_server import RunServer, devtools_chromium, remote_settings, run_server
from tests.support.waiting import poll, until_empty, wait_until


@pytest.fixture
def servers() -> Iterator[tuple[RunServer, RunServer]]:
    with run_server() as a, run_server() as b:
        yield a, b


@pytest.fixture
async def remote(settings: Settings, servers: tuple[RunServer, RunServer]) -> AsyncIterator[BrowserPool]:
    """A pool on both servers, without a warm spare (so each context is a session's)."""
    pool = BrowserPool(remote_settings(settings, *servers), warm_spare=False)
    try:
        yield pool
    finally:
        await pool.aclose()


def endpoint(pool: BrowserPool, server: str) -> Endpoint:
    return next(ep for ep in pool.endpoints if ep.name == server)


async def server_contexts(pool: BrowserPool, server: str) -> int:
    """The browser contexts the server's Chromium has open (its own count, not ours)."""
    browser = endpoint(pool, server).browser
    assert browser is not None and browser.is_connected()
    cdp = await browser.new_browser_cdp_session()
    try:
        return len((await cdp.send("Target.getBrowserContexts"))["browserContextIds"])
    finally:
        await cdp.detach()


def on(pool: BrowserPool, sb: SessionBrowser) -> str:
    ep = next(ep for ep in pool.endpoints if ep.generation == sb.generation)
    return ep.name


def local_browser_processes(*servers: RunServer) -> set[int]:
    """Chromium and driver processes of this test process that are not a server's (nor its wrapper)."""
    server_pids: set[int] = set()
    for server in servers:
        if server.node_pid is not None:
            server_pids |= {server.node_pid, *browser_processes(server.node_pid, memory=False).browser_pids}
        if server.wrapper is not None:
            server_pids.add(server.wrapper.pid)
    report = browser_processes(memory=False)
    return set(report.browser_pids + report.driver_pids) - server_pids


# -- configuration -------------------------------------------------------------------------------
def test_endpoints_are_read_from_the_setting_and_bad_ones_named() -> None:
    assert parse_endpoints(" ws://a:3000/ , cdp:http://b:9222,wss://c/x ") == (
        EndpointSpec("ws://a:3000/"),
        EndpointSpec("http://b:9222", cdp=True),
        EndpointSpec("wss://c/x"),
    )
    assert parse_endpoints("") == ()
    for bad in ("http://a:3000/", "ws://", "cdp:ftp://b", "a:3000", "ws://a/,ws://a/"):
        with pytest.raises(ConfigError, match="SIDEKICK_BROWSER_ENDPOINTS"):
            parse_endpoints(bad)
    with pytest.raises(ConfigError, match="SIDEKICK_BROWSER_ENDPOINTS"):
        Settings.load({"SIDEKICK_BROWSER_ENDPOINTS": "localhost:3000"})
    assert [backoff(n) for n in (1, 2, 3, 6, 7, 50)] == [1, 2, 4, 30, 30, 30]
    # What the panel, messages and logs show keeps no secret of the address.
    assert EndpointSpec("wss://me:secret@h.example/x?token=abc").name == "wss://me:…@h.example/x?token=…"
    assert EndpointSpec("http://[::1]:9222", cdp=True).name == "cdp:http://[::1]:9222"


def test_the_resources_report_shows_each_endpoint_connected_and_its_contexts(tmp_path: Path) -> None:
    with run_server() as a, run_server() as b:
        core = Sidekick(remote_settings(Settings(data_dir=tmp_path), a, b)).start(warm=False)
        try:
            assert core.resources().endpoints == (
                EndpointStatus(a, connected=False, contexts=0), EndpointStatus(b, connected=False, contexts=0)
            )  # nothing opened yet
            pool = core.pool
            assert pool is not None
            core.runtime.run(pool.warm(), 60)  # the spare: one context, on one of them
            report = core.resources()
            assert all(ep.connected for ep in report.endpoints)
            assert sorted(ep.contexts for ep in report.endpoints) == [0, 1] and report.contexts == 1
            a.kill()
            down = poll(lambda: not core.resources().endpoints[0].connected, timeout=10)
            assert down
            status = core.resources().endpoints
            assert not status[0].connected and status[0].contexts == 0 and "lost" in status[0].problem
            assert status[1].connected
        finally:
            core.close()


# -- placement, drops, reconnects ----------------------------------------------------------------
async def test_new_sessions_go_to_the_least_loaded_endpoint(
    remote: BrowserPool, servers: tuple[RunServer, RunServer], site: LocalSite
) -> None:
    a, b = servers
    sessions = [await remote.new_session_browser() for _ in range(4)]
    try:
        placed = [on(remote, sb) for sb in sessions]
        assert sorted(placed) == sorted([a, a, b, b])
        assert (await server_contexts(remote, a), await server_contexts(remote, b)) == (2, 2)
        # Two closed on a: the next two go there.
        for sb in [sb for sb in sessions if on(remote, sb) == a]:
            await sb.aclose()
        assert await server_contexts(remote, a) == 0
        sessions += [await remote.new_session_browser() for _ in range(2)]
        assert [on(remote, sb) for sb in sessions[-2:]] == [a, a]
        shot = await sessions[-1].goto(site.url("/about"))
        assert shot.title == "About"
        status = {s.name: (s.connected, s.contexts) for s in remote.endpoint_status()}
        assert status == {a: (True, 2), b: (True, 2)}
        assert a.renderers() >= 1  # the page that loaded is on the server's Chromium
    finally:
        for sb in sessions:
            await sb.aclose()


async def test_a_dropped_endpoint_fails_calls_plainly_moves_sessions_and_is_retried(
    remote: BrowserPool, servers: tuple[RunServer, RunServer], site: LocalSite
) -> None:
    a, b = servers
    first, second = await remote.new_session_browser(), await remote.new_session_browser()
    doomed = first if on(remote, first) == a else second
    survivor = second if doomed is first else first
    try:
        await doomed.goto(site.url("/set-cookie?value=kept"))
        in_flight = asyncio.ensure_future(doomed.goto(site.url("/hang")))
        await wait_until(lambda: "/hang" in site.hits, what="the request reached the site")
        a.kill()
        with pytest.raises(BrowserCrashedError) as failed:
            await asyncio.wait_for(in_flight, 15)
        message = str(failed.value)
        assert message.startswith(f"The connection to the browser server {a} was lost.")
        assert "closed" not in message.lower() and "Traceback" not in message
        assert not doomed.alive and survivor.alive
        with pytest.raises(BrowserCrashedError, match="was lost"):
            await doomed.goto(site.url("/"))  # its next call says so too, until its owner moves it
        status = {s.name: s for s in remote.endpoint_status()}
        assert not status[a].connected and status[a].contexts == 0 and status[a].problem
        assert status[b].connected

        # The session's next context opens on the other endpoint (the caller restores its state).
        moved = await remote.new_session_browser()
        try:
            assert on(remote, moved) == b
            assert (await moved.goto(site.url("/about"))).title == "About"
            assert (await survivor.goto(site.url("/"))).url == site.url("/")

            # The endpoint comes back: the pool reconnects by itself (backoff from 1 s) and new
            # sessions go there again, as the less loaded one.
            a.restart()
            await wait_until(lambda: endpoint(remote, a).connected, timeout=20, what="reconnected to a")
            back = await remote.new_session_browser()
            try:
                assert on(remote, back) == a
                assert (await back.goto(site.url("/about"))).title == "About"
            finally:
                await back.aclose()
            assert endpoint(remote, a).drops == 1 and remote.crashes == 1
        finally:
            await moved.aclose()
    finally:
        await doomed.aclose()
        await survivor.aclose()


async def test_with_every_endpoint_down_a_new_session_gets_a_plain_error_and_the_pool_closes_quickly(
    settings: Settings,
) -> None:
    with run_server() as a:
        pool = BrowserPool(remote_settings(settings, a), timeouts=Timeouts(launch=5), warm_spare=False)
        try:
            sb = await pool.new_session_browser()
            a.kill()
            await wait_until(lambda: not pool.browser_connected(), what="the pool saw the drop")
            with pytest.raises(BrowserUnavailableError, match=f"The browser server {a} could not be reached"):
                await pool.new_session_browser()
            retrying = endpoint(pool, a).retrying
            assert retrying is not None and not retrying.done()
            await sb.aclose()
        finally:
            await asyncio.wait_for(pool.aclose(), 10)  # the retry loop stops with the pool
        assert retrying.done()


# -- the lifecycle promise, remotely -------------------------------------------------------------
async def test_100_churned_sessions_leave_no_context_on_either_server(
    settings: Settings, servers: tuple[RunServer, RunServer], site: LocalSite
) -> None:
    a, b = servers
    pool = BrowserPool(remote_settings(settings, a, b))  # with the warm spare, as in production

    async def churn(n: int) -> str:
        sb = await pool.new_session_browser()
        try:
            await sb.goto(site.url(f"/chapter/{n % 5}"))
            return on(pool, sb)
        finally:
            await sb.aclose()

    try:
        placed: list[str] = []
        for start in range(0, 100, 4):
            placed += await asyncio.gather(*(churn(n) for n in range(start, start + 4)))
        assert placed.count(a) >= 30 and placed.count(b) >= 30, "both servers took sessions"
        await pool.warm()
        # Only the warm spare is left: one context on one of the servers, by their own count.
        left = await server_contexts(pool, a) + await server_contexts(pool, b)
        assert left == pool.open_contexts == 1 and pool.session_contexts == 0
    finally:
        await pool.aclose()
    # Our connections are closed: each server ends the Chromium it ran for us, none is left.
    assert until_empty(a.browser_pids, timeout=10) == ()
    assert until_empty(b.browser_pids, timeout=10) == ()
    assert until_empty(lambda: local_browser_processes(a, b), timeout=10) == set()
    assert a.running and b.running  # the servers themselves serve on


async def test_closing_the_pool_closes_its_contexts_on_a_devtools_browser_it_only_disconnects_from(
    settings: Settings, tmp_path: Path, site: LocalSite
) -> None:
    with devtools_chromium(settings, tmp_path / "profile") as chromium:
        pool = BrowserPool(remote_settings(settings, f"cdp:{chromium.url}"))
        sessions = [await pool.new_session_browser() for _ in range(3)]
        for sb in sessions:
            await sb.goto(site.url("/about"))
        await sessions[0].aclose()
        async with async_playwright() as pw:
            watcher = await pw.chromium.connect_over_cdp(chromium.url)
            cdp = await watcher.new_browser_cdp_session()

            async def contexts() -> int:
                return len((await cdp.send("Target.getBrowserContexts"))["browserContextIds"])

            try:
                assert await contexts() == 3  # two sessions' and the warm spare
                await pool.aclose()
                assert await contexts() == 0
                assert chromium.process.poll() is None, "the browser is not ours to end"
            finally:
                await cdp.detach()
                await watcher.close()


async def test_remote_contexts_browse_through_the_guard_with_credentials_of_their_own(
    settings: Settings, site: LocalSite
) -> None:
    guard = Guard(UrlPolicy(allow_private_network=True, blocked_domains=("blocked.test",)))
    with run_server() as a:
        pool = BrowserPool(remote_settings(settings, a), guard=guard, warm_spare=False)
        try:
            first, second = await pool.new_session_browser(), await pool.new_session_browser()
            proxies = list(endpoint(pool, a).contexts.values())
            assert all(p is not None for p in proxies) and len({p.username for p in proxies if p}) == 2
            assert guard._http.granted == 2  # one grant per context, nothing else
            assert (await first.goto(site.url("/about"))).title == "About"
            with pytest.raises(NavigationError, match="web policy"):
                await second.goto("http://blocked.test/")
            await first.aclose()
            assert guard._http.granted == 1  # revoked with its context
            await second.aclose()
            assert guard._http.granted == 0
        finally:
            await pool.aclose()


async def test_reset_tab_close_idle_and_exit_close_the_contexts_on_the_server(
    settings: Settings, store: Store, site: LocalSite
) -> None:
    active = {"reset": True, "idle": True, "tab": True, "exit": True}
    with run_server() as a:
        remote = remote_settings(dataclasses.replace(settings, idle_minutes=1, session_grace_seconds=1), a)
        pool = BrowserPool(remote, warm_spare=False)
        registry = SessionRegistry(
            SessionDeps(settings=remote, pool=pool, store=store, models=None),
            is_active=lambda sid: active[sid],
            sweep_interval=3600,
        )
        try:
            for sid in active:
                await registry.get(sid).open_url(site.url("/about"))
            assert await server_contexts(pool, a) == 4
            await registry.reset("reset")
            assert await server_contexts(pool, a) == 3
            now = time.monotonic()
            for sid in ("reset", "tab", "exit"):
                registry.get(sid).last_active = now + 61  # used just now, when the sweep comes
            await registry.sweep(now + 61)  # idle: "idle" was last used a minute before
            assert not registry.get("idle").has_browser and await server_contexts(pool, a) == 2
            active["tab"] = False  # the dashboard tab went away
            await registry.sweep(now + 1)
            await registry.sweep(now + 3)
            assert "tab" not in registry and await server_contexts(pool, a) == 1
            await registry.aclose()  # exit
            assert await server_contexts(pool, a) == 0
        finally:
            await registry.aclose()
            await pool.aclose()
