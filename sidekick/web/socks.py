"""The web policy's SOCKS5 proxy (RFC 1928, CONNECT only, no authentication) on 127.0.0.1.

The local Chromium sends every connection it makes here. :class:`SocksProxy` reads the SOCKS5
request and answers in SOCKS5; checking, connecting only to the checked addresses and relaying are
:class:`~sidekick.web.tunnel.TunnelServer`'s. Chromium does not authenticate to a SOCKS5 proxy, so
remote browsers use the guard's HTTP proxy (:mod:`sidekick.web.http_proxy`) instead.
"""

from __future__ import annotations

import asyncio
import ipaddress

from sidekick.web.policy import UrlVerdict
from sidekick.web.tunnel import Admit, Dialer, Target, TunnelServer

__all__ = ["Admit", "Dialer", "SocksProxy"]

# SOCKS5 (RFC 1928) reply codes.
_SUCCEEDED, _FAILURE, _NOT_ALLOWED, _REFUSED, _COMMAND_NOT_SUPPORTED = 0, 1, 2, 5, 7


class SocksProxy(TunnelServer):
    """States: new → running (:meth:`start`) → closed (:meth:`aclose`, final; idempotent)."""

    port: int | None = None

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1; returns it."""
        self.port = await self.listen_tcp("127.0.0.1", 0)
        return self.port

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trusted: bool
    ) -> Target | None:
        host, port = await _socks_request(reader, writer)
        return None if host is None else Target(host, port)

    async def _refuse(self, writer: asyncio.StreamWriter, verdict: UrlVerdict) -> None:
        await _reply(writer, _NOT_ALLOWED)

    async def _unreachable(self, writer: asyncio.StreamWriter) -> None:
        await _reply(writer, _REFUSED)

    async def _accepted(self, writer: asyncio.StreamWriter, target: Target) -> None:
        await _reply(writer, _SUCCEEDED)


async def _socks_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str | None, int]:
    """Read a SOCKS5 greeting and CONNECT request: (host, port), or (None, 0) after refusing it."""
    version, count = await reader.readexactly(2)
    methods = await reader.readexactly(count)
    if version != 5 or 0 not in methods:
        writer.write(b"\x05\xff")  # no acceptable method (only "no authentication" is offered)
        await writer.drain()
        return None, 0
    writer.write(b"\x05\x00")
    version, command, _reserved, kind = await reader.readexactly(4)
    if kind == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif kind == 3:
        length = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(length)).decode("ascii").strip("[]")
    elif kind == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    else:
        await _reply(writer, _FAILURE)
        return None, 0
    port = int.from_bytes(await reader.readexactly(2), "big")
    if version != 5 or command != 1:  # only CONNECT; no BIND or UDP
        await _reply(writer, _COMMAND_NOT_SUPPORTED)
        return None, 0
    return host, port


async def _reply(writer: asyncio.StreamWriter, code: int) -> None:
    writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))  # bound address 0.0.0.0:0
    await writer.drain()
