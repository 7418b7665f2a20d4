"""Browser tool calls against raw Playwright doing the same on the same local page, in one run.

Run from the project root::

    python -m benchmarks.actions                  # a table
    python -m benchmarks.actions --reps 50 --json # one JSON object on stdout

One :class:`~sidekick.browser.BrowserPool` with the web policy on, as in production (its
:class:`~sidekick.web.guard.Guard` installed, private network allowed so the local test site
``tests.support.fakes.site.LocalSite`` is reachable), gives two contexts: one driven by Sidekick's
browser tools (the tool's ``ainvoke``, as the agent calls it), one by raw Playwright calls.

A tool call returns what the model needs (the action's outcome and a fresh AI-mode snapshot) and
shows the user a screenshot. So the **floor** for each action is raw Playwright doing the action and
then producing the same two outputs: ``page.aria_snapshot(mode="ai")`` and ``page.screenshot()``.
**bare** is the raw action alone, shown so the cost of observing is visible too. Actions, each
repeated ``--reps`` times with raw and tool alternating first:

- navigate: ``goto`` (domcontentloaded) / ``navigate``
- click: a button whose handler changes the page / ``click`` by ref
- click-navigates: a link to another page, then its load event / ``click`` by ref
- type: ``fill`` / ``type_text`` by ref
- select: ``select_option`` / ``select_option`` by ref
- set_checked: ``set_checked`` (alternating) / ``set_checked`` by ref
- snapshot: ``aria_snapshot`` / ``snapshot``

Target per action: tool median <= 1.2 x floor median + 20 ms. The exit code is 0 whether or not a
target is met: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from playwright.async_api import Page

from benchmarks import cli
from benchmarks.cli import sig
from sidekick.browser.context import SessionBrowser
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.tools.base import ToolContext
from sidekick.tools.browser import build
from sidekick.web.guard import Guard
from tests.support.fakes.site import LocalSite

RATIO, SLACK_MS = 1.2, 20.0
OP_TIMEOUT = 30.0
ACTIONS = ("navigate", "click", "click-navigates", "type", "select", "set_checked", "snapshot")

Measured = Callable[[], Awaitable[Any]]


async def timed(fn: Measured) -> float:
    start = time.perf_counter()
    async with asyncio.timeout(OP_TIMEOUT):
        await fn()
    return (time.perf_counter() - start) * 1000


async def observe(page: Page) -> None:
    """What a tool call hands back besides acting: the model's snapshot and the user's screenshot."""
    await page.aria_snapshot(mode="ai")
    await page.screenshot(type="png", animations="disabled")


def ref_of(snapshot: str, needle: str) -> str:
    """The ref on the first snapshot line containing ``needle``."""
    for raw in snapshot.splitlines():
        if needle in raw and "[ref=" in raw:
            return raw.split("[ref=", 1)[1].split("]", 1)[0]
    raise LookupError(f"no line with {needle!r} in the snapshot")


class Bench:
    def __init__(self, site: LocalSite, tools: dict[str, BaseTool], tool_sb: SessionBrowser, raw: Page) -> None:
        self.site = site
        self.tools = tools
        self.tool_sb = tool_sb
        self.raw = raw

    async def tool(self, name: str, **args: Any) -> str:
        result = await self.tools[name].ainvoke(args)
        if not isinstance(result, str):
            raise TypeError(result)
        return result

    async def ready(self, path: str) -> tuple[str, str]:
        """Both pages on ``path``; (the tool's snapshot text, the raw page's snapshot text)."""
        opened = await self.tool("navigate", url=self.site.url(path))
        await self.raw.goto(self.site.url(path), wait_until="domcontentloaded")
        return opened, await self.raw.aria_snapshot(mode="ai")

    async def one(self, action: str, rep: int) -> tuple[float, float, float]:
        """(bare raw ms, floor ms, tool ms) for one repetition."""
        site, raw = self.site, self.raw
        if action == "navigate":
            url = site.url("/bench/controls")
            bare = await timed(lambda: raw.goto(url, wait_until="domcontentloaded"))
            floor = bare + await timed(lambda: observe(raw))
            tool = await timed(lambda: self.tool("navigate", url=url))
            return bare, floor, tool
        if action == "snapshot":
            await self.ready("/bench/controls")
            bare = await timed(lambda: raw.aria_snapshot(mode="ai"))
            floor = bare + await timed(lambda: raw.screenshot(type="png", animations="disabled"))
            return bare, floor, await timed(lambda: self.tool("snapshot"))
        if action == "click-navigates":
            mine, theirs = await self.ready("/bench/controls")
            raw_ref, tool_ref = ref_of(theirs, 'link "Next page"'), ref_of(mine, 'link "Next page"')

            async def raw_click() -> None:
                await raw.locator(f"aria-ref={raw_ref}").click()
                await raw.wait_for_load_state("load")

            bare = await timed(raw_click)
            floor = bare + await timed(lambda: observe(raw))
            return bare, floor, await timed(lambda: self.tool("click", ref=tool_ref))
        raise ValueError(f"unknown action {action!r}")


def control_page() -> str:
    return """<html><head><title>Controls</title></head><body>
<h1>Controls</h1>
<button onclick="this.nextElementSibling.textContent = Number(this.nextElementSibling.textContent) + 1">Count</button>
<span>0</span>
<p><label>Name <input></label></p>
<p><label>Colour <select><option>Red</option><option>Green</option><option>Blue</option></select></label></p>
<p><label><input type="checkbox"> Subscribe</label></p>
<p><a href="/bench/next">Next page</a></p>
</body></html>"""


def next_page() -> str:
    return "<html><head><title>Next</title></head><body><h1>Next</h1><p>You arrived.</p></body></html>"


async def run(reps: int, actions: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sidekick-actions-") as tmp, LocalSite() as site:
        site.route("/bench/controls", control_page())
        site.route("/bench/next", next_page())
        settings = Settings(data_dir=Path(tmp), allow_private_network=True)
        pool = BrowserPool(settings, guard=Guard(settings.url_policy()))
        try:
            tool_sb = await pool.new_session_browser()
            raw_sb = await pool.new_session_browser()

            async def get() -> SessionBrowser:
                return tool_sb

            ctx = ToolContext(settings=settings, workspace=Path(tmp), get_browser=get, emit=lambda event: None)
            bench = Bench(site, {t.name: t for t in build(ctx)}, tool_sb, raw_sb.page)
            samples: dict[str, list[tuple[float, float, float]]] = {a: [] for a in actions}
            for action in actions:
                await _one(bench, action, -1)  # warm-up: first-use costs are not the steady state
                for rep in range(reps):
                    samples[action].append(await _one(bench, action, rep))
            await tool_sb.aclose()
            await raw_sb.aclose()
        finally:
            await pool.aclose()
    return report(reps, samples)


async def _one(bench: Bench, action: str, rep: int) -> tuple[float, float, float]:
    if action in ("click", "type", "select", "set_checked"):
        return await _control_rep(bench, action, rep)
    return await bench.one(action, rep)


async def _control_rep(bench: Bench, action: str, rep: int) -> tuple[float, float, float]:
    raw = bench.raw
    mine, theirs = await bench.ready("/bench/controls")
    value = f"value {rep}"
    spec: dict[str, tuple[str, Callable[[Any], Awaitable[Any]], Callable[[str], Awaitable[str]]]] = {
        "click": ('button "Count"', lambda loc: loc.click(), lambda ref: bench.tool("click", ref=ref)),
        "type": (
            'textbox "Name"',
            lambda loc: loc.fill(value),
            lambda ref: bench.tool("type_text", ref=ref, text=value),
        ),
        "select": (
            'combobox "Colour"',
            lambda loc: loc.select_option(value=["Blue"]),
            lambda ref: bench.tool("select_option", ref=ref, values=["Blue"]),
        ),
        "set_checked": (
            'checkbox "Subscribe"',
            lambda loc: loc.set_checked(True),
            lambda ref: bench.tool("set_checked", ref=ref, checked=True),
        ),
    }
    needle, raw_act, tool_act = spec[action]
    raw_ref, tool_ref = ref_of(theirs, needle), ref_of(mine, needle)

    async def raw_side() -> tuple[float, float]:
        bare = await timed(lambda: raw_act(raw.locator(f"aria-ref={raw_ref}")))
        return bare, bare + await timed(lambda: observe(raw))

    async def tool_side() -> float:
        return await timed(lambda: tool_act(tool_ref))

    if rep % 2:  # alternate who goes first, so drift within a repetition cancels out
        tool = await tool_side()
        bare, floor = await raw_side()
    else:
        bare, floor = await raw_side()
        tool = await tool_side()
    return bare, floor, tool


def report(reps: int, samples: dict[str, list[tuple[float, float, float]]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for action, triples in samples.items():
        bare = statistics.median(t[0] for t in triples)
        floor = statistics.median(t[1] for t in triples)
        tool = statistics.median(t[2] for t in triples)
        rows[action] = {
            "bare_ms_median": sig(bare),
            "floor_ms_median": sig(floor),
            "tool_ms_median": sig(tool),
            "ratio": sig(tool / floor) if floor else None,
            "over_floor_ms": sig(tool - floor),
            "target_met": tool <= RATIO * floor + SLACK_MS,
        }
    return {
        "reps": reps,
        "web_policy": "on (Guard installed, private network allowed)",
        "actions": rows,
        "targets": {f"tool<={RATIO}*floor+{SLACK_MS:g}ms": all(r["target_met"] for r in rows.values())},
    }


def table(data: dict[str, Any]) -> str:
    return cli.text(
        f"Browser actions: Sidekick tool call vs raw Playwright, {data['reps']} reps, web policy {data['web_policy']}",
        f"{'action':<17}{'bare':>9}{'floor':>9}{'tool':>9}{'ratio':>8}{'+ms':>8}  target",
        (
            f"{action:<17}{r['bare_ms_median']:>9g}{r['floor_ms_median']:>9g}{r['tool_ms_median']:>9g}"
            f"{r['ratio']:>8g}{r['over_floor_ms']:>8g}  {cli.verdict(r['target_met'])}"
            for action, r in data["actions"].items()
        ),
        [
            "medians in ms. bare = the raw action; floor = bare + aria_snapshot(mode='ai') + screenshot (what the",
            f"tool returns and shows); target: tool <= {RATIO} x floor + {SLACK_MS:g} ms.",
        ],
    )


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("actions", __doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=cli.at_least(1), default=20, help="repetitions per action")
    cli.add_choice(parser, "--actions", ACTIONS)
    return parser


if __name__ == "__main__":
    sys.exit(cli.main(parser(), lambda args: asyncio.run(run(args.reps, args.actions)), table))
