"""An HTTP front for the fake model that answers chosen requests with garbage.

The fake model only sends well-formed replies; a broken server sends status 200 with a body that
is not one (truncated JSON, an HTML error page). The front forwards every request to the fake
unchanged except those its ``plan`` replaces, so a scenario can break one reply in the middle of a
turn and keep the rest real.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FORWARD_TIMEOUT = 60.0  # seconds for the fake to answer a forwarded request


class FlakyFront:
    """Per request, in order, ``plan`` holds ``(body, content_type)`` to send with status 200, or
    ``None`` to forward; once the plan is empty, every request is forwarded."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan: deque[tuple[bytes, str] | None] = deque()
        self._lock = threading.Lock()
        front = self
        # The fake is on 127.0.0.1: a proxy from the environment must never see these requests.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with front._lock:
                    step = front.plan.popleft() if front.plan else None
                if step is not None:
                    self._send(200, *step)
                    return
                path = self.path.removeprefix("/v1")
                request = urllib.request.Request(
                    front.upstream + path, data=body, headers={"Content-Type": "application/json"}
                )
                try:
                    with opener.open(request, timeout=FORWARD_TIMEOUT) as response:
                        self._send(response.status, response.read(), response.headers.get("Content-Type", ""))
                except urllib.error.HTTPError as exc:
                    with exc:
                        self._send(exc.code, exc.read(), exc.headers.get("Content-Type", ""))

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FlakyFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
