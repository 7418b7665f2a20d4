"""The guard's HTTP proxy (CONNECT and plain GET, per-context credentials), spoken to over real sockets.

Names and addresses work as in ``tests/test_guard.py``: ``public.test`` resolves to a public address
that the test dialer connects to 127.0.0.1, and the dialer refuses every other non-loopback address,
so nothing leaves this machine whatever the guard decides.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from sidekick.errors import BrowserError, ConfigError
from sidekick.web.guard import ContextProxy, Guard
from sidekick.web.policy import UrlPolicy
from tests.support.fakes.site import LocalSite
from tests.support.guard import DENY_PRIVATE, PUBLIC_ADDRESS, LoopbackDialer, fake_resolve


@dataclass
class Proxied:
    guard: Guard
    dialer: LoopbackDialer
    proxy: ContextProxy
    site: LocalSite

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.proxy.server.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def auth(self, proxy: ContextProxy | None = None, password: str | None = None) -> str:
        proxy = proxy or self.proxy
        token = f"{proxy.username}:{password if password is not None else proxy.password}"
        return "Proxy-Authorization: Basic " + base64.b64encode(token.encode()).decode() + "\r\n"

    async def ask(self, head: str) -> tuple[int, bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        """Send ``head``; the status code, the answer's head, and the open connection."""
        reader, writer = await asyncio.open_connection(*self.address)
        writer.write(head.encode())
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return int(answer.split(b" ", 2)[1]), answer, reader, writer

    async def status(self, head: str) -> int:
        code, _, _, writer = await self.ask(head)
        writer.close()
        return code


@pytest.fixture
async def proxied(site: LocalSite) -> AsyncIterator[Proxied]:
    dialer = LoopbackDialer()
    guard = Guard(UrlPolicy(blocked_domains=("blocked.test",)), resolve=fake_resolve, dial=dialer)
    await guard.start()
    try:
        yield Proxied(guard, dialer, await guard.open_context_proxy(), site)
    finally:
        await guard.aclose()


async def test_missing_wrong_and_revoked_credentials_get_407(proxied: Proxied) -> None:
    connect = f"CONNECT public.test:{proxied.site.port} HTTP/1.1\r\nHost: public.test\r\n"
    code, head, _, writer = await proxied.ask(connect + "\r\n")
    writer.close()
    assert code == 407 and b'Proxy-Authenticate: Basic realm="Sidekick web policy"' in head
    assert await proxied.status(connect + proxied.auth(password="wrong") + "\r\n") == 407
    assert await proxied.status(connect + "Proxy-Authorization: Basic !!notbase64\r\n\r\n") == 407
    assert await proxied.status(connect + "Proxy-Authorization: Bearer x\r\n\r\n") == 407
    # Another context's credentials are its own; revoking them leaves ours working.
    other = await proxied.guard.open_context_proxy()
    assert other.username != proxied.proxy.username and other.password != proxied.proxy.password
    assert await proxied.status(connect + proxied.auth(other) + "\r\n") == 200
    other.close()
    other.close()  # idempotent
    assert await proxied.status(connect + proxied.auth(other) + "\r\n") == 407
    assert await proxied.status(connect + proxied.auth() + "\r\n") == 200
    assert proxied.dialer.attempts == [(PUBLIC_ADDRESS, proxied.site.port)] * 2
    # Nothing about the credentials is in what a log or an error would show.
    assert proxied.proxy.password not in repr(proxied.proxy) and proxied.proxy.username not in repr(proxied.proxy)


async def test_revoking_credentials_ends_their_open_tunnels(proxied: Proxied) -> None:
    code, _, reader, writer = await proxied.ask(
        f"CONNECT public.test:{proxied.site.port} HTTP/1.1\r\n{proxied.auth()}\r\n"
    )
    assert code == 200
    proxied.proxy.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_denied_targets_get_403_and_are_never_dialed(proxied: Proxied) -> None:
    port = proxied.site.port
    denied = {
        "CONNECT 169.254.169.254:80 HTTP/1.1": "cloud metadata",
        f"CONNECT 127.0.0.1:{port} HTTP/1.1": "loopback",
        f"CONNECT 0x7f000001:{port} HTTP/1.1": "loopback",
        f"CONNECT [::ffff:127.0.0.1]:{port} HTTP/1.1": "loopback",
        "CONNECT intranet.test:443 HTTP/1.1": "10.0.0.7",
        f"CONNECT blocked.test:{port} HTTP/1.1": "blocked",
        "CONNECT nowhere.zzz:443 HTTP/1.1": "could not resolve",
        f"GET http://127.0.0.1:{port}/about HTTP/1.1": "loopback",
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1": "cloud metadata",
        f"GET http://2130706433:{port}/about HTTP/1.1": "loopback",
    }
    for line, rule in denied.items():
        _, head, reader, writer = await proxied.ask(f"{line}\r\nHost: x\r\n{proxied.auth()}\r\n")
        body = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 403 "), line
        assert rule in body.decode(), (line, body)
    assert proxied.dialer.attempts == [] and proxied.site.hits == []
    assert proxied.guard.blocked == len(denied)


async def test_an_allowed_tunnel_is_relayed_to_the_checked_address(proxied: Proxied) -> None:
    code, _, reader, writer = await proxied.ask(
        f"CONNECT public.test:{proxied.site.port} HTTP/1.1\r\nHost: public.test\r\n{proxied.auth()}\r\n"
    )
    assert code == 200
    writer.write(b"GET /about HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n")
    assert b"The secret number is 4217" in await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert proxied.dialer.attempts == [(PUBLIC_ADDRESS, proxied.site.port)]


@dataclass
class HeadRecorder:
    """A server on 127.0.0.1 that keeps the head of each request and answers with a small page,
    offering to keep the connection open (as a server that ignores ``Connection: close`` would)."""

    heads: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nhello"
        )
        await writer.drain()
        await reader.read()  # until the proxy closes its side
        writer.close()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_plain_get_is_checked_rewritten_and_relayed(proxied: Proxied) -> None:
    recorder = HeadRecorder()
    port = await recorder.start()
    try:
        code, answer, reader, writer = await proxied.ask(
            f"GET http://public.test:{port}/page?q=1 HTTP/1.1\r\nHost: public.test:{port}\r\n"
            f"Proxy-Connection: keep-alive\r\nAccept: text/html\r\n{proxied.auth()}\r\n"
        )
        assert code == 200 and await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        # The client is told the connection ends here, whatever the site offered.
        assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        writer.close()
    finally:
        await recorder.aclose()
    [head] = recorder.heads
    assert head.startswith(b"GET /page?q=1 HTTP/1.1\r\n")
    assert b"Accept: text/html\r\n" in head and b"Connection: close\r\n" in head
    assert b"Proxy-" not in head and proxied.proxy.password.encode() not in head
    assert proxied.dialer.attempts == [(PUBLIC_ADDRESS, port)]


async def test_requests_it_does_not_serve_get_a_clear_400(proxied: Proxied) -> None:
    for line in (
        "GET /about HTTP/1.1",  # origin form: not a proxy request
        f"GET https://public.test:{proxied.site.port}/ HTTP/1.1",  # https goes through CONNECT
        "CONNECT public.test HTTP/1.1",  # no port
        "CONNECT public.test:0 HTTP/1.1",
        "BREW coffee",
    ):
        _, head, reader, writer = await proxied.ask(f"{line}\r\n{proxied.auth()}\r\n")
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 400 "), line
    assert proxied.dialer.attempts == []


async def test_the_listener_address_and_launch_flags() -> None:
    with pytest.raises(ConfigError, match="wildcard"):
        Guard(DENY_PRIVATE, listen="0.0.0.0:3129")
    with pytest.raises(ConfigError, match="host:port"):
        Guard(DENY_PRIVATE, listen="10.0.0.5")
    guard = Guard(DENY_PRIVATE, listen="127.0.0.1:0")
    assert "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" in guard.remote_launch_args()
    with pytest.raises(BrowserError, match="Start the web policy guard"):
        await guard.open_context_proxy()
    await guard.start()
    try:
        first, second = await asyncio.gather(guard.open_context_proxy(), guard.open_context_proxy())
        assert first.server == second.server and first.server.startswith("http://127.0.0.1:")
        assert first.playwright == {"server": first.server, "username": first.username, "password": first.password}
    finally:
        await guard.aclose()
