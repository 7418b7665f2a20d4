"""The team deployment as the README describes it: two dashboard replicas sharing one PostgreSQL
database behind nginx (deploy/nginx.conf), driven by a real browser through the balancer.

A conversation started on one replica opens with its history on the other; it runs on one replica at
a time (a lease in the database); a killed replica's lease expires on its own; a replica's SIGTERM
frees its browsers and releases its leases.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from sidekick.store.postgres import PostgresStore
from tests.support.child import is_alive
from tests.support.dashboard import ERROR, IMAGE, DashboardServer, open_app, sidekick_server, wait_idle
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.postgres import Cluster, cluster_or_skip
from tests.support.replicas import Balancer, cookie_for, nginx_binary
from tests.support.runs import verdict
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHAT_INPUT = "[data-testid='stChatInputTextArea']"
RUN_TIMEOUT = 60_000
LEASE_SECONDS = 6
LIVE_IMAGE = ".st-key-live-view img"
TICKER = (  # repaints three times a second, so the live view always has a new frame
    "<html><head><title>Ticker</title></head><body><h1 id='n'>0</h1><script>"
    "let n = 0; setInterval(() => { document.getElementById('n').textContent = ++n; }, 300);"
    "</script></body></html>"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with cluster_or_skip() as running:
        yield running


@pytest.fixture
def database(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    return cluster.create_database(f"replicas_{request.node.name[-40:].lower().replace('-', '_')}")


class Deployment:
    def __init__(self, replicas: list[DashboardServer], balancer: Balancer) -> None:
        self.replicas = replicas
        self.balancer = balancer

    async def tab_on(self, browser: Browser, index: int) -> tuple[BrowserContext, Page]:
        """A person whose requests nginx sends to replica ``index`` (by the sticky cookie)."""
        port = self.replicas[index].port
        assert port is not None
        value = await asyncio.to_thread(cookie_for, self.balancer, port)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_cookies([{"name": "sidekick_replica", "value": value, "url": self.balancer.url}])
        return context, await open_app(context, self.balancer.url)


@pytest.fixture
async def deployment(
    tmp_path: Path, database: str, llm: FakeOpenAI
) -> AsyncIterator[Deployment]:
    env = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "test",
        "SIDEKICK_MODEL_RETRIES": "0",
        "SIDEKICK_DATABASE_URL": database,
        "SIDEKICK_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/ensure_nginx.sh installs it)")
    replicas = [sidekick_server(tmp_path / f"replica-{i}", **env) for i in range(2)]
    try:
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in replicas))
        with Balancer([r.port for r in replicas if r.port is not None]) as balancer:
            yield Deployment(replicas, balancer)
    finally:
        for replica in replicas:
            await asyncio.to_thread(replica.close)


async def send(page: Page, text: str) -> None:
    box = page.locator(CHAT_INPUT)
    await expect(box).to_be_enabled(timeout=RUN_TIMEOUT)
    await box.fill(text)
    await box.press("Enter")


def thread_of(page: Page) -> str:
    return parse_qs(urlsplit(page.url).query)["thread"][0]


async def lease_left(database: str, thread_id: str) -> float:
    async with await PostgresStore(database).open() as store:
        return await store.lease_seconds_left(thread_id)


async def test_a_conversation_moves_between_replicas_but_runs_on_one_at_a_time(
    deployment: Deployment, user_browser: Browser, llm: FakeOpenAI, site: LocalSite, database: str
) -> None:
    first, alice = await deployment.tab_on(user_browser, 0)
    second, other = await deployment.tab_on(user_browser, 1)
    try:
        llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("It is 4217."))
        llm.evaluator(verdict(True))
        await send(alice, "Find the secret number.")
        await expect(alice.get_by_text("It is 4217.", exact=True)).to_be_visible(timeout=RUN_TIMEOUT)
        thread = thread_of(alice)

        # The other replica opens it with its whole history: the record is in the database.
        await other.goto(f"{deployment.balancer.url}?thread={thread}")
        await wait_idle(other)
        await expect(other.get_by_text("It is 4217.", exact=True)).to_be_visible()
        await expect(other.get_by_text("Review 1: passed")).to_be_visible()
        await expect(other.locator(IMAGE).first).to_be_visible()

        # While replica 0 runs it, replica 1 refuses to run it too.
        site.route("/ticker", TICKER)
        llm.worker(
            Reply.tool_call("navigate", {"url": site.url("/ticker")}),
            Reply.slow(LEASE_SECONDS * 3, Reply.text("Slowly done.")),
        )
        llm.evaluator(verdict(True))
        await send(alice, "Take your time.")
        await wait_until(lambda: llm.requests and llm.requests[-1].get("stream"), timeout=30, what="the slow call")
        # Its live view streams through nginx (sticky, unbuffered): the tab's image shows frames.
        await expect(alice.locator(LIVE_IMAGE)).to_be_visible(timeout=30_000)
        await alice.wait_for_function("(sel) => document.querySelector(sel)?.naturalWidth > 0", arg=LIVE_IMAGE)
        await send(other, "Me too.")
        await expect(other.locator(ERROR)).to_contain_text("running on another Sidekick server", timeout=30_000)
        assert await lease_left(database, thread) > 0

        # Replica 0 is killed mid-run: its lease expires on its own and replica 1 may run it.
        await asyncio.to_thread(deployment.replicas[0].stop, signal.SIGKILL)
        await wait_until(lambda: lease_left(database, thread), timeout=5, what="the lease still held")
        expiry = LEASE_SECONDS * 2 + 5
        await wait_until(lambda: _expired(database, thread), timeout=expiry, what="the killed replica's lease gone")
        llm.reset()
        llm.worker(Reply.text("Now from the other replica."))
        llm.evaluator(verdict(True))
        await send(other, "Go on.")
        await expect(other.get_by_text("Now from the other replica.", exact=True)).to_be_visible(timeout=RUN_TIMEOUT)
    finally:
        await first.close()
        await second.close()


async def _expired(database: str, thread: str) -> bool:
    return await lease_left(database, thread) == 0


async def test_sigterm_frees_a_replicas_browsers_and_releases_its_leases(
    deployment: Deployment, user_browser: Browser, llm: FakeOpenAI, database: str
) -> None:
    context, page = await deployment.tab_on(user_browser, 1)
    try:
        llm.reset()
        llm.worker(Reply.slow(60, Reply.text("Never seen.")))
        await send(page, "A long task.")
        await wait_until(lambda: llm.requests, timeout=30, what="the model asked")
        thread = thread_of(page)
        assert await lease_left(database, thread) > 0
        replica = deployment.replicas[1]
        report = replica.browser_processes()
        procs = [p for p in (psutil.Process(pid) for pid in report.driver_pids + report.browser_pids)]
        assert procs, "the replica's browser was not running"
        code = await asyncio.to_thread(replica.stop, signal.SIGTERM, 20.0)
        # uvicorn shuts down gracefully, then re-raises SIGTERM: the process ends by the signal.
        assert not replica.killed and code in (0, -signal.SIGTERM), replica.output()
        assert await lease_left(database, thread) == 0  # released at once, not left to expire
        await wait_until(lambda: not any(is_alive(p) for p in procs), timeout=5, what="every browser process gone")
    finally:
        await context.close()
