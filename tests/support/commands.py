"""Running Sidekick's own entry points as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_module(
    module: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m module args…`` from the repository root, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )


def run_json(module: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run a benchmark with ``--json``: it must exit 0 and print exactly one JSON object."""
    done = run_module(module, *args, "--json", timeout=timeout)
    assert done.returncode == 0, f"{module} exited {done.returncode}:\n{done.stderr[-3000:]}"
    data = json.loads(done.stdout)  # exactly one JSON object: anything else fails to parse
    assert isinstance(data, dict)
    return data
