"""The web policy's SOCKS5 proxy (RFC 1928, CONNECT only, no authentication) on 127.0.0.1.

Chromium sends every connection it makes here. For each, :class:`SocksProxy` asks its ``admit``
function for a verdict and the addresses that verdict was reached on, refuses what is denied, and
connects only to those checked addresses, so a second DNS answer cannot send the connection
elsewhere (DNS rebinding). It then copies bytes both ways until both sides finish.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from sidekick.web.policy import UrlVerdict

log = logging.getLogger(__name__)

Dialer = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens the proxy's outgoing connection to an (already checked) address and port."""

Admit = Callable[[str, int], Awaitable[tuple[UrlVerdict, list[str]]]]
"""(host, port) -> the verdict, and the addresses to connect to (exactly those checked)."""

_HANDSHAKE_SECONDS = 10.0
_CONNECT_SECONDS = 10.0
_CLOSE_SECONDS = 5.0
_CHUNK = 64 * 1024

# SOCKS5 (RFC 1928) reply codes.
_SUCCEEDED, _FAILURE, _NOT_ALLOWED, _REFUSED, _COMMAND_NOT_SUPPORTED = 0, 1, 2, 5, 7


class SocksProxy:
    """States: new → running (:meth:`start`) → closed (:meth:`aclose`, final; idempotent)."""

    def __init__(self, admit: Admit, *, admit_timeout: float, dial: Dialer | None = None) -> None:
        self._admit = admit
        self._admit_timeout = admit_timeout
        self._dial = dial or asyncio.open_connection
        self.refused = 0
        """Connections refused by the policy."""
        self._server: asyncio.Server | None = None
        self.port: int | None = None
        self._connections: set[asyncio.Task[object]] = set()
        self._streams: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1; returns it."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def aclose(self) -> None:
        """Stop listening and drop every connection; waits for their handlers, bounded."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for stream in list(self._streams):
            stream.transport.abort()  # each connection's handler then finishes on its own
        waiting = [t for t in self._connections if not t.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=_CLOSE_SECONDS)
        if server is not None:
            try:
                async with asyncio.timeout(_CLOSE_SECONDS):
                    await server.wait_closed()
            except TimeoutError:
                log.info("The proxy's listener did not close within %g s", _CLOSE_SECONDS)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._streams.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(_HANDSHAKE_SECONDS):
                host, port = await _socks_request(reader, writer)
            if host is None:
                return
            async with asyncio.timeout(self._admit_timeout + _CONNECT_SECONDS + 1):
                verdict, addresses = await self._admit(host, port)
                if not verdict.allowed:
                    self.refused += 1
                    log.info("Refused %s:%s: %s", host, port, verdict.reason)
                    await _reply(writer, _NOT_ALLOWED)
                    return
                connection = await self._connect(addresses, port)
            if connection is None:
                await _reply(writer, _REFUSED)
                return
            up_reader, upstream = connection
            self._streams.add(upstream)
            await _reply(writer, _SUCCEEDED)
            await _relay(reader, writer, up_reader, upstream)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
            log.debug("Proxy connection ended: %r", error)
        except asyncio.CancelledError:
            pass  # the loop is shutting down; nobody awaits this task, so end it quietly
        except Exception as error:  # a proxy bug must end this connection only
            log.warning("Proxy connection failed: %r", error)
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()
                    self._streams.discard(stream)
            if task is not None:
                self._connections.discard(task)

    async def _connect(
        self, addresses: list[str], port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for address in addresses:
            try:
                async with asyncio.timeout(_CONNECT_SECONDS):
                    return await self._dial(address, port)
            except (OSError, TimeoutError) as error:
                log.debug("Could not connect to %s:%s: %r", address, port, error)
        return None


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


async def _relay(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until both sides finish; a reset on either side ends both."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except OSError:
            client.transport.abort()
            upstream.transport.abort()

    await asyncio.gather(pipe(client_reader, upstream), pipe(upstream_reader, client))
