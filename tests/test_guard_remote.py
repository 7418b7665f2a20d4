"""The web policy on a browser elsewhere: a real ``playwright run-server``, its contexts on the guard's
HTTP proxy with credentials of their own.

Names and addresses work as in ``tests/test_guard.py``: ``public.test`` resolves to a public address
that the test dialer connects to 127.0.0.1, and the dialer refuses every other non-loopback address.
A server on 127.0.0.2 stands for a private target and counts every connection made to it. Each test
checks the proxy on its own (a context without the guard's Playwright hooks, so only the proxy stands
between the page and the target) and, where the hooks add something, the full guard.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from sidekick.browser.chromium import find_browser
from sidekick.config import Settings
from sidekick.web.guard import ContextProxy, Guard
from sidekick.web.policy import UrlPolicy
from tests.support.fakes.site import LocalSite
from tests.support.guard import PUBLIC_ADDRESS, LoopbackDialer, PrivateTarget, eventually, fake_resolve, reported
from tests.support.run_server import RunServer, run_server

POLICY = UrlPolicy(blocked_domains=("blocked.test",))
METADATA = "http://169.254.169.254/latest/meta-data/"


@pytest.fixture(scope="module")
def server() -> Iterator[RunServer]:
    with run_server() as s:
        yield s


@dataclass
class Remote:
    guard: Guard
    dialer: LoopbackDialer
    browser: Browser
    site: LocalSite
    proxies: list[ContextProxy] = field(default_factory=list)

    def public(self, path: str = "/") -> str:
        return f"http://public.test:{self.site.port}{path}"

    async def page(self, *, hooks: bool) -> tuple[Page, list[tuple[str, str]]]:
        """A page in a new context on the guard's proxy; ``hooks`` adds the guard's Playwright hooks."""
        proxy = await self.guard.open_context_proxy()
        self.proxies.append(proxy)
        context: BrowserContext = await self.browser.new_context(proxy=proxy.playwright)  # type: ignore[arg-type]
        reports: list[tuple[str, str]] = []
        if hooks:
            await self.guard.install(context, lambda url, reason: reports.append((url, reason)))
        return await context.new_page(), reports


@pytest.fixture
async def remote(server: RunServer, settings: Settings, site: LocalSite) -> AsyncIterator[Remote]:
    dialer = LoopbackDialer()
    guard = Guard(POLICY, resolve=fake_resolve, dial=dialer)
    await guard.start()
    options = {"headless": True, "executablePath": find_browser(settings), "args": guard.remote_launch_args()}
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.connect(
                server.url, timeout=30_000, headers={"x-playwright-launch-options": json.dumps(options)}
            )
            remote = Remote(guard, dialer, browser, site)
            try:
                yield remote
            finally:
                for context in browser.contexts:
                    await context.close()
                for proxy in remote.proxies:
                    proxy.close()
                await browser.close()
    finally:
        await guard.aclose()


def count_is(reports: list[tuple[str, str]], n: int) -> Callable[[], bool]:
    return lambda: len(reports) == n


async def refused_page(page: Page, url: str) -> str:
    """Load ``url``; the refusal the page shows (the proxy's 403 text), or Chromium's error."""
    try:
        response = await page.goto(url, timeout=10_000)
    except PlaywrightError as error:
        return error.message.splitlines()[0]
    assert response is not None and response.status == 403, (url, response and response.status)
    return await page.text_content("body") or ""


async def test_an_allowed_page_loads_through_the_guard_with_the_contexts_own_credentials(remote: Remote) -> None:
    page, reports = await remote.page(hooks=True)
    await page.goto(remote.public("/about"))
    assert await page.title() == "About" and "4217" in (await page.text_content("body") or "")
    await page.goto(remote.public("/set-cookie?value=ada"))
    await page.goto(remote.public("/cookies"))
    assert await page.text_content("#c") == "sk=ada"
    assert reports == [] and remote.dialer.attempts
    assert all(address == PUBLIC_ADDRESS for address, _ in remote.dialer.attempts)
    # Revoked credentials: the context can no longer go anywhere (the proxy answers 407 to all).
    remote.proxies[0].close()
    response = await page.goto(remote.public("/about?after=revoke"), timeout=10_000)
    assert response is not None and response.status == 407
    assert "/about" in remote.site.hits and remote.site.hits.count("/about") == 1


async def test_denied_navigations_are_refused_by_the_proxy_alone(remote: Remote, target: PrivateTarget) -> None:
    page, _ = await remote.page(hooks=False)
    port = remote.site.port
    refusals = {
        f"http://127.0.0.1:{port}/about": "127.0.0.1 is a loopback address",
        target.url("/secret"): "127.0.0.2 is a loopback address",
        f"http://0x7f000001:{port}/about": "loopback",
        METADATA: "cloud metadata",
        "http://intranet.test/": "intranet.test resolves to 10.0.0.7",
        f"http://blocked.test:{port}/": "blocked list",
    }
    for url, rule in refusals.items():
        assert rule in await refused_page(page, url), url
    # https:// goes through CONNECT: Chromium fails the tunnel it was refused.
    assert "ERR_TUNNEL_CONNECTION_FAILED" in await refused_page(page, f"https://127.0.0.2:{target.port}/")
    assert target.connections == 0 and remote.site.hits == [] and remote.dialer.attempts == []
    assert remote.guard.blocked >= len(refusals) + 1


async def test_with_the_hooks_denied_navigations_stop_before_the_proxy_and_are_reported(
    remote: Remote, target: PrivateTarget
) -> None:
    page, reports = await remote.page(hooks=True)
    denied = {  # Chromium reports a URL in its canonical form: 0x7f000001 is 127.0.0.1
        target.url("/secret"): "127.0.0.2",
        METADATA: "169.254.169.254",
        f"http://0x7f000001:{remote.site.port}/": "127.0.0.1",
        "http://blocked.test/": "blocked.test",
    }
    for url, host in denied.items():
        with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
            await page.goto(url, timeout=10_000)
        assert reported(reports, host), url
    assert target.connections == 0 and remote.dialer.attempts == []


async def test_redirects_to_denied_targets_never_reach_them(remote: Remote, target: PrivateTarget) -> None:
    secret = target.url("/secret")
    second_hop = remote.public(f"/redirect?to={secret}")
    hops = (secret, second_hop, METADATA, f"http://0x7f000001:{remote.site.port}/about", "http://intranet.test/")
    # The proxy alone: Chromium shows the proxy's refusal (redirect hops are never routed, so the hooks
    # cannot stop them; the proxy is what does).
    page, _ = await remote.page(hooks=False)
    for hop in hops:
        assert "Sidekick's web policy refused this" in await refused_page(page, remote.public(f"/redirect?to={hop}"))
    # With the hooks, a page that landed on a denied address is also reported and sent to about:blank.
    page, reports = await remote.page(hooks=True)
    await refused_page(page, remote.public(f"/redirect?to={secret}"))
    assert await eventually(lambda: reported(reports, "127.0.0.2"))
    assert await eventually(lambda: page.url == "about:blank")
    # A sub-resource that redirects.
    remote.site.route("/img-redirect", f'<img src="/redirect?to={secret}.png">')
    await page.goto(remote.public("/img-redirect"))
    await page.wait_for_load_state("load")
    assert target.connections == 0
    assert remote.site.hits.count("/redirect") == len(hops) + 3 and "/about" not in remote.site.hits
    assert not remote.dialer.dialed("169.254.169.254")


async def test_denied_subresources_are_refused_and_reported(remote: Remote, target: PrivateTarget) -> None:
    port = remote.site.port
    remote.site.route(
        "/embeds",
        f"""<img src="http://127.0.0.1:{port}/private.png">
        <img src="http://0x7f000001:{port}/hex.png">
        <img src="http://blocked.test:{port}/blocked.png">
        <img src="http://intranet.test:{port}/intranet.png">
        <script>fetch("{target.url('/fetched')}").catch(() => {{}});</script>""",
    )
    for hooks in (False, True):
        page, reports = await remote.page(hooks=hooks)
        await page.goto(remote.public("/embeds"))
        await page.wait_for_load_state("load")
        if hooks:
            assert await eventually(count_is(reports, 5)), reports
    assert target.connections == 0
    assert set(remote.site.hits) <= {"/embeds", "/favicon.ico"}  # none of the denied images


async def test_websockets_to_denied_hosts_are_refused(remote: Remote, target: PrivateTarget) -> None:
    sockets = [
        f"ws://127.0.0.2:{target.port}/socket",
        f"ws://0x7f000001:{remote.site.port}/socket",
        METADATA.replace("http", "ws"),
    ]
    script = "".join(
        f"<script>new WebSocket('{url}').onerror = () => {{ document.title += 'x'; }};</script>" for url in sockets
    )
    remote.site.route("/ws", f"<html><head><title></title></head><body>{script}</body></html>")
    for hooks in (False, True):
        page, reports = await remote.page(hooks=hooks)
        await page.goto(remote.public("/ws"))
        await page.wait_for_function("document.title === 'xxx'", timeout=10_000)
        if hooks:
            assert await eventually(count_is(reports, 3)), reports
    assert target.connections == 0 and "/socket" not in remote.site.hits
    assert all(address == PUBLIC_ADDRESS for address, _ in remote.dialer.attempts)
