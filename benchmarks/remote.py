"""Remote browsers: Sidekick's session churn on a Playwright browser server against a local Chromium.

Run from the project root::

    python -m benchmarks.remote --sessions 20                 # a table
    python -m benchmarks.remote --sessions 60 --rounds 3 --json   # one JSON object on stdout

Both modes are :mod:`benchmarks.churn`'s ``shared`` mode, measured by its code (one
:class:`~sidekick.browser.pool.BrowserPool`, the warm spare refilled between sessions, untimed):
**ready** is ``pool.new_session_browser()``, **navigate + screenshot** is ``SessionBrowser.goto`` of a
local test page, **free** is ``SessionBrowser.aclose()``; then PSS per live session, processes and
contexts left. **Ready without a spare** is ``new_session_browser()`` on a pool with no warm spare:
a context and page opened on demand, as for a session restored from its saved state or moved off a
lost endpoint (those never take the spare). ``local`` launches Chromium here, as without ``SIDEKICK_BROWSER_ENDPOINTS``;
``remote`` sets it to a ``playwright run-server`` that this run starts on loopback
(:mod:`tests.support.run_server`, running the same Chromium). On loopback the ratios show the cost
of the extra hop through the server's Node process, not a network's. Both run in one process, in
``--rounds`` alternating rounds (local, remote, local, …; each a fresh pool doing its share of the
sessions), so a machine whose load changes weighs on both alike; the figures are over all rounds
(PSS: the mean of the rounds', leftovers: their sum). **server processes left** counts the Chromium
processes still under the server once the remote pool closed (the server ends our Chromium when we
disconnect). The exit code is 0 whatever the figures: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
from typing import Any

from benchmarks import cli
from benchmarks.churn import ROWS, ModeResult, SharedPool, run_mode, timed
from benchmarks.cli import ratio, sig
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from tests.support.fakes.site import LocalSite
from tests.support.run_server import remote_settings, run_server
from tests.support.waiting import until_empty

PAGE = "/"
log = cli.logger("remote")
LABELS = (*ROWS[:2], ("cold_ready_ms_median", "session ready without a spare, median (ms)"), *ROWS[2:])


async def run(sessions: int, rounds: int) -> dict[str, Any]:
    """Both modes in alternating rounds; the report (the ``--json`` object)."""
    settings = Settings()
    per_round = math.ceil(sessions / rounds)
    parts: dict[str, list[ModeResult]] = {"local": [], "remote": []}
    cold: dict[str, list[float]] = {"local": [], "remote": []}
    with LocalSite() as site, run_server() as server:
        modes = (("local", settings), ("remote", remote_settings(settings, server)))
        for round_ in range(1, rounds + 1):
            for name, mode_settings in modes:
                log(f"round {round_}/{rounds}: {name}, {per_round} sessions…")
                mode = SharedPool(mode_settings)
                mode.name = name
                parts[name].append(await run_mode(mode, per_round, site.url(PAGE)))
                cold[name] += await cold_opens(mode_settings, per_round)
        server_left = len(await asyncio.to_thread(until_empty, server.browser_pids, 10.0))
    results = {name: combined(name, runs) for name, runs in parts.items()}
    return report(per_round * rounds, results, cold, server_left)


async def cold_opens(settings: Settings, sessions: int) -> list[float]:
    """ms of ``new_session_browser()`` with no spare (a context and page opened on demand, as for a
    session restored from its saved state or moved off a lost endpoint); the browser is up first."""
    pool = BrowserPool(settings, warm_spare=False)
    samples: list[float] = []
    try:
        await (await pool.new_session_browser()).aclose()  # launched or connected, not timed
        for _ in range(sessions):
            session, ms = await timed(pool.new_session_browser())
            samples.append(ms)
            await session.aclose()
    finally:
        await pool.aclose()
    return samples


def combined(name: str, runs: list[ModeResult]) -> ModeResult:
    """One mode's rounds as one result: every sample, the mean PSS, the leftovers summed."""
    return ModeResult(
        name,
        ready_ms=[ms for r in runs for ms in r.ready_ms],
        browse_ms=[ms for r in runs for ms in r.browse_ms],
        free_ms=[ms for r in runs for ms in r.free_ms],
        pss_mb_per_session=statistics.mean(r.pss_mb_per_session for r in runs),
        processes_left=sum(r.processes_left for r in runs),
        contexts_left=sum(r.contexts_left for r in runs),
    )


def report(
    sessions: int, results: dict[str, ModeResult], cold: dict[str, list[float]], server_left: int
) -> dict[str, Any]:
    local, remote = results["local"], results["remote"]
    modes = {
        name: {**r.summary(), "cold_ready_ms_median": sig(statistics.median(cold[name]))}
        for name, r in results.items()
    }

    def median_ratio(samples: str) -> float | None:
        return ratio(statistics.median(getattr(remote, samples)), statistics.median(getattr(local, samples)))

    leaked_processes = sum(r.processes_left for r in results.values()) + server_left
    leaked_contexts = sum(r.contexts_left for r in results.values())
    return {
        "sessions": sessions,
        "modes": modes,
        "ratios": {
            "ready_median": median_ratio("ready_ms"),
            "cold_ready_median": ratio(modes["remote"]["cold_ready_ms_median"], modes["local"]["cold_ready_ms_median"]),
            "browse_median": median_ratio("browse_ms"),
            "free_median": median_ratio("free_ms"),
            "pss_per_session": ratio(remote.pss_mb_per_session, local.pss_mb_per_session),
        },
        "server_processes_left": server_left,
        "leaked_processes": leaked_processes,
        "leaked_contexts": leaked_contexts,
        "targets": {"zero_leaks": leaked_processes == 0 and leaked_contexts == 0},
    }


def table(data: dict[str, Any]) -> str:
    modes = data["modes"]
    width = max(len(label) for _, label in LABELS)
    rows = [f"{label:<{width}}{modes['local'][key]:>12g}{modes['remote'][key]:>12g}" for key, label in LABELS]
    rows.append(f"{'server processes left':<{width}}{'':>12}{data['server_processes_left']:>12}")
    ratios = ", ".join(f"{key.replace('_', ' ')} {value:g}" for key, value in data["ratios"].items() if value)
    return cli.text(
        f"Remote browsers: {data['sessions']} sessions per mode, server on loopback, {os.cpu_count()} CPUs",
        f"{'':<{width}}{'local':>12}{'remote':>12}",
        rows,
        [f"ratio remote/local: {ratios}", cli.targets(data["targets"]),
         "remote = a playwright run-server on 127.0.0.1 (the hop's overhead, not a network's)."],
    )


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("remote", "Session churn on a Playwright browser server vs a local Chromium.")
    parser.add_argument("--sessions", type=cli.at_least(1), default=20, help="sessions to open and close per mode")
    parser.add_argument("--rounds", type=cli.at_least(1), default=2, help="alternating rounds to split them in")
    return parser


if __name__ == "__main__":
    sys.exit(cli.main(parser(), lambda args: asyncio.run(run(args.sessions, args.rounds)), table))
