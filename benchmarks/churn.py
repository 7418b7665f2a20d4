"""Session churn: Sidekick's shared browser pool against one browser per session.

Run from the project root::

    python -m benchmarks.churn --sessions 20                  # a table
    python -m benchmarks.churn --sessions 200 --json          # one JSON object on stdout
    python -m benchmarks.churn --modes shared                 # one mode only (no ratios then)

Each mode opens and closes N sessions one after another, on one asyncio loop. A session is: get a
browsing-ready context and page, open a page of a local test site (``tests.support.fakes.site.LocalSite``),
take a screenshot and read the title (proof that it can browse), then close.

``shared``
    Sidekick's way: one :class:`~sidekick.browser.BrowserPool` (one driver, one Chromium, a context
    per session). The pool is warmed before measuring, and between sessions it refills its spare
    (``await pool.warm()``, not timed), so **ready** is the time of ``pool.new_session_browser()``
    with a warm spare waiting: the steady state of a server whose sessions arrive at least a spare's
    warm-up (about 0.1 s) apart. **free** is ``SessionBrowser.aclose()`` (page, then context).
``per-session-browser``
    The classic pattern: per session ``async_playwright().start()``, ``chromium.launch()``,
    ``new_context()``, ``new_page()`` (all of it is **ready**); **free** is ``browser.close()`` then
    ``playwright.stop()``, awaited (the fair cost, not the leak of an un-awaited close).

Also per mode: **browse** (navigation, screenshot, title); **PSS per live session**, in a separate
phase: (PSS of our descendant browser and driver processes with K = min(5, N) sessions open and
browsed) minus (the same with none open: the pool with its spare for ``shared``, nothing for
``per-session-browser``), over K; **processes left** (descendants that appeared during the mode and
are still there up to 5 s after it closed everything) and **contexts left** (contexts open beyond
the mode's baseline once every session was closed). For ``shared`` also the Python process's RSS
before and after the N churns, each after ``gc.collect()``.

Only descendants of this process are counted (Chromium's crashpad handlers reparent to PID 1 and
are not). The exit code is 0 whether or not a target is met: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from playwright.async_api import Browser, Page, Playwright, ViewportSize, async_playwright

from benchmarks import cli
from benchmarks.cli import p95, ratio, sig
from sidekick.browser.chromium import find_browser, launch_args
from sidekick.browser.context import SessionBrowser
from sidekick.browser.pool import VIEWPORT, BrowserPool
from sidekick.config import Settings
from sidekick.procs import browser_processes, self_memory_bytes
from tests.support.fakes.site import LocalSite

MODES = ("shared", "per-session-browser")
CONCURRENT = 5  # K: sessions open at once in the memory phase (fewer if N is smaller)
OP_TIMEOUT = 60.0  # seconds for any one measured step; a hang is an error, not a data point
EXIT_WAIT = 5.0  # seconds to let processes exit before counting leftovers
SETTLE = 1.0  # seconds of quiet before reading memory, so startup spikes have passed
PAGE = "/"

T = TypeVar("T")
S = TypeVar("S")


# -- the two ways to get a session -------------------------------------------------------------
class Mode(ABC, Generic[S]):
    """How one mode opens, uses and frees a session. ``start``/``stop`` bracket the whole mode."""

    name: str

    async def start(self) -> None:
        """Bring the mode to its baseline (nothing open by sessions)."""

    @abstractmethod
    async def open(self) -> S: ...

    @abstractmethod
    async def browse(self, session: S, url: str) -> None: ...

    @abstractmethod
    async def free(self, session: S) -> None: ...

    async def between(self) -> None:
        """Untimed work between sessions (the pool refilling its spare)."""

    @abstractmethod
    async def contexts_left(self) -> int:
        """Contexts still open beyond the baseline, with every session freed."""

    @abstractmethod
    async def stop(self) -> None:
        """Release everything; must also clean up after a failure half-way."""


class SharedPool(Mode[SessionBrowser]):
    name = "shared"

    def __init__(self, settings: Settings) -> None:
        self.pool = BrowserPool(settings)
        self._baseline_contexts = 0

    async def start(self) -> None:
        await self.pool.warm()
        self._baseline_contexts = self.pool.open_contexts  # the warm spare

    async def open(self) -> SessionBrowser:
        return await self.pool.new_session_browser()

    async def browse(self, session: SessionBrowser, url: str) -> None:
        await session.goto(url)  # navigation, screenshot and title

    async def free(self, session: SessionBrowser) -> None:
        await session.aclose()

    async def between(self) -> None:
        await self.pool.warm()

    async def contexts_left(self) -> int:
        await self.pool.warm()
        return max(0, self.pool.open_contexts - self._baseline_contexts)

    async def stop(self) -> None:
        await self.pool.aclose()


@dataclass
class OwnBrowser:
    playwright: Playwright
    browser: Browser
    page: Page


class BrowserPerSession(Mode[OwnBrowser]):
    name = "per-session-browser"

    def __init__(self, settings: Settings) -> None:
        self.executable = find_browser(settings)
        self._live: list[OwnBrowser] = []  # opened and not (yet successfully) freed

    async def open(self) -> OwnBrowser:
        async with AsyncExitStack() as stack:
            playwright = await async_playwright().start()
            stack.push_async_callback(playwright.stop)
            browser = await playwright.chromium.launch(
                executable_path=self.executable, args=launch_args(), headless=True
            )
            stack.push_async_callback(browser.close)
            viewport = ViewportSize(width=VIEWPORT["width"], height=VIEWPORT["height"])
            context = await browser.new_context(viewport=viewport)
            page = await context.new_page()
            stack.pop_all()
        own = OwnBrowser(playwright, browser, page)
        self._live.append(own)
        return own

    async def browse(self, session: OwnBrowser, url: str) -> None:
        await session.page.goto(url, wait_until="domcontentloaded")
        await session.page.screenshot(type="png", animations="disabled")
        await session.page.title()

    async def free(self, session: OwnBrowser) -> None:
        await session.browser.close()
        await session.playwright.stop()
        self._live.remove(session)

    async def contexts_left(self) -> int:
        return sum(len(own.browser.contexts) for own in self._live if own.browser.is_connected())

    async def stop(self) -> None:
        for own in list(self._live):
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    await self.free(own)
            except Exception as exc:  # keep freeing the others; the leftover count will show it
                print(f"churn: could not free a browser: {exc}", file=sys.stderr)


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class ModeResult:
    name: str
    ready_ms: list[float] = field(default_factory=list)
    browse_ms: list[float] = field(default_factory=list)
    free_ms: list[float] = field(default_factory=list)
    pss_mb_per_session: float = 0.0
    processes_left: int = 0
    contexts_left: int = 0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0

    @property
    def rss_growth_pct(self) -> float:
        return 100.0 * (self.rss_after_mb - self.rss_before_mb) / self.rss_before_mb

    def summary(self) -> dict[str, float | int]:
        return {
            "ready_ms_median": sig(statistics.median(self.ready_ms)),
            "ready_ms_p95": sig(p95(self.ready_ms)),
            "browse_ms_median": sig(statistics.median(self.browse_ms)),
            "free_ms_median": sig(statistics.median(self.free_ms)),
            "free_ms_p95": sig(p95(self.free_ms)),
            "pss_mb_per_session": sig(self.pss_mb_per_session),
            "processes_left": self.processes_left,
            "contexts_left": self.contexts_left,
        }


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    start = time.perf_counter()
    async with asyncio.timeout(OP_TIMEOUT):
        value = await awaitable
    return value, (time.perf_counter() - start) * 1000


async def pss_mb() -> float:
    await asyncio.sleep(SETTLE)
    report = await asyncio.to_thread(browser_processes)
    return report.total_mb


def python_rss_mb() -> float:
    gc.collect()
    return self_memory_bytes() / 2**20


async def churn(mode: Mode[S], result: ModeResult, sessions: int, url: str) -> None:
    """Open, browse and free ``sessions`` sessions one after another, timing each step."""
    for _ in range(sessions):
        session, ready = await timed(mode.open())
        try:
            _, browse = await timed(mode.browse(session, url))
        finally:
            _, free = await timed(mode.free(session))
        result.ready_ms.append(ready)
        result.browse_ms.append(browse)
        result.free_ms.append(free)
        await mode.between()


async def pss_per_session(mode: Mode[Any], k: int, url: str) -> float:
    """(PSS with ``k`` browsed sessions open) minus (PSS at the mode's baseline), over ``k``."""
    await mode.between()
    baseline = await pss_mb()
    open_sessions: list[Any] = []
    try:
        for _ in range(k):
            session, _ = await timed(mode.open())
            open_sessions.append(session)
            await timed(mode.browse(session, url))
        await mode.between()  # the shared pool is back to "sessions plus its spare"
        loaded = await pss_mb()
    finally:
        for session in open_sessions:
            await timed(mode.free(session))
    return (loaded - baseline) / k


async def new_processes(before: set[int]) -> int:
    """Descendant browser/driver processes not in ``before``, after up to EXIT_WAIT s to exit."""
    deadline = time.monotonic() + EXIT_WAIT
    while True:
        report = await asyncio.to_thread(browser_processes, memory=False)
        left = len({p.pid for p in report.procs} - before)
        if left == 0 or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.1)


async def run_mode(mode: Mode[Any], sessions: int, url: str) -> ModeResult:
    result = ModeResult(mode.name)
    before = {p.pid for p in browser_processes(memory=False).procs}
    try:
        await mode.start()
        result.rss_before_mb = python_rss_mb()
        await churn(mode, result, sessions, url)
        result.rss_after_mb = python_rss_mb()
        result.pss_mb_per_session = await pss_per_session(mode, min(CONCURRENT, sessions), url)
        result.contexts_left = await mode.contexts_left()
    finally:
        await mode.stop()
    result.processes_left = await new_processes(before)
    return result


def build_mode(name: str, settings: Settings) -> Mode[Any]:
    if name == "shared":
        return SharedPool(settings)
    if name == "per-session-browser":
        return BrowserPerSession(settings)
    raise ValueError(f"unknown mode {name!r}")


async def run(sessions: int, modes: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    """Run the modes in order and return the report (the ``--json`` object)."""
    settings = Settings()
    results: dict[str, ModeResult] = {}
    with LocalSite() as site:
        for name in modes:
            if progress:
                print(f"churn: {name}: {sessions} sessions…", file=sys.stderr)
            results[name] = await run_mode(build_mode(name, settings), sessions, site.url(PAGE))
    return report(sessions, results)


# -- reporting ---------------------------------------------------------------------------------
def report(sessions: int, results: dict[str, ModeResult]) -> dict[str, Any]:
    shared, per = results.get("shared"), results.get("per-session-browser")
    modes = {name.replace("-", "_"): r.summary() for name, r in results.items()}
    ready = pss = None
    if shared and per:
        ready = ratio(statistics.median(shared.ready_ms), statistics.median(per.ready_ms))
        pss = ratio(shared.pss_mb_per_session, per.pss_mb_per_session)
    leaked_processes = sum(r.processes_left for r in results.values())
    leaked_contexts = sum(r.contexts_left for r in results.values())
    rss_growth = sig(shared.rss_growth_pct) if shared else None
    return {
        "sessions": sessions,
        "modes": modes,
        "ratios": {"ready_median": ready, "pss_per_session": pss},
        "leaked_processes": leaked_processes,
        "leaked_contexts": leaked_contexts,
        "rss_growth_pct": rss_growth,
        "targets": {
            "ready_median_ratio<=0.1": None if ready is None else ready <= 0.1,
            "pss_ratio<=0.33": None if pss is None else pss <= 0.33,
            "zero_leaks": leaked_processes == 0 and leaked_contexts == 0,
            "rss_growth<10%": None if rss_growth is None else rss_growth < 10,
        },
    }


ROWS = (
    ("ready_ms_median", "session ready, median (ms)"),
    ("ready_ms_p95", "session ready, p95 (ms)"),
    ("browse_ms_median", "navigate + screenshot, median (ms)"),
    ("free_ms_median", "free, median (ms)"),
    ("free_ms_p95", "free, p95 (ms)"),
    ("pss_mb_per_session", "PSS per live session (MB)"),
    ("processes_left", "processes left"),
    ("contexts_left", "contexts left"),
)


def table(data: dict[str, Any]) -> str:
    modes: dict[str, dict[str, float]] = data["modes"]
    names = list(modes)
    width = max(len(label) for _, label in ROWS)
    lines = [
        f"Session churn: {data['sessions']} sessions per mode, "
        f"K={min(CONCURRENT, data['sessions'])} open at once for memory, {os.cpu_count()} CPUs",
        "",
        " " * width + "".join(f"{name:>22}" for name in names),
    ]
    for key, label in ROWS:
        lines.append(f"{label:<{width}}" + "".join(f"{modes[name][key]:>22g}" for name in names))
    ratios = data["ratios"]
    lines += [
        "",
        f"ratio shared/per-session: ready median {_fmt(ratios['ready_median'])}, "
        f"PSS per session {_fmt(ratios['pss_per_session'])}",
        f"Python RSS growth over the shared churn: {_fmt(data['rss_growth_pct'])} %",
        cli.targets(data["targets"]),
        "",
        "shared 'ready' = pool.new_session_browser() with a warm spare waiting (the pool refills it",
        "between sessions, untimed); per-session-browser 'ready' = Playwright start + launch + context",
        "+ page. PSS per session = (K open - baseline) / K; baseline = pool with its spare / nothing.",
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 0.01 else f"{value:g}"


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("churn", "Session churn: Sidekick's shared pool vs a browser per session.")
    parser.add_argument("--sessions", type=cli.at_least(1), default=20, help="sessions to open and close per mode")
    cli.add_choice(parser, "--modes", MODES)
    return parser


if __name__ == "__main__":
    sys.exit(cli.main(parser(), lambda args: asyncio.run(run(args.sessions, args.modes)), table))
