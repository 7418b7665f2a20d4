"""A local HTTP server with per-test routes that records every request (stands in for Serper,
Wikipedia and Pushover in the tool tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


# A route answers (status, payload); a dict or list payload is sent as JSON, bytes as they are.
# HANG never answers, until the fixture closes.
Route = Callable[[Seen], tuple[int, Any]]
HANG = (0, None)


class _Server(ThreadingHTTPServer):
    fake: FakeHTTP


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        fake = cast(_Server, self.server).fake
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
        )
        fake.seen.append(seen)
        route = fake.routes.get(split.path)
        status, payload = route(seen) if route else (404, {"message": "no such route"})
        if (status, payload) == HANG:
            fake.release.wait(10)
            return
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeHTTP:
    """A local HTTP server with per-test routes that records every request it gets."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        # Not daemon threads, so server_close() waits for every handler to finish.
        self._server.daemon_threads = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
