"""The web policy guard in a real Chromium: what it blocks never reaches a server, and is reported.

The fake resolver and dialer of tests/support/guard.py keep every connection on this machine; the
``target`` fixture (a server on 127.0.0.2) stands for a private target and records every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError

from sidekick.browser.context import SessionBrowser
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.errors import BrowserError, NavigationError
from sidekick.web.guard import Guard
from sidekick.web.policy import UrlPolicy
from tests.support.fakes.site import LocalSite
from tests.support.guard import (
    DENY_PRIVATE,
    PUBLIC_ADDRESS,
    LoopbackDialer,
    PrivateTarget,
    eventually,
    fake_resolve,
    reported,
)


@dataclass
class Guarded:
    pool: BrowserPool
    guard: Guard
    dialer: LoopbackDialer
    site: LocalSite

    def public(self, path: str = "/") -> str:
        return f"http://public.test:{self.site.port}{path}"

    async def session(self) -> tuple[SessionBrowser, list[tuple[str, str]]]:
        reports: list[tuple[str, str]] = []
        sb = await self.pool.new_session_browser(report=lambda url, reason: reports.append((url, reason)))
        return sb, reports


@pytest.fixture
async def guarded(settings: Settings, site: LocalSite) -> AsyncIterator[Guarded]:
    dialer = LoopbackDialer()
    guard = Guard(DENY_PRIVATE, resolve=fake_resolve, dial=dialer)
    await guard.start()
    pool = BrowserPool(settings, warm_spare=False, guard=guard)
    try:
        yield Guarded(pool, guard, dialer, site)
    finally:
        await pool.aclose()
        await guard.aclose()


# -- allowed traffic -------------------------------------------------------------------------------
async def test_allowed_pages_cookies_and_forms_work_through_the_guard(guarded: Guarded) -> None:
    sb, reports = await guarded.session()
    shot = await sb.goto(guarded.public("/about"))
    assert shot.title == "About" and "4217" in (await sb.page.text_content("body") or "")
    await sb.goto(guarded.public("/set-cookie?value=alice"))
    await sb.goto(guarded.public("/cookies"))
    assert await sb.page.text_content("#c") == "sk=alice"
    await sb.goto(guarded.public("/form"))
    await sb.page.fill("#name", "Ada")
    async with sb.page.expect_navigation():
        await sb.page.click("text=Send")
    assert await sb.page.text_content("body") == "Thanks, Ada!"
    assert reports == [] and guarded.dialer.attempts
    assert all(address == PUBLIC_ADDRESS for address, _ in guarded.dialer.attempts)


async def test_allow_private_network_reaches_loopback_but_never_files(guarded: Guarded) -> None:
    guarded.guard.policy = UrlPolicy(allow_private_network=True)  # applies at once, cache or not
    sb, reports = await guarded.session()
    assert (await sb.goto(guarded.site.url("/about"))).title == "About"
    with pytest.raises(NavigationError, match=r"web policy.*file: scheme"):
        await sb.goto("file:///etc/passwd")
    assert reported(reports, "file:///etc/passwd")
    guarded.guard.policy = DENY_PRIVATE
    with pytest.raises(NavigationError, match="loopback"):
        await sb.goto(guarded.site.url("/about"))


# -- redirects -------------------------------------------------------------------------------------
async def test_a_redirect_to_cloud_metadata_is_blocked_before_it_leaves(guarded: Guarded) -> None:
    sb, reports = await guarded.session()
    metadata = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(NavigationError):
        await sb.goto(guarded.public(f"/redirect?to={metadata}"))
    assert await eventually(lambda: reported(reports, metadata))
    assert "cloud metadata" in reported(reports, metadata)[0]
    assert not guarded.dialer.dialed("169.254.169.254")
    assert (await sb.goto(guarded.public("/about"))).title == "About"  # the session keeps working


async def test_redirects_to_a_private_server_never_reach_it(guarded: Guarded, target: PrivateTarget) -> None:
    sb, reports = await guarded.session()
    secret = target.url("/secret")
    # One hop, then two: the second hop comes from an allowed server, where route.fetch would miss it.
    second_hop = guarded.public(f"/redirect?to={secret}")
    for url in (guarded.public(f"/redirect?to={secret}"), guarded.public(f"/redirect?to={second_hop}")):
        # A fresh page each time: after a failed load on a page already showing Chromium's error page,
        # SessionBrowser.goto cannot tell when the new error page commits, and it interrupts the next goto.
        await sb.context.new_page()
        with pytest.raises(NavigationError):
            await sb.goto(url)
    # And a sub-resource that redirects.
    guarded.site.route("/img-redirect", f'<img src="/redirect?to={secret}.png">')
    await sb.goto(guarded.public("/img-redirect"))
    await sb.page.wait_for_load_state("load")
    assert await eventually(lambda: len(reported(reports, secret)) == 3)
    assert all("loopback" in reason for reason in reported(reports, secret))
    assert target.connections == 0
    assert guarded.site.hits.count("/redirect") == 4


# -- sub-resources, WebSockets, workers ------------------------------------------------------------
async def test_private_subresources_are_blocked_and_reported(guarded: Guarded, target: PrivateTarget) -> None:
    sb, reports = await guarded.session()
    port = guarded.site.port
    guarded.site.route(
        "/embeds",
        f"""<img src="http://127.0.0.1:{port}/private.png">
        <img src="http://intranet.test:{port}/intranet.png">
        <script>
          fetch("{target.url('/fetched')}").catch(() => {{}});
          const source = 'fetch("{target.url('/from-worker')}").catch(() => {{}})';
          new Worker(URL.createObjectURL(new Blob([source])));
        </script>""",
    )
    await sb.goto(guarded.public("/embeds"))
    await sb.page.wait_for_load_state("load")
    assert await eventually(lambda: len(reports) == 4), reports
    assert "loopback" in reported(reports, "/private.png")[0]
    assert "intranet.test resolves to 10.0.0.7" in reported(reports, "/intranet.png")[0]
    assert reported(reports, "/fetched") and reported(reports, "/from-worker")
    assert "/private.png" not in guarded.site.hits and "/intranet.png" not in guarded.site.hits
    assert target.connections == 0
    assert guarded.guard.blocked >= 4


async def test_websockets_to_denied_hosts_are_blocked_and_reported(guarded: Guarded, target: PrivateTarget) -> None:
    sb, reports = await guarded.session()
    socket_url = f"ws://127.0.0.2:{target.port}/socket"
    guarded.site.route(
        "/ws", f"<script>new WebSocket('{socket_url}').onerror = () => {{ document.title = 'closed'; }};</script>"
    )
    await sb.goto(guarded.public("/ws"))
    assert await eventually(lambda: reported(reports, socket_url))
    await sb.page.wait_for_function("document.title === 'closed'", timeout=5000)
    assert target.connections == 0


async def test_webrtc_sends_no_udp_around_the_proxy(guarded: Guarded) -> None:
    sb, _ = await guarded.session()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stun:
        stun.bind(("127.0.0.1", 0))
        stun.settimeout(0.3)
        await sb.goto(guarded.public("/"))
        await sb.page.evaluate(
            """async (port) => {
              const pc = new RTCPeerConnection({iceServers: [{urls: 'stun:127.0.0.1:' + port}]});
              pc.createDataChannel('x');
              await pc.setLocalDescription(await pc.createOffer());
              await new Promise((done) => setTimeout(done, 1000));
              pc.close();
            }""",
            stun.getsockname()[1],
        )
        with pytest.raises(TimeoutError):
            stun.recvfrom(2048)


# -- pages that leave the web ----------------------------------------------------------------------
async def test_pages_that_end_up_off_the_web_are_reported_and_reset(guarded: Guarded) -> None:
    sb, reports = await guarded.session()
    page = sb.page
    await sb.goto(guarded.public("/"))
    # A script may navigate its own page to a blob: URL; Chromium allows it, the guard does not.
    with contextlib.suppress(PlaywrightError):  # the page may be sent away before the script returns
        await page.evaluate("location = URL.createObjectURL(new Blob(['<title>B</title>'], {type: 'text/html'}))")
    await page.wait_for_url("about:blank")
    assert reported(reports, "blob:http://public.test")
    # Same in a popup.
    await sb.goto(guarded.public("/"))
    async with sb.context.expect_page() as info:
        await page.evaluate("window.open(URL.createObjectURL(new Blob(['x'], {type: 'text/html'})))")
    popup = await info.value
    await popup.wait_for_url("about:blank")
    assert len(reported(reports, "blob:")) == 2
    # Chromium itself refuses file: popups from a web page: no page ever shows the file.
    await page.evaluate("window.open('file:///etc/passwd')")
    await asyncio.sleep(0.3)
    assert all(not p.url.startswith("file:") for p in sb.context.pages)
    # Code that bypasses SessionBrowser.goto's pre-check: Chromium routes file: URLs, so the route refuses them…
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto("file:///etc/passwd")
    assert "file: scheme is not allowed" in reported(reports, "file:///etc/passwd")[0]
    await page.wait_for_url("chrome-error://**")
    # …but not data: URLs, so the page is sent away once it is there.
    data = "data:text/html,<title>D</title>"
    await page.goto(data)
    await page.wait_for_url("about:blank")
    assert "data: scheme is not allowed" in reported(reports, data)[0]
    assert await page.title() == ""


# -- the agent's own navigations -------------------------------------------------------------------
async def test_goto_a_denied_url_is_a_policy_error_and_is_reported(guarded: Guarded) -> None:
    sb, reports = await guarded.session()
    for url, why in (
        ("http://169.254.169.254/latest/", "cloud metadata"),
        ("http://intranet.test/", "resolves to 10.0.0.7"),
        ("http://nowhere.test/", "could not resolve"),
    ):
        with pytest.raises(NavigationError, match=f"web policy did not open {url}.*{why}"):
            await sb.goto(url)
        assert why in reported(reports, url)[0]
    assert guarded.dialer.attempts == []


async def test_a_failing_check_denies_and_never_breaks_the_route(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb, reports = await guarded.session()
    await sb.goto(guarded.public("/about"))

    async def broken(url: str) -> Any:
        raise RuntimeError("bug")

    with monkeypatch.context() as patch:
        patch.setattr(guarded.guard, "check", broken)
        with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
            await sb.page.goto(guarded.public("/form"))  # not SessionBrowser.goto: its pre-check calls check
    assert "could not check it (RuntimeError)" in reported(reports, "/form")[0]
    assert "/form" not in guarded.site.hits
    await sb.page.wait_for_url("chrome-error://**")
    assert (await sb.goto(guarded.public("/about"))).title == "About"


# -- the proxy on its own --------------------------------------------------------------------------
async def socks_connect(port: int, request: bytes) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00" + request)
    reply = await reader.readexactly(10)
    return reply[1], reader, writer


async def test_the_proxy_checks_every_address_form_and_relays_allowed_ones(site: LocalSite) -> None:
    dialer = LoopbackDialer()
    guard = Guard(DENY_PRIVATE, resolve=fake_resolve, dial=dialer)
    await guard.start()
    port = int(guard.launch_args()[0].rsplit(":", 1)[1])
    site_port = site.port.to_bytes(2, "big")
    name = b"public.test"
    try:
        refused = (
            b"\x01" + socket.inet_aton("169.254.169.254") + b"\x00\x50",
            b"\x03\x0f169.254.169.254\x00\x50",
            b"\x04" + socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1") + b"\x00\x50",
            b"\x03\x0dintranet.test\x00\x50",
            b"\x03\x0bnowhere.zzz\x00\x50",
        )
        for request in refused:
            code, _, writer = await socks_connect(port, request)
            writer.close()
            assert code == 2, request
        code, reader, writer = await socks_connect(port, b"\x03" + bytes([len(name)]) + name + site_port)
        assert code == 0
        writer.write(b"GET /about HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n")
        assert b"The secret number is 4217" in await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert guard.blocked == len(refused)
        assert dialer.attempts == [(PUBLIC_ADDRESS, site.port)]
        # A connection still open when the guard closes is dropped.
        code, reader, writer = await socks_connect(port, b"\x03" + bytes([len(name)]) + name + site_port)
        await guard.aclose()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await guard.aclose()


# -- verdicts and their cache ----------------------------------------------------------------------
@dataclass
class CountingResolver:
    calls: list[str] = field(default_factory=list)
    delay: float = 0.0
    fail: bool = False

    async def __call__(self, name: str) -> list[str]:
        self.calls.append(name)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return await fake_resolve(name)


async def test_a_page_full_of_requests_costs_one_lookup_per_host() -> None:
    resolver = CountingResolver(delay=0.05)
    guard = Guard(DENY_PRIVATE, resolve=resolver)
    verdicts = await asyncio.gather(*(guard.check(f"https://public.test/img{i}.png") for i in range(200)))
    assert all(v.allowed for v in verdicts)
    await guard.check("https://PUBLIC.test./again")
    assert resolver.calls == ["public.test"]


async def test_cached_addresses_expire_and_never_outlive_a_policy_change() -> None:
    resolver = CountingResolver()
    guard = Guard(DENY_PRIVATE, resolve=resolver, cache_seconds=0.2)
    assert (await guard.check("https://public.test/")).allowed
    guard.policy = UrlPolicy(blocked_domains=("public.test",))
    assert "blocked list" in (await guard.check("https://public.test/")).reason
    guard.policy = UrlPolicy(allowed_domains=("example.org",))
    assert not (await guard.check("https://public.test/")).allowed
    guard.policy = DENY_PRIVATE
    assert (await guard.check("https://public.test/")).allowed
    assert resolver.calls == ["public.test"]
    await asyncio.sleep(0.25)
    assert (await guard.check("https://public.test/")).allowed
    assert resolver.calls == ["public.test", "public.test"]


async def test_lookup_failures_deny_and_are_retried_soon() -> None:
    resolver = CountingResolver(fail=True)
    guard = Guard(DENY_PRIVATE, resolve=resolver)
    verdict = await guard.check("https://public.test/")
    assert not verdict.allowed and "Temporary failure" in verdict.reason
    assert not (await guard.check("https://public.test/")).allowed
    assert resolver.calls == ["public.test"]  # a failure is cached briefly, not for cache_seconds
    resolver.fail = False
    await asyncio.sleep(2.1)
    assert (await guard.check("https://public.test/")).allowed


async def test_a_hanging_resolver_denies_after_the_dns_timeout() -> None:
    guard = Guard(DENY_PRIVATE, resolve=CountingResolver(delay=60), dns_timeout=0.2)
    started = time.monotonic()
    verdict = await guard.check("https://public.test/")
    assert not verdict.allowed and "no answer within 0.2s" in verdict.reason
    assert time.monotonic() - started < 1
    await guard.aclose()  # cancels the lookup still running


async def test_lifecycle_start_is_idempotent_and_close_is_final() -> None:
    guard = Guard(DENY_PRIVATE, resolve=fake_resolve)
    with pytest.raises(BrowserError, match="Start the web policy guard"):
        guard.launch_args()
    await guard.start()
    args = guard.launch_args()
    await guard.start()
    assert guard.launch_args() == args and guard.running
    await guard.aclose()
    await guard.aclose()
    with pytest.raises(BrowserError, match="closed"):
        await guard.start()
    with pytest.raises(BrowserError, match="not running"):
        await guard.install(None, lambda url, reason: None)  # type: ignore[arg-type]
