"""MCP churn: N sessions each call a tool of a stdio server, then close; how many processes are left.

Run from the project root::

    python -m benchmarks.mcp_churn                      # 50 sessions per server kind, a table
    python -m benchmarks.mcp_churn --sessions 10 --json # one JSON object on stdout

Server kinds: ``time`` (mcp-server-time, one Python process), ``wrapper`` (our toy server behind
a shell script that forks a helper ignoring SIGTERM: the full stdin/SIGTERM/SIGKILL path), and
``npx`` (server-filesystem through npx: npx, a shell, node). Per kind, one hub; sessions run
``--concurrency`` at a time; each gets its tools, makes one call (which starts its server: **call**
is start + call), and is closed (**close**, awaited). **left** counts the processes of every
server that are still alive once all sessions are closed: every PID each session's tree had, plus
whatever is left in the server process groups (reparented children included). The exit code is 0
whatever the numbers: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks import cli
from sidekick.config import Settings
from sidekick.mcp import McpConfig, McpHub, ServerConfig, mcp_processes
from tests.mcp.servers import ensure_node_servers, files_server, time_server, toy_server
from tests.support.waiting import alive_pids

KINDS = {
    "time": (lambda: time_server(), "time__get_current_time", {"timezone": "UTC"}),
    "wrapper": (lambda: toy_server(wrapped=True), "toy__echo", {"text": "hi"}),
    "npx": (lambda: files_server(), "files__list_allowed_directories", {}),
}


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


async def churn(kind: str, sessions: int, concurrency: int, root: Path) -> dict[str, Any]:
    make, tool_name, args = KINDS[kind]
    config: ServerConfig = make()
    settings = Settings(data_dir=root / kind, tool_timeout_seconds=60.0)
    calls: list[float] = []
    closes: list[float] = []
    seen: set[int] = set()
    peak = 0
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with McpHub(McpConfig((config,)), settings) as hub:
        await hub.session("warm", root / kind / "warm").tools()  # the catalog, listed once per process

        async def one(i: int) -> None:
            nonlocal peak
            async with gate:
                mcp = hub.session(f"s{i}", root / kind / f"ws{i}")
                try:
                    tool = next(t for t in await mcp.tools() if t.name == tool_name)
                    started = time.perf_counter()
                    await tool.ainvoke(args)
                    calls.append(time.perf_counter() - started)
                    seen.update(mcp.server(config.name).pids())
                    peak = max(peak, mcp_processes(memory=False).processes)
                except Exception as exc:  # reported, not raised: the churn goes on
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                finally:
                    started = time.perf_counter()
                    await mcp.aclose()
                    closes.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sessions)))
        wall = time.perf_counter() - began
        left_after_sessions = len(alive_pids(seen)) + mcp_processes(memory=False).processes
    return {
        "kind": kind,
        "sessions": sessions,
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "call_ms": _ms(calls) if calls else None,
        "close_ms": _ms(closes),
        "processes_per_server": round(len(seen) / max(len(calls), 1), 2),
        "peak_processes": peak,
        "left": left_after_sessions,
        "left_after_exit": len(alive_pids(seen)) + mcp_processes(memory=False).processes,
        "errors": errors[:5],
        "error_count": len(errors),
    }


async def run(kinds: Sequence[str], sessions: int, concurrency: int) -> dict[str, Any]:
    if "npx" in kinds:
        ensure_node_servers()
    with tempfile.TemporaryDirectory(prefix="mcp-churn-") as tmp:
        results = [await churn(kind, sessions, concurrency, Path(tmp)) for kind in kinds]
    return {"results": results, "cpus": psutil.cpu_count()}


def table(data: dict[str, Any]) -> str:
    lines = [
        f"{'kind':8} {'sessions':>8} {'wall s':>7} {'call p50/p95 ms':>17} {'close p50/p95/max ms':>22} "
        f"{'procs/srv':>9} {'peak':>5} {'left':>5} {'errors':>6}"
    ]
    for r in data["results"]:
        call = f"{r['call_ms']['p50']}/{r['call_ms']['p95']}" if r["call_ms"] else "-"
        close = f"{r['close_ms']['p50']}/{r['close_ms']['p95']}/{r['close_ms']['max']}"
        lines.append(
            f"{r['kind']:8} {r['sessions']:>8} {r['wall_s']:>7} {call:>17} {close:>22} "
            f"{r['processes_per_server']:>9} {r['peak_processes']:>5} {r['left']:>5} {r['error_count']:>6}"
        )
        lines += [f"    error: {e}" for e in r["errors"]]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("mcp_churn", __doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=cli.at_least(1), default=50, help="sessions per server kind")
    parser.add_argument("--concurrency", type=cli.at_least(1), default=5, help="sessions open at once")
    cli.add_choice(parser, "--kinds", tuple(KINDS))
    return parser


if __name__ == "__main__":
    sys.exit(cli.main(parser(), lambda args: asyncio.run(run(args.kinds, args.sessions, args.concurrency)), table))
