"""A local website for browser tests: text pages, a form, links, a popup, cookies, slow and hanging pages,
and numbered chapters of N KB each (``/chapter/<n>?kb=N``) for long runs.

    with LocalSite() as site:
        site.url("/form")            # http://127.0.0.1:PORT/form
        site.hits                    # paths requested, in order (thread-safe)
        site.route("/x", "<p>hi</p>") # add a page for this test (reset() removes it)

Standard library only; it binds 127.0.0.1 on a free port and never reaches outside.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.support.fakes.serving import Serving

if TYPE_CHECKING:
    from sidekick.browser.context import SessionBrowser
    from sidekick.events import Screenshot


@dataclasses.dataclass
class HangingLoad:
    """A session navigating to ``/hang`` (which never answers) after loading ``/``, so Chromium is
    up: where the tests that break Chromium or the session mid-navigation start (conftest's
    ``hanging`` fixture makes them and closes them after the test)."""

    browser: SessionBrowser
    chromium: int  # the pool's Chromium pid at the start
    loading: asyncio.Task[Screenshot]


PAGES: dict[str, str] = {
    "/": """<html><head><title>Sidekick test site</title></head><body>
<h1>Welcome to the test site</h1>
<p>This site exists for Sidekick's tests.</p>
<ul>
  <li><a href="/about">About us</a></li>
  <li><a href="/form">Contact form</a></li>
  <li><a href="/popup">Popups</a></li>
</ul></body></html>""",
    "/about": """<html><head><title>About</title></head><body>
<h1>About</h1><p>The secret number is 4217.</p><p><a href="/">Home</a></p></body></html>""",
    "/form": """<html><head><title>Contact form</title></head><body>
<h1>Contact</h1>
<form action="/submitted" method="get">
  <label for="name">Your name</label> <input id="name" name="name" type="text">
  <button type="submit">Send</button>
</form></body></html>""",
    "/popup": """<html><head><title>Popups</title></head><body>
<h1>Popups</h1>
<a href="/about" target="_blank">Open about in a new tab</a>
<button onclick="window.open('/form')">Open form window</button>
</body></html>""",
    "/long": "<html><head><title>Long</title></head><body>"
    + "".join(f"<p>Paragraph {i}: lorem ipsum dolor sit amet.</p>" for i in range(400))
    + "</body></html>",
}


_WORDS = "amber basalt cedar delta ember fjord garnet harbor indigo juniper kestrel lagoon meadow".split()


def chapter_code(n: int) -> str:
    """The code word that ``/chapter/<n>`` states in its first paragraph."""
    return f"{_WORDS[n % len(_WORDS)]}-{(n * 7919) % 10_000:04d}"


def chapter(n: int, kb: float) -> str:
    """``/chapter/<n>?kb=K``: a page of at least K KB of visible text (default 8), its code word
    first, and a link to the next chapter, for long runs that read page after page."""
    paragraphs = [f"<p>The code word of chapter {n} is {chapter_code(n)}.</p>"]
    size, i = 0, 0
    while size < kb * 1024:
        words = " ".join(_WORDS[(n + i + k) % len(_WORDS)] for k in range(12))
        text = f"Paragraph {i} of chapter {n}: {words}, and the story goes on."
        paragraphs.append(f"<p>{text}</p>")
        size += len(text) + 2  # innerText puts a blank line between paragraphs
        i += 1
    return (
        f"<html><head><title>Chapter {n}</title></head><body><h1>Chapter {n}</h1>"
        + "".join(paragraphs)
        + f'<p><a href="/chapter/{n + 1}?kb={kb:g}">Next chapter</a></p></body></html>'
    )


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Chromium resets kept-alive connections at will; anything else is a real error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalSite:
    def __init__(self) -> None:
        self._serving: Serving | None = None
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.hits: list[str] = []
        self.extra: dict[str, str] = {}

    def __enter__(self) -> LocalSite:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._serving is not None
        return self._serving.port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, body: str) -> None:
        self.extra[path] = body

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
        self.extra.clear()

    def start(self) -> LocalSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    site._serve(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._serving = Serving(_QuietServer(("127.0.0.1", 0), Handler))
        return self

    def stop(self) -> None:
        self._release.set()
        if self._serving is not None:
            self._serving.close()
            self._serving = None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        with self._lock:
            self.hits.append(parsed.path)
        headers: dict[str, str] = {}
        status = 200
        path = parsed.path
        if path in self.extra:
            body = self.extra[path]
        elif path in PAGES:
            body = PAGES[path]
        elif path == "/submitted":
            name = html.escape(query.get("name", ""))
            body = f"<html><head><title>Thanks</title></head><body><p>Thanks, {name}!</p></body></html>"
        elif path == "/set-cookie":
            value = query.get("value", "1")
            headers["Set-Cookie"] = f"sk={urllib.parse.quote(value)}; Path=/"
            body = f"<html><head><title>Cookie set</title></head><body>cookie set to {html.escape(value)}</body></html>"
        elif path == "/cookies":
            cookie = h.headers.get("Cookie") or "(none)"
            body = f"<html><head><title>Cookies</title></head><body><p id='c'>{html.escape(cookie)}</p></body></html>"
        elif path == "/slow":
            time.sleep(float(query.get("s", "2")))
            body = "<html><head><title>Slow</title></head><body>finally</body></html>"
        elif path == "/hang":
            self._release.wait()
            return
        elif path.startswith("/chapter/") and path.removeprefix("/chapter/").isdigit():
            body = chapter(int(path.removeprefix("/chapter/")), float(query.get("kb", "8")))
        elif path == "/redirect":
            status = 302
            headers["Location"] = query.get("to", "/")
            body = ""
        else:
            status = 404
            body = "<html><head><title>Not found</title></head><body>Not found</body></html>"
        data = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)
