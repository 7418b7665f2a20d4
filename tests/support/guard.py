"""The web policy tests' shared pieces: a fake resolver and dialer that keep everything on this machine.

The test site runs on 127.0.0.1. To test a policy that denies private addresses, :func:`fake_resolve`
says ``public.test`` is 93.184.216.34 and :class:`LoopbackDialer` connects that address to 127.0.0.1;
it refuses every other non-loopback address, so nothing leaves this machine whatever the guard
decides. :class:`PrivateTarget` (a server on 127.0.0.2) stands for a private target and counts every
connection made to it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sidekick.web.policy import UrlPolicy
from tests.support.fakes.serving import Serving

PUBLIC_ADDRESS = "93.184.216.34"
NAMES = {"public.test": [PUBLIC_ADDRESS], "intranet.test": ["10.0.0.7"]}
DENY_PRIVATE = UrlPolicy()


async def fake_resolve(name: str) -> list[str]:
    if name in NAMES:
        return NAMES[name]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@dataclass
class LoopbackDialer:
    """The proxy's dialer in tests: public.test's address goes to 127.0.0.1; nothing leaves the machine."""

    attempts: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.attempts.append((address, port))
        target = "127.0.0.1" if address == PUBLIC_ADDRESS else address
        if not target.startswith("127."):
            raise ConnectionRefusedError(f"the test dialer does not connect to {address}")
        return await asyncio.open_connection(target, port)

    def dialed(self, address: str) -> bool:
        return any(a == address for a, _ in self.attempts)


class PrivateTarget:
    """A server on 127.0.0.2 that records every connection made to it."""

    def __init__(self) -> None:
        self.connections = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = b"<html><head><title>Private</title></head><body>secret</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                target.connections += 1
                return True

        self._serving = Serving(Server(("127.0.0.2", 0), Handler))
        self.port = self._serving.port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.2:{self.port}{path}"

    def close(self) -> None:
        self._serving.close()


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it (or the last value)."""
    for _ in range(int(timeout / 0.05)):
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    return predicate()


def reported(reports: list[tuple[str, str]], fragment: str) -> list[str]:
    """The reasons reported for URLs containing ``fragment``."""
    return [reason for url, reason in reports if fragment in url]
