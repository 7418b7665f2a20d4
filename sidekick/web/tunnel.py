"""What the guard's proxy listeners share: check, connect to the checked address, relay, close.

A listener (:class:`~sidekick.web.socks.SocksProxy`, :class:`~sidekick.web.http_proxy.HttpProxy`)
only reads its protocol's request and writes its protocol's answers. For every request,
:class:`TunnelServer` asks the ``admit`` function for a verdict and the addresses that verdict was
reached on, refuses what is denied, and connects only to those checked addresses, so a second DNS
answer cannot send the connection elsewhere (DNS rebinding). It then copies bytes both ways until
both sides finish. It owns every connection it accepted: :meth:`TunnelServer.aclose` drops them all,
and :meth:`TunnelServer.drop_owner` drops those opened with one set of credentials.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sidekick.web.policy import UrlVerdict

log = logging.getLogger(__name__)

Dialer = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens the proxy's outgoing connection to an (already checked) address and port."""

Admit = Callable[[str, int], Awaitable[tuple[UrlVerdict, list[str]]]]
"""(host, port) -> the verdict, and the addresses to connect to (exactly those checked)."""

HANDSHAKE_SECONDS = 10.0
_CONNECT_SECONDS = 10.0
_CLOSE_SECONDS = 5.0
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Target:
    """What a client asked its listener for."""

    host: str
    port: int
    first_bytes: bytes = b""
    """Sent upstream before relaying (a plain HTTP request's rewritten head)."""
    owner: str | None = None
    """The credentials it came with, so revoking them ends it too."""
    response_head: Callable[[bytes], bytes] | None = None
    """Rewrites the head of the upstream's answer (up to the first blank line) before the client sees it."""


class TunnelServer:
    """States: new → listening (``listen_*``) → closed (:meth:`aclose`, final; idempotent).

    Subclasses read their protocol's request in :meth:`_handshake` and answer in :meth:`_refuse`,
    :meth:`_unreachable` and :meth:`_accepted`. Use it on one event loop.
    """

    def __init__(self, admit: Admit, *, admit_timeout: float, dial: Dialer | None = None) -> None:
        self._admit = admit
        self._admit_timeout = admit_timeout
        self._dial = dial or asyncio.open_connection
        self.refused = 0
        """Connections refused by the policy."""
        self._servers: list[asyncio.Server] = []
        self._closed = False
        self._connections: set[asyncio.Task[object]] = set()
        self._streams: set[asyncio.StreamWriter] = set()
        self._owned: dict[str, set[asyncio.StreamWriter]] = {}

    async def listen_tcp(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port); returns the port."""
        server = await self._listening(asyncio.start_server(self._serve, host, port))
        return int(server.sockets[0].getsockname()[1])

    async def listen_unix(self, path: str) -> None:
        """Listen on a unix socket at ``path``, whose clients are trusted: whoever can open the socket
        file needs no credentials (the caller owns its folder, keeps it private and removes it)."""
        await self._listening(asyncio.start_unix_server(functools.partial(self._serve, trusted=True), path))

    async def _listening(self, starting: Awaitable[asyncio.Server]) -> asyncio.Server:
        if self._closed:
            raise RuntimeError("the proxy is closed")
        server = await starting
        self._servers.append(server)
        return server

    def drop_owner(self, owner: str) -> None:
        """End every connection opened with the credentials ``owner`` (they were revoked)."""
        for stream in self._owned.pop(owner, set()):
            stream.transport.abort()

    async def aclose(self) -> None:
        """Stop listening and drop every connection; waits for their handlers, bounded."""
        self._closed = True
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for stream in list(self._streams):
            stream.transport.abort()  # each connection's handler then finishes on its own
        waiting = [t for t in self._connections if not t.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=_CLOSE_SECONDS)
        for server in servers:
            try:
                async with asyncio.timeout(_CLOSE_SECONDS):
                    await server.wait_closed()
            except TimeoutError:
                log.info("A proxy listener did not close within %g s", _CLOSE_SECONDS)

    # -- what a protocol supplies --------------------------------------------------------------
    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trusted: bool
    ) -> Target | None:
        """Read the client's request; None after answering a request that is not to be served.
        ``trusted``: it came through a unix socket (see :meth:`listen_unix`)."""
        raise NotImplementedError

    async def _refuse(self, writer: asyncio.StreamWriter, verdict: UrlVerdict) -> None:
        raise NotImplementedError

    async def _unreachable(self, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _accepted(self, writer: asyncio.StreamWriter, target: Target) -> None:
        raise NotImplementedError

    # -- one connection ------------------------------------------------------------------------
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, trusted: bool = False
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._streams.add(writer)
        upstream: asyncio.StreamWriter | None = None
        owned: set[asyncio.StreamWriter] | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_SECONDS):
                target = await self._handshake(reader, writer, trusted)
            if target is None:
                return
            if target.owner is not None:
                owned = self._owned.setdefault(target.owner, set())
                owned.add(writer)
            async with asyncio.timeout(self._admit_timeout + _CONNECT_SECONDS + 1):
                verdict, addresses = await self._admit(target.host, target.port)
                if not verdict.allowed:
                    self.refused += 1
                    log.info("Refused %s:%s: %s", target.host, target.port, verdict.reason)
                    await self._refuse(writer, verdict)
                    return
                connection = await self._connect(addresses, target.port)
            if connection is None:
                await self._unreachable(writer)
                return
            up_reader, upstream = connection
            self._streams.add(upstream)
            if owned is not None:
                owned.add(upstream)
            if writer.transport.is_closing():  # the credentials were revoked meanwhile
                return
            await self._accepted(writer, target)
            if target.first_bytes:
                upstream.write(target.first_bytes)
            await _relay(reader, writer, up_reader, upstream, target.response_head)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            log.debug("Proxy connection ended: %s", type(error).__name__)
        except asyncio.CancelledError:
            pass  # the loop is shutting down; nobody awaits this task, so end it quietly
        except Exception as error:  # a proxy bug must end this connection only
            log.warning("Proxy connection failed: %s", type(error).__name__)
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()
                    self._streams.discard(stream)
                    if owned is not None:
                        owned.discard(stream)
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


async def _relay(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    response_head: Callable[[bytes], bytes] | None = None,
) -> None:
    """Copy bytes both ways until both sides finish; a reset on either side ends both."""

    async def pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, head: Callable[[bytes], bytes] | None = None
    ) -> None:
        try:
            if head is not None:
                sink.write(head(await source.readuntil(b"\r\n\r\n")))
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            client.transport.abort()
            upstream.transport.abort()

    await asyncio.gather(pipe(client_reader, upstream), pipe(upstream_reader, client, response_head))
