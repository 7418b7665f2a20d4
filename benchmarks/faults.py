"""Faults and bad input: does every one end in a clear message, with the session still usable?

Run from the project root::

    python -m benchmarks.faults                       # a table
    python -m benchmarks.faults --json                # one JSON object on stdout
    python -m benchmarks.faults --only model_429,empty_message

This is the report; the scenarios, what each must say, and how a run is judged and its leftover
processes counted live in ``tests/support/faults/`` (shared with ``tests/test_faults.py``). It runs
the chosen scenarios, in order, on one live pool with real Chromium, the fake model and the local
site, then closes the pool and counts what is still running.

- **recover_s**: from the fault to the end of the next successful turn on the same thread.
- **leaked_processes**: processes a scenario left behind (see ``tests/support/faults/accounting.py``).
- **total_leaked**: the sum over scenarios, plus the processes left once the live pool is closed too
  (the target is zero: nothing descends from this process at the end).

The exit code is 0 whether or not every scenario recovered: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks import cli
from tests.support.faults.accounting import Result, processes_after_close, run_scenario
from tests.support.faults.harness import open_env
from tests.support.faults.scenarios import SCENARIOS

log = cli.logger("faults")


async def run(names: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    results: list[Result] = []
    async with open_env() as env:
        for name in names:
            if progress:
                log(f"{name}…")
            results.append(await run_scenario(env, SCENARIOS[name]))
    return report(results, await processes_after_close())


def report(results: Sequence[Result], after_close: int) -> dict[str, Any]:
    return {
        "scenarios": [r.to_json() for r in results],
        "all_recovered": all(r.recovered for r in results),
        "total_leaked": sum(r.leaked_processes for r in results) + after_close,
    }


def table(data: dict[str, Any], width: int = 100) -> str:
    rows = data["scenarios"]
    name_w = max([len("scenario"), *(len(r["name"]) for r in rows)])
    lines = [
        f"{'scenario':<{name_w}}  {'outcome':<9}  {'recover s':>9}  {'leaked':>6}  message",
    ]
    for r in rows:
        outcome = "recovered" if r["recovered"] else "FAILED"
        seconds = "-" if r["recover_s"] is None else f"{r['recover_s']:.2f}"
        message = " ".join(r["message"].split())
        if r["recovered"] and len(message) > width:  # a failure is shown whole
            message = message[: width - 1] + "…"
        lines.append(f"{r['name']:<{name_w}}  {outcome:<9}  {seconds:>9}  {r['leaked_processes']:>6}  {message}")
    recovered = sum(1 for r in rows if r["recovered"])
    lines += [
        "",
        f"{recovered}/{len(rows)} scenarios recovered; {data['total_leaked']} processes leaked in total "
        "(including any left after the live pool closed).",
        "recover s = from the fault to the end of the next successful run on the same thread.",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("faults", "Faults and bad input: recovery, messages and leaks.")
    cli.add_choice(parser, "--only", tuple(SCENARIOS))
    return parser


def measure(args: argparse.Namespace) -> dict[str, Any]:
    # The scenarios cause failures on purpose and the table reports how each ended; Sidekick's own
    # log lines about them (tracebacks included) would only bury it.
    logging.getLogger("sidekick").setLevel(logging.CRITICAL)
    return asyncio.run(run(args.only))


if __name__ == "__main__":
    sys.exit(cli.main(parser(), measure, table))
