"""The live view's HTTP route: a session's frames as an MJPEG stream, for the tab's ``<img>``.

A watching tab's page holds one ``<img src="/sidekick/live/<ticket>">`` (``views.py``); the browser
keeps that one request open and shows each JPEG part as it arrives (``multipart/x-mixed-replace``,
which Chromium, Firefox and Safari draw natively in an image). A frame therefore costs the watching
tab one JPEG decode and one paint: no script rerun, no websocket message, no React render, which
were most of a frame's cost when each frame was an ``st.image``. Each frame is followed at once by
the next boundary and the next part's headers: Chromium shows a part only once it has parsed the
headers of the part after it, so without them every frame would wait for the next one.

The ticket (``LiveViews.ticket``) names one session's view; an unknown or revoked one gets 404. The
stream ends when the ticket is revoked (Reset, the tab's end, exit) and when the tab drops the image
(the run ended, the tab was hidden or closed): Starlette cancels the response when the client goes,
and the view's lease, renewed only while someone waits for frames, runs out a few seconds later.

``routes()``, ``middleware()`` and ``lifespan`` are handed to ``st.App`` in ``streamlit_app.py``.
``lifespan`` closes the process's Sidekick (every session, browser and server it opened, awaited)
when the web server shuts down: uvicorn, which serves an ``st.App``, handles SIGTERM by shutting
down gracefully and then re-raising the signal, so the process ends by it and ``atexit`` never runs.
An open stream does not hold that shutdown (uvicorn ends it; a test sends SIGTERM mid-stream).
This module does not import Streamlit; it finds the process's core with ``current_sidekick``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sidekick.browser.screencast import Frame
from sidekick.facade import close_sidekick, current_sidekick

PREFIX = "/sidekick/live/"
BOUNDARY = b"sidekick-frame"
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def live_path(ticket: str) -> str:
    """The address of a ticket's stream, as the page's ``<img>`` names it."""
    return PREFIX + ticket


NEXT_PART = b"\r\n--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n\r\n"
"""What follows each frame: the boundary and the next part's headers (its length is not known yet;
the boundary ends it)."""


async def mjpeg(frames: AsyncIterator[Frame]) -> AsyncIterator[bytes]:
    yield NEXT_PART[2:]  # the first boundary has no line break before it
    async for frame in frames:
        yield frame.jpeg + NEXT_PART


async def live(request: Request) -> Response:
    core = current_sidekick()
    frames = core.live_frames(request.path_params["ticket"]) if core is not None else None
    if frames is None:
        return PlainTextResponse("No such live view.", status_code=404, headers=NO_STORE)
    return StreamingResponse(
        mjpeg(frames),
        media_type="multipart/x-mixed-replace; boundary=" + BOUNDARY.decode(),
        # Proxies must pass each part on as it comes (nginx honours this header).
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
    )


def routes() -> list[BaseRoute]:
    return [Route(PREFIX + "{ticket}", live, methods=["GET"])]


class _Uncompressed:
    """Drops ``Accept-Encoding`` from requests for the live stream, so Streamlit's gzip middleware
    (which runs after ours) passes the JPEG parts on as they come instead of compressing them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]}
        await self.app(scope, receive, send)


def middleware() -> list[Middleware]:
    return [Middleware(_Uncompressed)]


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The web server's life: at its shutdown, the process's Sidekick is closed (bounded by its own
    timeouts; off the server's event loop, which goes on answering meanwhile)."""
    try:
        yield
    finally:
        await asyncio.to_thread(close_sidekick)
