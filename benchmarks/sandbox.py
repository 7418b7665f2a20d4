"""What the Python tool's sandbox costs: a sandboxed ``print(1)`` against the bare interpreter.

Run from the project root::

    python -m benchmarks.sandbox                 # a table
    python -m benchmarks.sandbox --runs 50 --json  # one JSON object on stdout

``sandboxed``
    :func:`sidekick.tools.python.run_python`, as the tool calls it: a fresh bubblewrap sandbox
    (namespaces, mounts, private ``/tmp``) around the limits bootstrap and the interpreter.
``unsandboxed``
    The process the tool started before the sandbox: the same bootstrap, limits, scrubbed environment,
    own session and output collection (:func:`sidekick.tools.python.run_process`), with this
    process's interpreter and no bwrap.

The two alternate run by run after one untimed warm-up each (the sandbox probe is done before), so
a busy machine slows both alike. Each time is the wall clock of the whole call, from start to the
collected output. The exit code is 0 whether or not the target is met: this reports, it does not judge.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import cli
from sidekick.tools import sandbox
from sidekick.tools.python import PythonResult, python_command, run_process, run_python, scrubbed_env

TARGET_MS = 100.0  # the sandbox may add at most this much to a run
CODE = "print(1)"
RUN_TIMEOUT = 30.0  # seconds for one run; a hang is an error, not a data point


async def _sandboxed(workspace: Path) -> PythonResult:
    return await run_python(CODE, cwd=workspace, timeout=RUN_TIMEOUT)


async def _unsandboxed(workspace: Path) -> PythonResult:
    command = python_command(sys.executable, timeout=RUN_TIMEOUT)
    env = scrubbed_env(workspace, python=sys.executable)
    return await run_process(command, code=CODE, cwd=workspace, env=env, timeout=RUN_TIMEOUT, output_limit=10_000)


async def _timed(run: Callable[[Path], Awaitable[PythonResult]], workspace: Path) -> float:
    started = time.perf_counter()
    result = await run(workspace)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0 or result.output != "1\n":
        raise RuntimeError(f"print(1) failed: exit code {result.exit_code}, output {result.output!r}")
    return elapsed * 1000


async def run(runs: int) -> dict[str, Any]:
    """Time ``runs`` of each mode, alternating, and return the report (the ``--json`` object)."""
    found = sandbox.default()  # the once-per-process probe is not part of a run
    modes = {"sandboxed": _sandboxed, "unsandboxed": _unsandboxed}
    times: dict[str, list[float]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory(prefix="sidekick-bench-sandbox-") as folder:
        workspace = Path(folder)
        for mode in modes.values():
            await _timed(mode, workspace)
        for _ in range(runs):
            for name, mode in modes.items():
                times[name].append(await _timed(mode, workspace))
    medians = {name: statistics.median(values) for name, values in times.items()}
    added = medians["sandboxed"] - medians["unsandboxed"]
    return {
        "runs": runs,
        "code": CODE,
        "bwrap": found.bwrap,
        "python": found.python,
        "median_ms": {name: round(value, 1) for name, value in medians.items()},
        "min_ms": {name: round(min(values), 1) for name, values in times.items()},
        "max_ms": {name: round(max(values), 1) for name, values in times.items()},
        "added_ms": round(added, 1),
        "target_added_ms": TARGET_MS,
        "target_met": added < TARGET_MS,
    }


def table(data: dict[str, Any]) -> str:
    lines = [f"{data['runs']} runs of {data['code']} each, alternating ({data['bwrap']}, {data['python']})", ""]
    lines.append(f"{'mode':<12} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, median in data["median_ms"].items():
        lines.append(f"{name:<12} {median:>10.1f} {data['min_ms'][name]:>8.1f} {data['max_ms'][name]:>8.1f}")
    lines += [
        "",
        f"the sandbox adds {data['added_ms']:.1f} ms "
        f"(target: under {data['target_added_ms']:g} ms, {cli.verdict(data['target_met'])})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    options = cli.parser("sandbox", "The cost of the Python tool's sandbox.", runs=(30, "timed runs per mode"))
    sys.exit(cli.main(options, lambda args: asyncio.run(run(args.runs)), table))
