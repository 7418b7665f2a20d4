"""Dashboard latency: the real app (``streamlit run``) in a real browser, as a person sees it.

Run from the project root::

    python -m benchmarks.dashboard                 # a table
    python -m benchmarks.dashboard --json          # one JSON object on stdout
    python -m benchmarks.dashboard --screens 20 --repeats 5
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

**screenshot visible** (ms): one chat turn in which the fake model asks for ``--screens`` steps, each
``navigate`` to its own page ``/bench/k``. That page keeps its ``<title>`` at ``Bench k @<wall-clock
ms>`` (a 5 ms timer); Sidekick reads the title right after the screenshot, just before it stamps
``Screenshot.taken_at = time.time()``, and the dashboard shows that title in the caption. So the
caption carries the capture time (the *capture clock*: at most one timer tick plus one CDP call
before ``taken_at``). In the watching tab a ``MutationObserver`` notes when the caption of shot k
first appears (``performance.timeOrigin + performance.now()``, wall clock) and when the large image
under it has a new ``src`` that has finished loading: *visible* is that load minus the capture
clock. A shot replaced before it was ever shown large (two within one redraw) is not a sample.
Checks reported with the result: the watching Chromium's clock against ``time.time()`` (the reading
with the shortest round trip), and each capture clock against the fake model's receive times
(``time.time()``) of the worker request that asked for page k and of the one after tool result k,
between which the capture must lie. The latter also gives a lower bound of the delay that needs no
page clock at all (visible minus the receive time of request k+1, which comes after ``taken_at``).

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from benchmarks import cli
from benchmarks.cli import p95, sig
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
from tests.support.waiting import wait_until

TARGET_USABLE_S = 2.0
TARGET_VISIBLE_MS = 300.0
TARGET_RESET_S = 1.0
VIEWPORT = ViewportSize(width=1280, height=900)
STEP_TIMEOUT = 60.0  # seconds for any one wait; a hang is an error, not a data point
RESET_TIMEOUT = 15.0
POLL = 0.01  # seconds between process counts after Reset
QUIET = 1.5  # seconds without an exit (after the Reset run ended) that end the watch
CRITERIA = "The answer says how many pages were visited"
TICK_MS = 5  # the bench pages' title timer

BENCH_PAGE = """<html><head><title>Bench {k}</title></head>
<body style="font: 48px sans-serif; background: hsl({hue}, 60%, 85%)">
<h1>Bench {k}</h1><p>Page {k} of the dashboard benchmark.</p>
<script>
  const stamp = () => {{
    document.title = "Bench {k} @" + (performance.timeOrigin + performance.now()).toFixed(1);
  }};
  stamp();
  setInterval(stamp, {tick});
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

# Screenshot visible: per shot k, when its caption first appears and when the large image under it
# (a src not seen before) has loaded. Wall-clock milliseconds.
WATCH_JS = """
() => {
  const w = window.__bench = {caption: {}, clock: {}, src: {}, loaded: {}};
  const seen = new Set();
  const now = () => performance.timeOrigin + performance.now();
  const title = /^Bench (\\d+) @(\\d+(?:\\.\\d+)?)$/;
  const check = () => {
    for (const strong of document.querySelectorAll("[data-testid='stCaptionContainer'] strong")) {
      const m = title.exec(strong.textContent.trim());
      if (!m) continue;
      const k = m[1];
      if (!(k in w.caption)) { w.caption[k] = now(); w.clock[k] = parseFloat(m[2]); }
      if (k in w.src) continue;
      const img = Array.from(document.querySelectorAll("[data-testid='stImage'] img")).find(
        (i) => strong.compareDocumentPosition(i) & Node.DOCUMENT_POSITION_FOLLOWING);
      if (!img || !img.src || seen.has(img.src)) continue;
      const src = img.src;
      w.src[k] = src;
      seen.add(src);
      const loaded = () => { if (img.src === src && !(k in w.loaded)) w.loaded[k] = now(); };
      if (img.complete && img.naturalWidth > 0) loaded();
      else img.addEventListener("load", loaded, {once: true});
    }
  };
  new MutationObserver(check).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["src"]});
  check();
}
"""

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

    def __init__(self, site: LocalSite, screens: int) -> None:
        self._site = site
        self.screens = screens
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
            return Reply.text(self.answer)
        return Reply.tool_call("navigate", {"url": self._site.url(f"/bench/{step + 1}")})


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """One fresh tab's load, in seconds since its navigation started."""

    dom_ready: float  # DOMContentLoaded finished (the app's HTML and scripts)
    connected: float  # the websocket connected
    running: float  # the first script run started
    finished: float  # ... and ended
    usable: float  # chat box enabled, app connected and idle


@dataclass
class Shot:
    k: int
    clock: float  # capture clock from the caption, wall-clock ms (server's Chromium)
    caption: float  # caption first in the watching tab's DOM, wall-clock ms
    loaded: float | None  # its image loaded in the watching tab, wall-clock ms
    asked: float | None  # worker request that asked for page k arrived, ms (time.time())
    after: float | None  # worker request after tool result k arrived, ms (time.time())

    @property
    def visible_ms(self) -> float | None:
        return None if self.loaded is None else self.loaded - self.clock

    @property
    def bracketed(self) -> bool:
        """The capture clock lies between the two model requests around it (2 ms of slack)."""
        if self.asked is None or self.after is None:
            return False
        return self.asked - 2 <= self.clock <= self.after + 2


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
    shots: list[Shot] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
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
        return [v for s in self.shots if (v := s.visible_ms) is not None]

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


async def screenshot_turn(page: Page, model: ScriptedModel, results: Results) -> None:
    """One chat turn of ``screens`` navigations, watched from ``page``."""
    await page.evaluate(WATCH_JS)
    box = page.get_by_test_id("stChatInputTextArea")
    await box.fill(f"Visit the {model.screens} bench pages one after another.")
    started = time.monotonic()
    await box.press("Enter")
    await page.get_by_text(model.answer).first.wait_for(timeout=(STEP_TIMEOUT + 5 * model.screens) * 1000)
    results.turn_s = time.monotonic() - started
    await wait_idle(page)
    if model.errors():
        raise RuntimeError("the app's navigate tool failed, so nothing was measured:\n" + "\n".join(model.errors()))
    seen: dict[str, dict[str, float]] = await page.evaluate("window.__bench")
    arrivals = model.arrivals()
    for k in range(1, model.screens + 1):
        key = str(k)
        if key not in seen["loaded"]:
            results.skipped.append(k)
        if key not in seen["caption"]:
            continue
        asked, after = arrivals.get(k - 1), arrivals.get(k)
        results.shots.append(
            Shot(
                k=k,
                clock=seen["clock"][key],
                caption=seen["caption"][key],
                loaded=seen["loaded"].get(key),
                asked=None if asked is None else asked * 1000,
                after=None if after is None else after * 1000,
            )
        )
    if not results.shots:
        raise RuntimeError("no screenshot caption was ever seen in the watching tab: did the dashboard change?")


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


async def run(screens: int, repeats: int, app: str | None = None) -> Results:
    results = Results(screens, repeats)
    results.load_average.append(os.getloadavg()[0])
    with tempfile.TemporaryDirectory(prefix="sidekick-dashboard-") as tmp, LocalSite() as site, FakeOpenAI() as llm:
        for k in range(1, screens + 1):
            site.route(f"/bench/{k}", BENCH_PAGE.format(k=k, hue=(k * 47) % 360, tick=TICK_MS))
        model = ScriptedModel(site, screens)
        llm.handler = model
        server = sidekick_server(
            Path(tmp) / "server",
            OPENAI_BASE_URL=llm.base_url,
            OPENAI_API_KEY="test",
            SIDEKICK_ALLOW_PRIVATE_NETWORK="1",
            SIDEKICK_MODEL_RETRIES="0",
            SIDEKICK_RECURSION_LIMIT=str(2 * screens + 20),
            SIDEKICK_TURN_TIMEOUT=str(120 + 10 * screens),
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

            log(f"screenshot visible: one turn of {screens} navigations…")
            await screenshot_turn(page, model, results)
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


# -- reporting ---------------------------------------------------------------------------------
def _median(values: Sequence[float]) -> float | None:
    return sig(statistics.median(values)) if values else None


def _p95(values: Sequence[float]) -> float | None:
    return sig(p95(values)) if values else None


def method(results: Results) -> dict[str, str]:
    best = results.best_skew()
    skew = "n/a" if best is None else f"{best[0]:+.1f} ms (±{best[1]:.1f})"
    bracketed = sum(s.bracketed for s in results.shots)
    load = " → ".join(f"{v:.1f}" for v in results.load_average)
    return {
        "page_usable_s": "new tab in a new browser context (cold cache): navigation start to the first DOM change "
        "leaving the chat textarea enabled and the app connected and not running; after one untimed load",
        "screenshot_visible_ms": "capture clock (the bench page's wall-clock title, read just before taken_at and "
        "shown in the caption) to the load of the large image under that caption in the watching tab; "
        "shots replaced before they were shown are not samples",
        "reset_free_s": "click on Reset (a capturing click listener in the page) to the exit of the last server "
        f"Chromium/driver process that exits after it (polled every 10 ms until {QUIET:g} s pass without one "
        f"after the Reset run); count then at or below its count before the session opened its context: "
        f"{sum(r.count <= r.baseline for r in results.resets)}/{len(results.resets)}",
        "clocks": f"watching Chromium minus time.time(): {skew}; capture clock between the model requests "
        f"around it: {bracketed}/{len(results.shots)} shots",
        "machine": f"{os.cpu_count()} CPUs, 1-min load average {load} (start → end)",
    }


def report(results: Results) -> dict[str, Any]:
    usable_median = _median(results.usable_s)
    visible_median = _median(results.visible)
    reset_median = _median(results.reset_s)
    return {
        "page_usable_s": {"median": usable_median, "p95": _p95(results.usable_s)},
        "screenshot_visible_ms": {"median": visible_median, "p95": _p95(results.visible), "n": len(results.visible)},
        "reset_free_s": {"median": reset_median},
        "targets": {
            f"page_usable_median<={TARGET_USABLE_S:g}s": _within(usable_median, TARGET_USABLE_S),
            f"screenshot_visible_median<={TARGET_VISIBLE_MS:g}ms": _within(visible_median, TARGET_VISIBLE_MS),
            f"reset_free_median<={TARGET_RESET_S:g}s": _within(reset_median, TARGET_RESET_S),
        },
        "method": method(results),
    }


def _within(value: float | None, target: float) -> bool:
    return value is not None and value <= target


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def table(data: dict[str, Any], results: Results) -> str:
    shots, loads = results.shots, results.loads
    rows: list[tuple[str, Sequence[float], str]] = [
        ("page usable (s)", results.usable_s, f"<= {TARGET_USABLE_S:g}"),
        ("  nav start -> DOMContentLoaded", [x.dom_ready for x in loads], ""),
        ("  nav start -> websocket connected", [x.connected for x in loads], ""),
        ("  nav start -> first script run starts", [x.running for x in loads], ""),
        ("  first script run, as the page saw it", [x.finished - x.running for x in loads], ""),
        ("  script run ended -> usable", [x.usable - x.finished for x in loads], ""),
        ("page usable, warm HTTP cache (s)", [x.usable for x in results.warm_loads], "(second tab)"),
        ("screenshot visible (ms)", results.visible, f"<= {TARGET_VISIBLE_MS:g}"),
        ("  capture -> caption in DOM", [s.caption - s.clock for s in shots], ""),
        ("  caption -> image loaded", [s.loaded - s.caption for s in shots if s.loaded is not None], ""),
        ("  capture -> next model request", [s.after - s.clock for s in shots if s.after is not None], ""),
        (
            "  next model request -> visible",
            [s.loaded - s.after for s in shots if s.loaded is not None and s.after is not None],
            "(a lower bound of the delay)",
        ),
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
        f"the turn: {results.turn_s:.1f} s from Enter to the answer on screen; shots never shown large: {skipped}",
        "",
        *(f"{key}: {text}" for key, text in data["method"].items()),
        "",
        cli.targets(data["targets"]),
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("dashboard", "The dashboard in a real browser: page load, screenshot-to-screen delay, Reset.")
    parser.add_argument(
        "--screens", type=cli.at_least(1), default=20, help="browser steps (screenshots) in the measured turn"
    )
    parser.add_argument("--repeats", type=cli.at_least(1), default=5, help="fresh tabs for page load, and Reset clicks")
    parser.add_argument(
        "--app", default=None, help="Streamlit script to serve instead of streamlit_app.py (to try a change)"
    )
    return parser


if __name__ == "__main__":
    args = parser().parse_args()
    results = asyncio.run(run(args.screens, args.repeats, args.app))
    sys.exit(cli.show(report(results), lambda data: table(data, results), args.json))
