"""Dashboard latency: the real app (``streamlit run``) in a real browser, as a person sees it.

Run from the project root::

    python -m benchmarks.dashboard                 # a table
    python -m benchmarks.dashboard --json          # one JSON object on stdout
    python -m benchmarks.dashboard --screens 20 --repeats 5
    python -m benchmarks.dashboard --tabs 30 --screens 5   # load: 30 tabs, each running a task, watching
    python -m benchmarks.dashboard --app /tmp/try.py   # serve another script (to try a change)

The dashboard runs as a subprocess (``tests.support.dashboard.DashboardServer``) with a fake model
(``tests.support.fakes.openai_server.FakeOpenAI``, answering at once, a thread of this process), a local
site (``tests.support.fakes.site.LocalSite``), ``SIDEKICK_ALLOW_PRIVATE_NETWORK=1`` and a temporary data
folder. A second Chromium, this process's own, is the person watching. Three measurements:

**page usable** (s): a new tab in a new browser context (a cold HTTP cache, like a first visit)
loads the dashboard; an init script's ``MutationObserver`` records ``performance.now()`` (zero is
the navigation start) at the first DOM change after which the chat textarea exists and is enabled
*and* the app is connected with no script run in progress. One untimed load first starts the core
(the server's Chromium launch is a one-off). The table also splits it up and shows a second tab in
the same context (a warm cache).

**frame visible** (ms): one chat turn in which the fake model asks for ``--screens`` steps, each
``navigate`` to its own page ``/bench/k``. That page paints its own wall clock (``performance.timeOrigin
+ performance.now()`` as its script runs, just before its first paint, in Sidekick's Chromium) into
its top row as a code of black and white blocks (the clock's low 32 bits and the page's number),
and a second row with the same blocks inverted. Chromium's screencast sends the frame (JPEG); the
dashboard's live view shows it: one ``<img>`` streaming MJPEG (``/sidekick/live/<ticket>``), which
fires no event per frame, so the watching tab reads the image's top strip through a canvas at every
animation frame (about every 16 ms; every ``LOAD_READ_EVERY_MS`` in load mode, so the reads add
that much at most) and decodes the code from its pixels (a frame whose two rows do not mirror each
other, such as a page caught while it loads, is not a sample): *visible* is the first read that
finds page k (wall clock of the watching Chromium) minus its painted clock. It includes the frame
rate cap (``SIDEKICK_LIVE_FPS``): Chromium sends a frame at most that often. Checked with the
result: the watching Chromium's clock against ``time.time()`` (the reading with the shortest round trip).

**watched static page** (CPU %): the last page then stays as it is while the model takes ``HOLD_S``
seconds to answer, the tab still watching. Over ``CPU_WINDOW_S`` seconds of that, the CPU time of the
server and its descendants (Streamlit, Sidekick, its Chromium and driver) per second of wall time,
and the bytes the tab received on its live-view stream (Chromium's network events); the same window
once the turn is over, nobody watching, is the baseline. (``sum of user+system time`` over the
window / window, in percent of one core.)

**load** (``--tabs N``, instead of the above): N tabs, each its own browser context (its own session),
send a task of ``--screens`` navigations at once and watch their live views; *frame visible* as
above over every tab, the turns' errors (a failed tool call, a turn without its answer, a Python
exception on a page), and after every tab has closed: the server's browser processes against their
count before the tabs opened, and the live views the resources panel of a fresh tab still counts.

**Reset frees** (s): the server's Chromium and Playwright-driver processes (descendants of the server
only) are counted before the tab's session opens a browser context: the baseline. The session then
browses (the first time: the chat turn above; then with the "Web address" box) and the count settles
above the baseline. A capturing click listener in the page stamps the click on Reset; the benchmark
polls the server's processes every 10 ms and reports when the last one that exits after the click
has exited (watching until 1.5 s pass without an exit once the Reset run has ended), and whether the
count is then back at the baseline. (Not "the first time the count equals the baseline": Chromium
keeps a spare renderer of its own, which comes and goes, so the count can sit one above or below.)

The exit code is 0 whether or not a target is met: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from benchmarks import cli
from benchmarks.cli import p95, sig
from sidekick.browser.screencast import LEASE_SECONDS
from tests.support.dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DashboardServer,
    open_address,
    open_app,
    rerun,
    sidekick_server,
    stable_process_count,
    wait_idle,
)
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.waiting import until_empty, wait_until

TARGET_USABLE_S = 2.0
TARGET_VISIBLE_MS = 100.0  # median; the p95 target is TARGET_VISIBLE_P95_MS
TARGET_VISIBLE_P95_MS = 250.0
TARGET_LOAD_P95_MS = 1000.0
HOLD_S = 8.0  # the model's time to answer after the last page, while its tab watches the still page
CPU_WINDOW_S = 4.0
OPENING_AT_ONCE = 5  # load mode: tabs loading the dashboard at a time (then all run their task at once)
TARGET_RESET_S = 1.0
VIEWPORT = ViewportSize(width=1280, height=900)
STEP_TIMEOUT = 60.0  # seconds for any one wait; a hang is an error, not a data point
RESET_TIMEOUT = 15.0
POLL = 0.01  # seconds between process counts after Reset
QUIET = 1.5  # seconds without an exit (after the Reset run ended) that end the watch
CRITERIA = "The answer says how many pages were visited"
CODE_BITS = 32  # the painted clock's low bits; then PAGE_BITS of the page's number
PAGE_BITS = 8
CODE_PX = 30  # one block of the code, in CSS pixels of the 1280-pixel-wide page

BENCH_PAGE = """<html><head><title>Bench {k}</title></head>
<body style="margin: 0; font: 48px sans-serif; background: hsl({hue}, 60%, 85%)">
<div id="code"></div><div id="mirror"></div>
<h1>Bench {k}</h1><p>Page {k} of the dashboard benchmark.</p>
<script>
  const painted = Math.round(performance.timeOrigin + performance.now()) % 2 ** {bits};
  const code = painted + ({k} % 2 ** {page_bits}) * 2 ** {bits};
  for (const [id, one] of [["code", "#000"], ["mirror", "#fff"]]) {{
    const row = document.getElementById(id);
    row.style.cssText = "display: flex; height: {px}px";
    for (let i = 0; i < {bits} + {page_bits}; i++) {{
      const bit = Math.floor(code / 2 ** i) % 2;
      const block = document.createElement("div");
      block.style.cssText = `width: {px}px; background: ${{bit ? one : (one === "#000" ? "#fff" : "#000")}}`;
      row.appendChild(block);
    }}
  }}
</script></body></html>"""

# Page usable: the first DOM change after which the chat box is enabled and the app idle; on the way,
# when the websocket first connected and when the first script run started and ended (ms since
# navigation start).
USABLE_JS = """
window.__load = {connected: null, running: null, finished: null, usable: null};
(() => {
  const app = () => document.querySelector("[data-testid='stApp']");
  const ready = () => {
    const box = document.querySelector("[data-testid='stChatInputTextArea']");
    const root = app();
    return box !== null && !box.disabled && root !== null &&
      root.getAttribute("data-test-connection-state") === "CONNECTED" &&
      root.getAttribute("data-test-script-state") === "notRunning";
  };
  const marks = window.__load;
  const seen = new MutationObserver(() => {
    const now = performance.now(), root = app();
    if (root && marks.connected === null && root.getAttribute("data-test-connection-state") === "CONNECTED")
      marks.connected = now;
    const state = root && root.getAttribute("data-test-script-state");
    if (marks.running === null && state === "running") marks.running = now;
    if (marks.running !== null && marks.finished === null && state === "notRunning") marks.finished = now;
    if (ready()) { marks.usable = now; seen.disconnect(); }
  });
  seen.observe(document, {subtree: true, childList: true, attributes: true});
})();
"""
DOM_READY_JS = "() => performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd ?? null"

# Frame visible: the live view's image, read back through a canvas at each animation frame (or every
# ``every`` ms): the page's painted clock (the first frame of each page k), and when it was first read.
LIVE_JS = """
([width, px, bits, pageBits, every]) => {
  const w = window.__bench = {painted: {}, loaded: {}, reads: 0};
  const now = () => performance.timeOrigin + performance.now();
  let canvas = null, ctx = null;
  // The live view is one <img> showing an MJPEG stream: no event says a new frame is shown, so the
  // tab reads the image's top strip (the code's two rows) at every animation frame, or every
  // ``every`` ms: a frame is visible at the first read that finds its code.
  const read = (img) => {
    // The code's two rows scaled down to one pixel a block (nearest neighbour: each pixel is its
    // block's centre), so a read copies and reads 2 x 40 pixels, not the whole strip.
    const scale = img.naturalWidth / width, n = bits + pageBits;
    if (canvas === null) {
      canvas = document.createElement("canvas");
      canvas.width = n; canvas.height = 2;
      ctx = canvas.getContext("2d", {willReadFrequently: true});
      ctx.imageSmoothingEnabled = false;
    }
    ctx.drawImage(img, 0, 0, n * px * scale, 2 * px * scale, 0, 0, n, 2);
    const data = ctx.getImageData(0, 0, n, 2).data;
    const dark = (i, row) => {
      const o = 4 * (row * n + i);
      return (data[o] + data[o + 1] + data[o + 2]) / 3 < 128;
    };
    let code = 0;
    for (let i = 0; i < n; i++) {
      const bit = dark(i, 0);
      if (bit === dark(i, 1)) return null;  // no code: a page caught while it loads
      if (bit) code += 2 ** i;
    }
    return [code % 2 ** bits, Math.floor(code / 2 ** bits)];
  };
  const poll = () => {
    const img = document.querySelector(".st-key-live-view img");
    if (img && img.naturalWidth > 0) {
      const at = now(), code = read(img);
      w.reads++;
      if (code !== null && !(code[1] in w.loaded)) {
        const span = 2 ** bits;
        w.painted[code[1]] = at - (((at - code[0]) % span) + span) % span;
        w.loaded[code[1]] = at;
      }
    }
    if (every > 0) setTimeout(poll, every); else requestAnimationFrame(poll);
  };
  poll();
}
"""
READ_EVERY_MS = 0  # the watching tab reads its live view at every animation frame (about 16 ms)
LOAD_READ_EVERY_MS = 100  # ... every 100 ms in load mode: a read decodes the frame again (~1 ms), 30 tabs read
LIVE_ARGS = [1280, CODE_PX, CODE_BITS, PAGE_BITS, READ_EVERY_MS]  # the bench page's width, a block, the bits
LOAD_LIVE_ARGS = [*LIVE_ARGS[:4], LOAD_READ_EVERY_MS]

LAST_PAGE_JS = """(k) => Array.from(document.querySelectorAll(".st-key-live-view"))
  .some((box) => box.textContent.trim().endsWith("/bench/" + k))"""

CLICK_JS = """
() => {
  window.__click = null;
  document.addEventListener("click", () => { window.__click = performance.timeOrigin + performance.now(); },
                            {capture: true});
}
"""
WALL_MS_JS = "() => performance.timeOrigin + performance.now()"


def log(message: str) -> None:
    print(f"dashboard: {message}", file=sys.stderr, flush=True)


# -- the scripted model ------------------------------------------------------------------------
class ScriptedModel:
    """The fake model's ``handler``: ``navigate`` to /bench/1..N, then the answer; the evaluator accepts.

    The step is the number of tool results since the user's message, so a retry cannot shift it.
    Records when each worker request arrived (``time.time()``) and any tool result that is an
    error (the app under test is broken then, and no number means anything); thread-safe.
    """

    def __init__(self, screens: int, hold: float = 0.0) -> None:
        self.site: LocalSite | None = None  # set once the site runs (bench_dashboard)
        self.screens = screens
        self.hold = hold  # seconds the answer takes after the last page (a still page, watched)
        self._lock = threading.Lock()
        self._arrived: dict[int, float] = {}
        self._errors: list[str] = []
        self._calls: dict[tuple[int, str], int] = {}  # worker calls per turn (user messages, text)

    @property
    def answer(self) -> str:
        return f"Visited {self.screens} bench pages."

    def arrivals(self) -> dict[int, float]:
        with self._lock:
            return dict(self._arrived)

    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def __call__(self, request: dict[str, Any]) -> Reply:
        arrived = time.time()
        if request.get("response_format") is not None:
            return Reply.json(
                {
                    "checks": [{"criterion": CRITERIA, "met": True, "evidence": "It says so."}],
                    "success_criteria_met": True,
                    "user_input_needed": False,
                    "feedback": "Accepted.",
                }
            )
        messages: list[dict[str, Any]] = request["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        tools = [str(m.get("content")) for m in messages[last_user + 1 :] if m["role"] == "tool"]
        # The prompt is bounded (older steps are folded into a note), so the model counts its own
        # calls of this turn instead of the tool results it is sent.
        turn = (sum(1 for m in messages if m["role"] == "user"), str(messages[last_user].get("content")))
        with self._lock:
            step = self._calls.get(turn, 0)
            self._calls[turn] = step + 1
            self._arrived.setdefault(step, arrived)
            if tools and tools[-1].startswith("Error"):
                self._errors.append(f"tool result {step}: {tools[-1][:300]}")
        if step >= self.screens:
            return Reply.slow(self.hold, Reply.text(self.answer)) if self.hold else Reply.text(self.answer)
        assert self.site is not None
        return Reply.tool_call("navigate", {"url": self.site.url(f"/bench/{step + 1}")})


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """One fresh tab's load, in seconds since its navigation started."""

    dom_ready: float  # DOMContentLoaded finished (the app's HTML and scripts)
    connected: float  # the websocket connected
    running: float  # the first script run started
    finished: float  # ... and ended
    usable: float  # chat box enabled, app connected and idle


@dataclass(frozen=True)
class FrameSample:
    k: int
    painted: float  # the page's clock painted into its pixels, wall-clock ms (Sidekick's Chromium)
    loaded: float  # its first frame loaded in the watching tab, wall-clock ms

    @property
    def visible_ms(self) -> float:
        return self.loaded - self.painted


@dataclass
class StillCpu:
    """CPU of the server and its descendants over one window (percent of one core), and the bytes the
    watching tab received on its live-view stream meanwhile."""

    watched_pct: float = 0.0
    watched_bytes: int = 0
    unwatched_pct: float = 0.0


class StreamBytes:
    """Bytes a tab has received on its live-view streams (``/sidekick/live/``), from Chromium's own
    network events: a frame the server sends shows here whether or not it changes the picture."""

    def __init__(self) -> None:
        self.received = 0
        self._streams: set[str] = set()

    async def attach(self, page: Page) -> None:
        cdp = await page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.dataReceived", self._data)
        await cdp.send("Network.enable")

    def _request(self, event: dict[str, Any]) -> None:
        if "/sidekick/live/" in event["request"]["url"]:
            self._streams.add(event["requestId"])

    def _data(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self._streams:
            self.received += int(event["dataLength"])


@dataclass(frozen=True)
class ResetTiming:
    freed: float  # click → the last server browser process that exits after it has exited, s
    run_done: float  # click → the Reset script run finished, s
    count: int  # the server's browser processes once quiet again
    baseline: int  # ... and before the session opened its context


@dataclass
class Results:
    screens: int
    repeats: int
    first_load: Load | None = None
    loads: list[Load] = field(default_factory=list)  # cold HTTP cache
    warm_loads: list[Load] = field(default_factory=list)
    frames: list[FrameSample] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    still: StillCpu = field(default_factory=StillCpu)
    turn_s: float = 0.0
    resets: list[ResetTiming] = field(default_factory=list)
    skew: list[tuple[float, float]] = field(default_factory=list)  # (watching clock - time.time(), rtt/2), ms
    load_average: list[float] = field(default_factory=list)

    @property
    def usable_s(self) -> list[float]:
        return [load.usable for load in self.loads]

    @property
    def reset_s(self) -> list[float]:
        return [r.freed for r in self.resets]

    @property
    def visible(self) -> list[float]:
        return [f.visible_ms for f in self.frames]

    def best_skew(self) -> tuple[float, float] | None:
        """The reading with the shortest round trip: the tightest bound on the clocks' difference."""
        return min(self.skew, key=lambda pair: pair[1]) if self.skew else None


# -- the phases --------------------------------------------------------------------------------
async def clock_skew(page: Page, results: Results, samples: int = 10) -> None:
    """The watching page's wall clock minus ``time.time()`` (ms), each with half its round trip."""
    for _ in range(samples):
        before = time.time()
        page_ms = float(await page.evaluate(WALL_MS_JS))
        after = time.time()
        results.skew.append((page_ms - (before + after) / 2 * 1000, (after - before) / 2 * 1000))


async def page_load(browser: Browser, url: str) -> tuple[Load, Load]:
    """Two tabs on the dashboard in a fresh context, one after the other: cold and warm HTTP cache."""
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        await context.add_init_script(USABLE_JS)
        return await _timed_tab(context, url), await _timed_tab(context, url)
    finally:
        await context.close()


async def _timed_tab(context: BrowserContext, url: str) -> Load:
    page = await context.new_page()
    try:
        await page.goto(url, wait_until="commit", timeout=STEP_TIMEOUT * 1000)
        await page.wait_for_function("window.__load.usable !== null", timeout=STEP_TIMEOUT * 1000)
        marks: dict[str, float | None] = await page.evaluate("window.__load")
        dom_ready = await page.evaluate(DOM_READY_JS)
    finally:
        await page.close()

    def seconds(ms: float | None) -> float:
        return float(ms or 0) / 1000

    return Load(
        dom_ready=seconds(dom_ready),
        connected=seconds(marks["connected"]),
        running=seconds(marks["running"]),
        finished=seconds(marks["finished"]),
        usable=seconds(marks["usable"]),
    )


def frame_samples(seen: dict[str, Any], pages: int) -> tuple[list[FrameSample], list[int]]:
    """The first frame of each page 1..pages the tab read back, and the pages it never saw."""
    frames = [FrameSample(k, seen["painted"][str(k)], seen["loaded"][str(k)]) for k in range(1, pages + 1)
              if str(k) in seen["loaded"]]  # fmt: skip
    return frames, [k for k in range(1, pages + 1) if str(k) not in seen["loaded"]]


def cpu_seconds(server: DashboardServer) -> dict[int, float]:
    """User + system CPU seconds of the server and each of its descendants, by pid."""
    out: dict[int, float] = {}
    try:
        root = psutil.Process(server.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
    return out


async def cpu_percent(server: DashboardServer, seconds: float) -> float:
    """The server tree's CPU over ``seconds`` of wall time, in percent of one core (processes that
    lived through the window; one that came and went in it would be missed, and none should)."""
    before, started = await asyncio.to_thread(cpu_seconds, server), time.monotonic()
    await asyncio.sleep(seconds)
    after, wall = await asyncio.to_thread(cpu_seconds, server), time.monotonic() - started
    used = sum(after[pid] - before[pid] for pid in after.keys() & before.keys())
    return 100 * used / wall


async def live_turn(page: Page, server: DashboardServer, model: ScriptedModel, results: Results) -> None:
    """One chat turn of ``screens`` navigations, watched from ``page``; then the still page, watched
    (the model takes ``hold`` s to answer) and, once the turn is over, unwatched."""
    await page.evaluate(LIVE_JS, LIVE_ARGS)
    stream = StreamBytes()
    await stream.attach(page)
    box = page.get_by_test_id("stChatInputTextArea")
    await box.fill(f"Visit the {model.screens} bench pages one after another.")
    started = time.monotonic()
    await box.press("Enter")
    budget = (STEP_TIMEOUT + 5 * model.screens) * 1000
    await page.wait_for_function(LAST_PAGE_JS, arg=model.screens, timeout=budget)
    with contextlib.suppress(PlaywrightTimeoutError):  # its frame read back, if it is (else: not a sample)
        await page.wait_for_function(f"window.__bench.loaded['{model.screens}'] !== undefined", timeout=5000)
    received = stream.received
    results.still.watched_pct = await cpu_percent(server, CPU_WINDOW_S)
    results.still.watched_bytes = stream.received - received
    await page.get_by_text(model.answer).first.wait_for(timeout=budget)
    results.turn_s = time.monotonic() - started
    await wait_idle(page)
    if model.errors():
        raise RuntimeError("the app's navigate tool failed, so nothing was measured:\n" + "\n".join(model.errors()))
    results.frames, results.skipped = frame_samples(await page.evaluate("window.__bench"), model.screens)
    if not results.frames:
        raise RuntimeError("the watching tab read no frame of the bench pages: did the live view change?")
    await asyncio.sleep(LEASE_SECONDS + 1)  # nobody watches now: the screencast has stopped
    results.still.unwatched_pct = await cpu_percent(server, CPU_WINDOW_S)


async def process_count(server: DashboardServer) -> int:
    return await asyncio.to_thread(server.process_count)


async def _above(server: DashboardServer, baseline: int) -> bool:
    return await process_count(server) > baseline


async def settled_above(server: DashboardServer, baseline: int) -> int:
    """The count once the session's context is open (above ``baseline``) and steady for a second."""
    await wait_until(
        lambda: _above(server, baseline), timeout=STEP_TIMEOUT, what=f"more than {baseline} server processes"
    )
    return await stable_process_count(server, settle=1.0)


async def time_reset(page: Page, server: DashboardServer, baseline: int) -> ResetTiming:
    """Click Reset and follow the server's browser processes until they stop exiting."""
    await page.evaluate(CLICK_JS)
    button = page.get_by_role("button", name="Reset", exact=True)
    await button.wait_for()
    before = {p.pid for p in (await asyncio.to_thread(server.browser_processes)).procs}
    run = asyncio.create_task(rerun(page, button.click, timeout=STEP_TIMEOUT))
    run_done: float | None = None
    last_exit: float | None = None
    exited = 0
    try:
        deadline = time.monotonic() + RESET_TIMEOUT
        while time.monotonic() < deadline:
            now = {p.pid for p in (await asyncio.to_thread(server.browser_processes)).procs}
            at = time.time()
            if len(before - now) > exited:
                exited, last_exit = len(before - now), at
            if run_done is None and run.done():
                await run  # raises if the click or the run failed
                run_done = time.time()
            if run_done is not None and last_exit is not None and at - max(last_exit, run_done) >= QUIET:
                break
            await asyncio.sleep(POLL)
        else:
            raise TimeoutError(f"Reset freed no browser process (or its run did not end) in {RESET_TIMEOUT:g} s")
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run
    clicked = await page.evaluate("window.__click")
    if clicked is None or last_exit is None or run_done is None:
        raise RuntimeError("the page saw no click on Reset")
    clicked_at = float(clicked) / 1000
    count = await process_count(server)
    return ResetTiming(last_exit - clicked_at, run_done - clicked_at, count, baseline)


@contextlib.asynccontextmanager
async def bench_dashboard(
    model: ScriptedModel, app: str | None, *, turn_timeout: float = 120
) -> AsyncIterator[tuple[DashboardServer, LocalSite, ScriptedModel, Browser]]:
    """The dashboard (``app``, default streamlit_app.py) on a fake model scripted by ``model``, the
    bench pages on a local site, and the person's Chromium; all closed on the way out."""
    screens = model.screens
    with tempfile.TemporaryDirectory(prefix="sidekick-dashboard-") as tmp, LocalSite() as site, FakeOpenAI() as llm:
        for k in range(1, screens + 1):
            site.route(f"/bench/{k}", bench_page(k))
        model.site = site
        llm.handler = model
        server = sidekick_server(
            Path(tmp) / "server",
            OPENAI_BASE_URL=llm.base_url,
            OPENAI_API_KEY="test",
            SIDEKICK_ALLOW_PRIVATE_NETWORK="1",
            SIDEKICK_MODEL_RETRIES="0",
            SIDEKICK_RECURSION_LIMIT=str(2 * screens + 20),
            SIDEKICK_TURN_TIMEOUT=str(turn_timeout + 10 * screens),
        )
        if app is not None:
            server.app = app
        async with contextlib.AsyncExitStack() as stack:
            log("starting the dashboard…")
            await asyncio.to_thread(server.start)
            stack.push_async_callback(asyncio.to_thread, server.close)
            playwright = await async_playwright().start()
            stack.push_async_callback(playwright.stop)
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            stack.push_async_callback(browser.close)
            yield server, site, model, browser


async def run(screens: int, repeats: int, app: str | None = None) -> Results:
    results = Results(screens, repeats)
    results.load_average.append(os.getloadavg()[0])
    async with bench_dashboard(ScriptedModel(screens, hold=HOLD_S), app) as (server, site, model, browser):
        async with contextlib.AsyncExitStack() as stack:
            log(f"page usable: 1 untimed load, then {repeats} fresh tabs…")
            results.first_load, _ = await page_load(browser, server.url)
            for _ in range(repeats):
                cold, warm = await page_load(browser, server.url)
                results.loads.append(cold)
                results.warm_loads.append(warm)

            context: BrowserContext = await browser.new_context(viewport=VIEWPORT)
            stack.push_async_callback(context.close)
            page = await open_app(context, server.url)
            await clock_skew(page, results)
            baseline = await stable_process_count(server)

            log(f"frame visible: one turn of {screens} navigations, then a still page…")
            await live_turn(page, server, model, results)
            await clock_skew(page, results)

            log(f"reset: {repeats} times…")
            for i in range(repeats):
                if i > 0:
                    baseline = await stable_process_count(server, settle=1.0)
                    await open_address(page, site.url("/"))
                await settled_above(server, baseline)
                results.resets.append(await time_reset(page, server, baseline))
            log("stopping…")
    results.load_average.append(os.getloadavg()[0])
    return results


def bench_page(k: int) -> str:
    return BENCH_PAGE.format(k=k, hue=(k * 47) % 360, bits=CODE_BITS, page_bits=PAGE_BITS, px=CODE_PX)


# -- load --------------------------------------------------------------------------------------
LIVE_VIEWS_JS = """() => {
  const m = /live views (\\d+)/.exec(document.querySelector("[data-testid='stSidebar']")?.innerText ?? "");
  return m ? Number(m[1]) : null;
}"""


async def load_tab(page: Page, model: ScriptedModel, i: int) -> tuple[list[FrameSample], str]:
    """One open tab: send the task, watch its live view until the answer is on screen; its frames,
    or what went wrong (the tab is closed either way)."""
    try:
        await page.evaluate(LIVE_JS, LOAD_LIVE_ARGS)
        box = page.get_by_test_id("stChatInputTextArea")
        task = f"Tab {i}: visit the {model.screens} bench pages one after another."
        await box.fill(task, timeout=STEP_TIMEOUT * 1000)
        await box.press("Enter")
        try:
            await page.get_by_text(model.answer).first.wait_for(timeout=(STEP_TIMEOUT + 10 * model.screens) * 1000)
        except Exception as exc:  # a turn without its answer is an error, not a hang of the benchmark
            return [], f"tab {i}: no answer ({type(exc).__name__})"
        failed = page.locator("[data-testid='stException']")
        frames, _ = frame_samples(await page.evaluate("window.__bench"), model.screens)
        if await failed.count():
            return frames, f"tab {i}: a Python exception on the page: {(await failed.first.inner_text())[:300]}"
        return frames, ""
    finally:
        await page.close()


async def load_run(tabs: int, screens: int, app: str | None = None) -> dict[str, Any]:
    """``tabs`` tabs at once, each its own session running a task of ``screens`` pages and watching it."""
    load_average = [os.getloadavg()[0]]
    async with bench_dashboard(ScriptedModel(screens), app, turn_timeout=300) as (server, _, model, browser):
        first = await open_app(browser, server.url)  # starts the core; its count is the baseline
        baseline = await stable_process_count(server)
        await first.close()
        contexts = [await browser.new_context(viewport=VIEWPORT) for _ in range(tabs)]
        log(f"load: opening {tabs} tabs…")
        opening = asyncio.Semaphore(OPENING_AT_ONCE)

        async def open_tab(context: BrowserContext) -> Page:
            async with opening:
                return await open_app(context, server.url, timeout=STEP_TIMEOUT * 2)

        pages = await asyncio.gather(*(open_tab(c) for c in contexts))
        log(f"load: {tabs} tabs run a task of {screens} pages each, at once…")
        started = time.monotonic()
        outcomes = await asyncio.gather(*(load_tab(p, model, i) for i, p in enumerate(pages)), return_exceptions=True)
        wall = time.monotonic() - started
        for context in contexts:
            await context.close()
        frames = [f for o in outcomes if not isinstance(o, BaseException) for f in o[0]]
        errors = [_first_line(o) if isinstance(o, BaseException) else o[1] for o in outcomes]
        errors = [e for e in errors if e] + model.errors()
        log("tabs closed; waiting for their sessions to be freed…")
        left = await asyncio.to_thread(
            until_empty, lambda: [1] * max(0, server.process_count() - baseline), 30.0, 0.2
        )
        fresh = await open_app(browser, server.url)
        live = await fresh.evaluate(LIVE_VIEWS_JS)
        await fresh.close()
    load_average.append(os.getloadavg()[0])
    visible = [f.visible_ms for f in frames]
    visible_p95 = _p95(visible)
    return {
        "tabs": tabs,
        "screens": screens,
        "errors": len(errors),
        "error_list": errors[:10],
        "frame_visible_ms": {"median": _median(visible), "p95": visible_p95, "n": len(visible)},
        # The same by page: the first pages are shown while all the tabs start their turns at once.
        "frame_visible_ms_by_page": {
            str(k): {"median": _median(ms), "p95": _p95(ms), "n": len(ms)}
            for k in range(1, screens + 1)
            if (ms := [f.visible_ms for f in frames if f.k == k])
        },
        "wall_s": sig(wall),
        "leaked_processes": len(left),
        "live_views_after": live,
        "targets": {
            "zero_errors": not errors,
            "zero_leaks": not left and live == 0,
            f"frame_visible_p95<={TARGET_LOAD_P95_MS:g}ms": _within(visible_p95, TARGET_LOAD_P95_MS),
        },
        "method": {
            "load": f"{tabs} tabs, each its own browser context and session, send a task of {screens} navigations "
            "at once and watch their live views; frame visible as in the single-tab mode, over every tab; leaks: "
            "the server's browser processes above their count before the tabs (30 s after they closed) and the "
            "live views a fresh tab's resources panel counts",
            "machine": f"{os.cpu_count()} CPUs, 1-min load average {' → '.join(f'{v:.1f}' for v in load_average)}",
        },
    }


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def load_table(data: dict[str, Any]) -> str:
    visible = data["frame_visible_ms"]
    return cli.text(
        f"Dashboard under load: {data['tabs']} tabs at once, {data['screens']} pages each, in {data['wall_s']:g} s",
        f"{'':<24}{'median':>10}{'p95':>10}{'n':>6}  target",
        [
            f"{'frame visible (ms)':<24}{_fmt(visible['median']):>10}{_fmt(visible['p95']):>10}{visible['n']:>6}"
            f"  p95 <= {TARGET_LOAD_P95_MS:g}",
            *(
                f"{'  page ' + k:<24}{_fmt(v['median']):>10}{_fmt(v['p95']):>10}{v['n']:>6}"
                for k, v in data["frame_visible_ms_by_page"].items()
            ),
        ],
        [
            f"errors: {data['errors']}" + "".join(f"\n  {e}" for e in data["error_list"]),
            f"after the tabs closed: {data['leaked_processes']} browser processes above the baseline, "
            f"{data['live_views_after']} live views",
            *(f"{key}: {text}" for key, text in data["method"].items()),
            "",
            cli.targets(data["targets"]),
        ],
    )


# -- reporting ---------------------------------------------------------------------------------
def _median(values: Sequence[float]) -> float | None:
    return sig(statistics.median(values)) if values else None


def _p95(values: Sequence[float]) -> float | None:
    return sig(p95(values)) if values else None


def method(results: Results) -> dict[str, str]:
    best = results.best_skew()
    skew = "n/a" if best is None else f"{best[0]:+.1f} ms (±{best[1]:.1f})"
    load = " → ".join(f"{v:.1f}" for v in results.load_average)
    return {
        "page_usable_s": "new tab in a new browser context (cold cache): navigation start to the first DOM change "
        "leaving the chat textarea enabled and the app connected and not running; after one untimed load",
        "frame_visible_ms": "the bench page's wall clock, painted into its pixels as its script runs, to the first "
        "read in the watching tab (its live-view image through a canvas, at each animation frame) that finds it; "
        f"includes the frame rate cap; pages never shown: {', '.join(map(str, results.skipped)) or 'none'}",
        "still_page_cpu": f"CPU of the server and its descendants over {CPU_WINDOW_S:g} s, % of one core: a still "
        "page watched while the model thinks, then the same once nobody watches (the baseline)",
        "reset_free_s": "click on Reset (a capturing click listener in the page) to the exit of the last server "
        f"Chromium/driver process that exits after it (polled every 10 ms until {QUIET:g} s pass without one "
        f"after the Reset run); count then at or below its count before the session opened its context: "
        f"{sum(r.count <= r.baseline for r in results.resets)}/{len(results.resets)}",
        "clocks": f"watching Chromium minus time.time(): {skew} (both Chromiums read this machine's clock)",
        "machine": f"{os.cpu_count()} CPUs, 1-min load average {load} (start → end)",
    }


def report(results: Results) -> dict[str, Any]:
    usable_median = _median(results.usable_s)
    visible_median, visible_p95 = _median(results.visible), _p95(results.visible)
    reset_median = _median(results.reset_s)
    return {
        "page_usable_s": {"median": usable_median, "p95": _p95(results.usable_s)},
        "frame_visible_ms": {"median": visible_median, "p95": visible_p95, "n": len(results.visible)},
        "still_page_cpu_pct": {
            "watched": sig(results.still.watched_pct),
            "unwatched": sig(results.still.unwatched_pct),
            "stream_bytes_received": results.still.watched_bytes,
        },
        "reset_free_s": {"median": reset_median},
        "targets": {
            f"page_usable_median<={TARGET_USABLE_S:g}s": _within(usable_median, TARGET_USABLE_S),
            f"frame_visible_median<={TARGET_VISIBLE_MS:g}ms": _within(visible_median, TARGET_VISIBLE_MS),
            f"frame_visible_p95<={TARGET_VISIBLE_P95_MS:g}ms": _within(visible_p95, TARGET_VISIBLE_P95_MS),
            f"reset_free_median<={TARGET_RESET_S:g}s": _within(reset_median, TARGET_RESET_S),
        },
        "method": method(results),
    }


def _within(value: float | None, target: float) -> bool:
    return value is not None and value <= target


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def table(data: dict[str, Any], results: Results) -> str:
    loads = results.loads
    rows: list[tuple[str, Sequence[float], str]] = [
        ("page usable (s)", results.usable_s, f"<= {TARGET_USABLE_S:g}"),
        ("  nav start -> DOMContentLoaded", [x.dom_ready for x in loads], ""),
        ("  nav start -> websocket connected", [x.connected for x in loads], ""),
        ("  nav start -> first script run starts", [x.running for x in loads], ""),
        ("  first script run, as the page saw it", [x.finished - x.running for x in loads], ""),
        ("  script run ended -> usable", [x.usable - x.finished for x in loads], ""),
        ("page usable, warm HTTP cache (s)", [x.usable for x in results.warm_loads], "(second tab)"),
        ("frame visible (ms)", results.visible, f"<= {TARGET_VISIBLE_MS:g} (p95 <= {TARGET_VISIBLE_P95_MS:g})"),
        ("Reset -> processes freed (s)", results.reset_s, f"<= {TARGET_RESET_S:g}"),
        ("  Reset -> its script run done", [r.run_done for r in results.resets], ""),
    ]
    width = max(len(label) for label, _, _ in rows)
    lines = [
        f"Dashboard latency: {results.screens} screens in one turn, {results.repeats} repetitions",
        "",
        f"{'':<{width}}{'median':>10}{'p95':>10}{'n':>5}  target",
    ]
    for label, values, target in rows:
        lines.append(f"{label:<{width}}{_fmt(_median(values)):>10}{_fmt(_p95(values)):>10}{len(values):>5}  {target}")
    first = f"{results.first_load.usable:.2f} s" if results.first_load else "n/a"
    skipped = ", ".join(map(str, results.skipped)) or "none"
    lines += [
        "",
        f"first load after the server started (not in the samples): {first}",
        "server browser processes after each Reset (before the session's context): "
        + ", ".join(f"{r.count} ({r.baseline})" for r in results.resets),
        f"the turn: {results.turn_s:.1f} s from Enter to the answer on screen; pages never shown: {skipped}",
        f"a still page, watched: {results.still.watched_pct:.1f} % of a core for the server and its descendants, "
        f"{results.still.watched_bytes} bytes of frames received; nobody watching: {results.still.unwatched_pct:.1f} %",
        "",
        *(f"{key}: {text}" for key, text in data["method"].items()),
        "",
        cli.targets(data["targets"]),
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("dashboard", "The dashboard in a real browser: page load, live-view delay, Reset; or load.")
    parser.add_argument("--screens", type=cli.at_least(1), default=20, help="browser steps (pages) in a turn")
    parser.add_argument(
        "--tabs", type=cli.at_least(1), default=None, help="load mode: this many tabs run a task and watch at once"
    )
    parser.add_argument("--repeats", type=cli.at_least(1), default=5, help="fresh tabs for page load, and Reset clicks")
    parser.add_argument(
        "--app", default=None, help="Streamlit script to serve instead of streamlit_app.py (to try a change)"
    )
    return parser


if __name__ == "__main__":
    args = parser().parse_args()
    if args.tabs is not None:
        data = asyncio.run(load_run(args.tabs, args.screens, args.app))
        sys.exit(cli.show(data, load_table, args.json))
    results = asyncio.run(run(args.screens, args.repeats, args.app))
    sys.exit(cli.show(report(results), lambda data: table(data, results), args.json))
