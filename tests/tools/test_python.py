from __future__ import annotations

import asyncio
import os
import re
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools.base import ToolContext
from sidekick.tools.python import PythonResult, build, run_python

# A grandchild that would outlive the run if only the direct child were killed.
SPAWN_SLEEPER = textwrap.dedent(
    """\
    import pathlib, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pathlib.Path("pids").write_text(f"{child.pid}")
    print("child", child.pid, flush=True)
    """
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie waiting for a reaper (PID 1 of a container) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_output_exit_code_and_interleaving(ws: Path) -> None:
    result = await run_python(
        "import sys\nprint('out1')\nprint('err', file=sys.stderr)\nprint('out2')\nraise SystemExit(3)",
        cwd=ws,
    )
    assert result == PythonResult(exit_code=3, output="out1\nerr\nout2\n", timed_out=False, duration=result.duration)
    assert 0 < result.duration < 5


async def test_errors_are_output(ws: Path) -> None:
    result = await run_python("def broken(:\n", cwd=ws)
    assert result.exit_code == 1
    assert "SyntaxError" in result.output
    result = await run_python("input()", cwd=ws)
    assert result.exit_code == 1
    assert "EOFError" in result.output


async def test_environment_is_scrubbed(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDEKICK_SENTINEL_SECRET", "s3cret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel")
    monkeypatch.setenv("PYTHONSTARTUP", str(ws / "startup.py"))
    (ws / "startup.py").write_text("print('startup ran')")
    code = "import os\nprint(sorted(os.environ))\nprint(dict(os.environ))\nprint(os.environ['HOME'])"
    result = await run_python(code, cwd=ws)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "sk-sentinel" not in result.output
    assert "startup ran" not in result.output
    lines = result.output.splitlines()
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'PYTHONIOENCODING']"
    assert lines[2] == str(ws)


async def test_cwd_is_the_workspace(ws: Path) -> None:
    result = await run_python("import os\nprint(os.getcwd())\nopen('made.txt', 'w').write('hi')", cwd=ws)
    assert result.output == f"{ws}\n"
    assert (ws / "made.txt").read_text() == "hi"


async def test_unicode_round_trip(ws: Path) -> None:
    result = await run_python("print('héllo ✓')", cwd=ws)
    assert result.output == "héllo ✓\n"


async def test_busy_loop_is_killed_with_its_process_group(ws: Path) -> None:
    code = SPAWN_SLEEPER + "print('spinning', flush=True)\nwhile True:\n    pass\n"
    result = await run_python(code, cwd=ws, timeout=1.5)
    assert result.timed_out
    assert result.exit_code is None
    assert 1.5 <= result.duration < 4
    assert "spinning" in result.output  # output printed before the kill is kept
    match = re.search(r"child (\d+)", result.output)
    assert match is not None
    assert await wait_gone(int(match.group(1)))


async def test_background_child_does_not_outlive_a_finished_run(ws: Path) -> None:
    result = await run_python(SPAWN_SLEEPER, cwd=ws, timeout=5)
    assert result.exit_code == 0
    assert not result.timed_out
    assert result.duration < 4
    assert await wait_gone(int((ws / "pids").read_text()))


async def test_cancellation_kills_the_process_group(ws: Path) -> None:
    task = asyncio.create_task(run_python(SPAWN_SLEEPER + "while True:\n    pass\n", cwd=ws, timeout=30))
    pids = ws / "pids"
    deadline = time.monotonic() + 10
    while not pids.exists() or not pids.read_text():
        assert time.monotonic() < deadline, "the code never started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(int(pids.read_text()))


async def test_huge_output_is_truncated_in_bounded_memory(ws: Path) -> None:
    tracemalloc.start()
    try:
        result = await run_python("print('x' * 50_000_000)", cwd=ws, output_limit=10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert result.output == "x" * 10_000 + "\n[… truncated 49990001 bytes]"
    assert peak < 5_000_000  # read chunk by chunk, never the 50 MB at once


async def test_endless_output_stays_bounded(ws: Path) -> None:
    result = await run_python("while True:\n    print('y' * 1000)", cwd=ws, timeout=1, output_limit=500)
    assert result.timed_out
    assert result.output.startswith("y" * 500 + "\n[… truncated ")
    assert len(result.output) < 600


async def test_memory_limit(ws: Path) -> None:
    result = await run_python("bytearray(2_000_000_000)", cwd=ws, memory_mb=512)
    assert result.exit_code == 1
    assert "MemoryError" in result.output
    assert not result.timed_out


async def test_cpu_limit(ws: Path) -> None:
    result = await run_python("while True:\n    pass", cwd=ws, timeout=20, cpu_seconds=1)
    assert not result.timed_out
    assert result.exit_code is not None and result.exit_code < 0  # ended by SIGXCPU or SIGKILL
    assert result.duration < 10


async def test_file_size_limit(ws: Path) -> None:
    result = await run_python("open('big', 'wb').write(b'x' * 3 * 1024 * 1024)", cwd=ws, file_mb=1)
    assert result.exit_code == 1
    assert "File too large" in result.output
    assert (ws / "big").stat().st_size <= 1024 * 1024


# --- the tool ---


def make_ctx(tmp_path: Path, **settings: Any) -> ToolContext:
    return ToolContext(settings=Settings(**settings), workspace=tmp_path / "ws")


def test_build_is_off_by_default(tmp_path: Path) -> None:
    assert build(make_ctx(tmp_path)) == []
    assert build(make_ctx(tmp_path, enable_python=False)) == []


async def test_tool_runs_code_in_the_workspace(tmp_path: Path) -> None:
    [tool] = build(make_ctx(tmp_path, enable_python=True))
    assert tool.name == "run_python"
    assert tool.metadata == {"side_effect": True}
    assert await tool.ainvoke({"code": "import os\nprint(os.getcwd())"}) == f"exit code 0\n{tmp_path / 'ws'}\n"
    assert await tool.ainvoke({"code": "pass"}) == "exit code 0\n(no output)"
    assert (await tool.ainvoke({"code": "1/0"})).startswith("exit code 1\nTraceback")
    with pytest.raises(ToolError, match="no code"):
        await tool.ainvoke({"code": "  "})


async def test_tool_timeout_comes_from_settings(tmp_path: Path) -> None:
    [tool] = build(make_ctx(tmp_path, enable_python=True, tool_timeout_seconds=1.0))
    answer = await tool.ainvoke({"code": "print('started', flush=True)\nwhile True:\n    pass"})
    assert answer == "timed out after 1s (process killed)\nstarted\n"
    assert "30 seconds" in build(make_ctx(tmp_path, enable_python=True))[0].description
    assert "30 seconds" in build(make_ctx(tmp_path, enable_python=True, tool_timeout_seconds=600.0))[0].description
