"""``SIDEKICK_PYTHON_NETWORK=1`` on the real sandbox: the web through the guard's proxy, and nothing else.

The guard is real (its HTTP proxy on a unix socket bound into the sandbox); names and addresses work
as in ``tests/test_guard.py``: ``public.test`` resolves to a public address that the test dialer
connects to 127.0.0.1, and the dialer refuses every other non-loopback address. A server on
127.0.0.2 stands for a private target and counts every connection made to it.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.tools import sandbox
from sidekick.tools.base import ToolContext
from sidekick.tools.python import PROXY_PORT, build, run_python
from sidekick.web.guard import Guard
from sidekick.web.policy import UrlPolicy
from tests.support.fakes.site import LocalSite
from tests.support.guard import PUBLIC_ADDRESS, LoopbackDialer, PrivateTarget, fake_resolve
from tests.tools.test_python import live_descendants, wait_no_new_descendants


@pytest.fixture(scope="module", autouse=True)
def real_sandbox() -> sandbox.Sandbox:
    """These tests need the real sandbox; without it they fail with the reason and the fix."""
    return sandbox.default()


@dataclass
class Networked:
    guard: Guard
    dialer: LoopbackDialer
    socket: Path
    site: LocalSite
    workspace: Path

    async def run(self, code: str) -> str:
        result = await run_python(textwrap.dedent(code), cwd=self.workspace, proxy_socket=self.socket)
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture
async def networked(site: LocalSite, tmp_path: Path) -> AsyncIterator[Networked]:
    dialer = LoopbackDialer()
    guard = Guard(UrlPolicy(blocked_domains=("blocked.test",)), resolve=fake_resolve, dial=dialer)
    await guard.start()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    try:
        yield Networked(guard, dialer, await guard.sandbox_socket(), site, workspace)
    finally:
        await guard.aclose()


async def test_urllib_reaches_an_allowed_site_through_the_guard(networked: Networked) -> None:
    port = networked.site.port
    output = await networked.run(
        f"""\
        import http.client, os, urllib.request
        print(os.environ["HTTPS_PROXY"])
        page = urllib.request.urlopen("http://public.test:{port}/about?from=sandbox", timeout=10).read().decode()
        print("plain", "4217" in page)
        # A CONNECT tunnel, as an https:// URL opens it (the test site speaks plain HTTP inside it).
        tunnel = http.client.HTTPConnection("127.0.0.1", {PROXY_PORT}, timeout=10)
        tunnel.set_tunnel("public.test", {port})
        tunnel.request("GET", "/about?from=tunnel")
        print("tunnel", "4217" in tunnel.getresponse().read().decode())
        """
    )
    assert output == f"http://127.0.0.1:{PROXY_PORT}\nplain True\ntunnel True\n"
    assert networked.site.hits == ["/about", "/about"]
    assert networked.dialer.attempts == [(PUBLIC_ADDRESS, port)] * 2


async def test_local_private_metadata_and_blocked_targets_are_refused(
    networked: Networked, target: PrivateTarget
) -> None:
    port = networked.site.port
    output = await networked.run(
        f"""\
        import http.client, urllib.error, urllib.request
        for url in ["http://127.0.0.1:{port}/about", "{target.url('/secret')}", "http://0x7f000001:{port}/",
                    "http://169.254.169.254/latest/meta-data/", "http://intranet.test/", "http://blocked.test/"]:
            try:
                urllib.request.urlopen(url, timeout=10)
                print(url, "loaded")
            except urllib.error.HTTPError as error:
                print(error.code, error.read().decode().strip())
        tunnel = http.client.HTTPConnection("127.0.0.1", {PROXY_PORT}, timeout=10)
        tunnel.set_tunnel("127.0.0.2", {target.port})
        try:
            tunnel.request("GET", "/secret")
            print("tunnel loaded")
        except OSError as error:
            print("tunnel", error)
        """
    )
    lines = output.splitlines()
    assert [line.split(" ", 1)[0] for line in lines[:6]] == ["403"] * 6, output
    for line, rule in zip(
        lines,
        ["127.0.0.1 is a loopback", "127.0.0.2 is a loopback", "0x7f000001 (127.0.0.1) is a loopback",
         "link-local (cloud metadata)", "intranet.test resolves to 10.0.0.7", "blocked.test is on the blocked list"],
        strict=False,
    ):
        assert rule in line, (rule, line)
    assert lines[6] == "tunnel Tunnel connection failed: 403 Forbidden", output
    assert target.connections == 0 and networked.site.hits == [] and networked.dialer.attempts == []
    assert networked.guard.blocked == 7


async def test_nothing_but_the_proxy_leads_out(networked: Networked, target: PrivateTarget) -> None:
    port = networked.site.port
    output = await networked.run(
        f"""\
        import socket, urllib.request
        for address in [("127.0.0.1", {port}), ("127.0.0.2", {target.port}), ("{PUBLIC_ADDRESS}", 80)]:
            try:
                socket.create_connection(address, timeout=3).close()
                print(address[0], "connected")
            except OSError as error:
                print(address[0], type(error).__name__)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))  # ignores the variables
        try:
            direct.open("http://public.test:{port}/about", timeout=3)
            print("direct loaded")
        except OSError as error:
            print("direct", type(error.reason).__name__)
        """
    )
    assert output == (
        "127.0.0.1 ConnectionRefusedError\n127.0.0.2 ConnectionRefusedError\n"
        f"{PUBLIC_ADDRESS} OSError\ndirect gaierror\n"
    )
    assert target.connections == 0 and networked.site.hits == [] and networked.dialer.attempts == []


async def test_the_forwarder_ends_with_the_run_and_the_socket_with_the_guard(networked: Networked) -> None:
    before = live_descendants()
    assert await networked.run("print('done')") == "done\n"
    assert await wait_no_new_descendants(before) == set()
    folder = networked.socket.parent
    assert folder.stat().st_mode & 0o077 == 0  # only our user can open the socket
    await networked.guard.aclose()
    assert not folder.exists()


async def test_the_tool_uses_the_guard_only_when_network_is_asked_for(networked: Networked, tmp_path: Path) -> None:
    async def proxy_socket() -> Path:
        return networked.socket

    def ctx(network: bool, with_proxy: bool = True) -> ToolContext:
        return ToolContext(
            settings=Settings(enable_python=True, python_network=network),
            workspace=tmp_path / "tool-ws",
            proxy_socket=proxy_socket if with_proxy else None,
        )

    fetch = f"import urllib.request\nprint(urllib.request.urlopen('http://public.test:{networked.site.port}/about').status)"
    [online] = build(ctx(network=True))
    assert "web access through an HTTP proxy" in online.description
    assert await online.ainvoke({"code": fetch}) == "exit code 0\n200\n"
    [offline] = build(ctx(network=False))
    assert "no network" in offline.description
    answer = await offline.ainvoke({"code": fetch})
    assert answer.startswith("exit code 1\n") and "URLError" in answer
    # Network asked for, but no guard to go through: no tool, never one without the policy.
    assert build(ctx(network=True, with_proxy=False)) == []
    assert networked.site.hits == ["/about"]
