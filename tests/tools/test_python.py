"""The Python tool, on the real bubblewrap sandbox (these tests fail, not skip, where it cannot be made)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools import sandbox
from sidekick.tools.base import ToolContext
from sidekick.tools.python import PythonResult, available, build, run_python

# A grandchild that would outlive the run if only the direct child were killed.
SPAWN_SLEEPER = textwrap.dedent(
    """\
    import pathlib, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pathlib.Path("pids").write_text(f"{child.pid}")
    print("child", child.pid, flush=True)
    """
)
# A real fork bomb (every process forks forever), throttled so that under a short timeout it stays at
# a few dozen processes: as root nothing else caps it, and other people's work shares this machine.
FORK_BOMB = textwrap.dedent(
    """\
    import os, time
    first = os.getpid()
    while True:
        try:
            os.fork()
        except OSError:
            pass
        if os.getpid() == first:
            print("processes", sum(name.isdigit() for name in os.listdir("/proc")), flush=True)
        time.sleep(0.25)
    """
)


@pytest.fixture(scope="session", autouse=True)
def real_sandbox() -> sandbox.Sandbox:
    """Every test here needs the real sandbox; without it they fail with the reason and the fix."""
    return sandbox.default()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


@pytest.fixture
def new_processes() -> Iterator[set[int]]:
    """Descendants of this test process that appear during the test and are still running."""
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    left: set[int] = set()
    yield left
    left.update(live_descendants() - before)


def live_descendants() -> set[int]:
    """Our descendants, minus zombies (a zombie waiting for its reaper holds no resources)."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


async def wait_no_new_descendants(before: set[int], within: float = 5.0) -> set[int]:
    """The descendants beyond ``before`` still alive after ``within`` seconds (empty once all exit)."""
    deadline = time.monotonic() + within
    while (left := live_descendants() - before) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


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
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'PWD', 'PYTHONIOENCODING']"  # PWD: bwrap's --chdir
    assert lines[2] == str(ws)


async def test_cwd_is_the_workspace_and_its_files_work(ws: Path) -> None:
    (ws / "input.txt").write_text("21")
    code = "import os\nprint(os.getcwd())\nopen('made.txt', 'w').write(str(2 * int(open('input.txt').read())))"
    result = await run_python(code, cwd=ws)
    assert result.output == f"{ws}\n"
    assert (ws / "made.txt").read_text() == "42"


async def test_plain_computation_and_the_standard_library(ws: Path) -> None:
    code = textwrap.dedent(
        """\
        import decimal, hashlib, json, multiprocessing, sqlite3, ssl, zoneinfo
        print(sum(i * i for i in range(1000)), decimal.Decimal(1) / 8, hashlib.sha256(b"").hexdigest()[:8])
        print(json.dumps(sqlite3.connect(":memory:").execute("select 6 * 7").fetchone()))
        with multiprocessing.Pool(2) as pool:  # needs /dev/shm, fork and /proc inside
            print(pool.map(abs, [-1, -2]))
        try:
            import psutil  # installed in our virtual environment, not offered in the sandbox
        except ModuleNotFoundError as exc:
            print("missing", exc.name)
        """
    )
    result = await run_python(code, cwd=ws)
    assert result.exit_code == 0, result.output
    assert result.output == "332833500 0.125 e3b0c442\n[42]\n[1, 2]\nmissing psutil\n"


async def test_unicode_round_trip(ws: Path) -> None:
    result = await run_python("print('héllo ✓')", cwd=ws)
    assert result.output == "héllo ✓\n"


# --- the sandbox's boundary ---


async def test_cannot_read_outside_the_workspace(ws: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted-secret.txt"
    planted.write_text("the planted secret")
    targets = [planted, Path(__file__), Path.cwd() / "pyproject.toml", Path.home() / ".bashrc", Path("/etc/passwd")]
    code = textwrap.dedent(
        f"""\
        for path in {[str(target) for target in targets]!r}:
            try:
                print(path, open(path).read()[:40])
            except OSError as exc:
                print(path, type(exc).__name__)
        import os
        print(sorted(os.listdir({str(Path.home())!r})))
        """
    )
    result = await run_python(code, cwd=ws)
    assert result.exit_code == 0, result.output
    assert "the planted secret" not in result.output
    lines = result.output.splitlines()
    assert lines[:-1] == [f"{target} FileNotFoundError" for target in targets]
    # The home folder holds only the interpreter's prefix when the interpreter lives under it.
    home_entries = (
        {Path(sys.base_prefix).relative_to(Path.home()).parts[0]}
        if Path(sys.base_prefix).is_relative_to(Path.home())
        else set()
    )
    assert lines[-1] == repr(sorted(home_entries))


async def test_cannot_write_outside_the_workspace(ws: Path, tmp_path: Path) -> None:
    targets = [tmp_path / "escaped.txt", Path(sys.base_prefix) / "escaped.txt", Path("/usr/escaped.txt"), Path("/x")]
    code = textwrap.dedent(
        f"""\
        for path in {[str(target) for target in targets]!r} + ["/tmp/sidekick-private-tmp.txt"]:
            try:
                open(path, "w").write("escaped")
                print(path, "written")
            except OSError as exc:
                print(path, type(exc).__name__)
        """
    )
    result = await run_python(code, cwd=ws)
    assert result.exit_code == 0, result.output
    for target in targets:
        assert not target.exists(), result.output
    # Read-only where the host shows through; tmp_path is inside the sandbox's own, private /tmp.
    assert f"{sys.base_prefix}/escaped.txt OSError" in result.output
    assert "/usr/escaped.txt OSError" in result.output
    assert "/tmp/sidekick-private-tmp.txt written" in result.output
    assert not await asyncio.to_thread(os.path.exists, "/tmp/sidekick-private-tmp.txt")
    again = await run_python("import os\nprint(os.path.exists('/tmp/sidekick-private-tmp.txt'))", cwd=ws)
    assert again.output == "False\n"  # a fresh /tmp for every run


async def test_cannot_connect_to_a_local_server(ws: Path) -> None:
    seen: list[object] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        code = textwrap.dedent(
            f"""\
            import socket
            print(socket.if_nameindex())
            for address in [("127.0.0.1", {port}), ("1.1.1.1", 80)]:
                try:
                    socket.create_connection(address, timeout=3).close()
                    print(address[0], "connected")
                except OSError as exc:
                    print(address[0], type(exc).__name__)
            try:
                socket.getaddrinfo("example.com", 80)
                print("resolved")
            except OSError as exc:
                print("dns", type(exc).__name__)
            """
        )
        result = await run_python(code, cwd=ws)
        await asyncio.sleep(0.2)  # a connection that did get through would be accepted by now
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
    assert seen == []
    assert result.output == ("[(1, 'lo')]\n127.0.0.1 ConnectionRefusedError\n1.1.1.1 OSError\ndns gaierror\n"), (
        result.output
    )


async def test_cannot_see_other_processes(ws: Path) -> None:
    code = textwrap.dedent(
        f"""\
        import os
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
        print(pids)
        print([os.path.basename(open(f"/proc/{{pid}}/cmdline", "rb").read().split(b"\\0")[0]) for pid in pids])
        try:
            os.kill({os.getpid()}, 0)
            print("sees the test")
        except ProcessLookupError:
            print("alone")
        """
    )
    result = await run_python(code, cwd=ws)
    assert result.exit_code == 0, result.output
    # 1 is bwrap's init, 2 the interpreter (the bootstrap exec'd into it).
    assert result.output == f"[1, 2]\n[b'bwrap', {os.path.basename(sandbox.interpreter()).encode()!r}]\nalone\n"


# --- no process left behind ---


async def test_busy_loop_is_killed_with_its_sleeping_child(ws: Path, new_processes: set[int]) -> None:
    code = SPAWN_SLEEPER + "print('spinning', flush=True)\nwhile True:\n    pass\n"
    result = await run_python(code, cwd=ws, timeout=1.5)
    assert result.timed_out
    assert result.exit_code is None
    assert 1.5 <= result.duration < 4
    assert "spinning" in result.output  # output printed before the kill is kept
    assert re.search(r"child \d+", result.output)
    assert await wait_no_new_descendants(set()) == set()


async def test_fork_bomb_is_gone_after_the_timeout(ws: Path) -> None:
    before = live_descendants()
    result = await run_python(FORK_BOMB, cwd=ws, timeout=1.5)
    assert result.timed_out
    counts = [int(n) for n in re.findall(r"processes (\d+)", result.output)]
    assert counts and max(counts) >= 16, result.output  # it did grow, inside its own PID namespace
    assert await wait_no_new_descendants(before) == set()


async def test_background_child_does_not_outlive_a_finished_run(ws: Path) -> None:
    before = live_descendants()
    result = await run_python(SPAWN_SLEEPER, cwd=ws, timeout=5)
    assert result.exit_code == 0
    assert not result.timed_out
    assert result.duration < 4
    assert await wait_no_new_descendants(before) == set()


async def test_cancellation_kills_the_whole_sandbox(ws: Path) -> None:
    before = live_descendants()
    task = asyncio.create_task(run_python(SPAWN_SLEEPER + "while True:\n    pass\n", cwd=ws, timeout=30))
    pids = ws / "pids"
    deadline = time.monotonic() + 10
    while not pids.exists() or not pids.read_text():
        assert time.monotonic() < deadline, "the code never started"
        await asyncio.sleep(0.05)
    # bwrap, its init, the interpreter and the sleeper: proof that the check below can see them.
    assert len(live_descendants() - before) >= 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_no_new_descendants(before) == set()


# --- limits ---


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
    assert result.exit_code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL)  # bwrap reports a signal as 128+N
    assert result.duration < 10


async def test_file_size_limit(ws: Path) -> None:
    result = await run_python("open('big', 'wb').write(b'x' * 3 * 1024 * 1024)", cwd=ws, file_mb=1)
    assert result.exit_code == 1
    assert "File too large" in result.output
    assert (ws / "big").stat().st_size <= 1024 * 1024


async def test_private_tmp_is_bounded(ws: Path) -> None:
    code = textwrap.dedent(
        """\
        written = 0
        try:
            for i in range(100):
                open(f"/tmp/{i}", "wb").write(b"x" * 5 * 1024 * 1024)
                written += 5
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        print(written)
        """
    )
    result = await run_python(code, cwd=ws)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OSError 28\n")  # ENOSPC: in memory, but not without end
    assert int(result.output.split()[-1]) * 1024 * 1024 <= sandbox.TMP_BYTES


# --- availability and the tool ---


def test_probe_says_how_to_install_bwrap(tmp_path: Path) -> None:
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        sandbox.probe(search_path=str(tmp_path))  # a PATH without bwrap
    assert str(caught.value) == sandbox.INSTALL_HINT
    assert isinstance(caught.value, ToolError)


def test_probe_reports_what_bwrap_refused(tmp_path: Path) -> None:
    # A real refusal: our probe, run inside a sandbox, whose --disable-userns forbids new namespaces.
    outer = sandbox.default()
    package = Path(sandbox.__file__).parents[2]
    code = textwrap.dedent(
        f"""\
        import sys
        sys.path.insert(0, {str(package)!r})
        from sidekick.tools import sandbox
        try:
            sandbox.probe()
        except sandbox.SandboxUnavailable as exc:
            print(exc)
        """
    )
    command = outer.command([outer.python, "-I", "-c", code], workspace=tmp_path, env={"PATH": "/usr/bin:/bin"})
    # Our code, read-only, bound after the sandbox's private /tmp (which would hide a checkout under
    # /tmp) and before its root turns read-only (which would refuse the mount point).
    at = command.index("--chdir")
    command[at:at] = ["--ro-bind", str(package / "sidekick"), str(package / "sidekick")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bwrap could not create namespaces: bwrap: "), done.stdout
    assert done.stdout.rstrip().endswith(sandbox.NAMESPACE_HINT)


def make_ctx(tmp_path: Path, **settings: Any) -> ToolContext:
    return ToolContext(settings=Settings(**settings), workspace=tmp_path / "ws")


def test_available_says_why_it_is_off(tmp_path: Path) -> None:
    assert available(Settings()) == [("run_python", False, "set SIDEKICK_ENABLE_PYTHON=1")]
    assert available(Settings(enable_python=True)) == [("run_python", True, "")]
    # With network asked for, the tool goes through the session's guard (tests/tools/test_python_network.py).
    assert available(Settings(enable_python=True, python_network=True)) == [("run_python", True, "")]


def test_build_is_off_by_default_and_without_a_supported_sandbox(tmp_path: Path) -> None:
    assert build(make_ctx(tmp_path)) == []
    assert build(make_ctx(tmp_path, enable_python=False)) == []
    assert build(make_ctx(tmp_path, enable_python=True, python_network=True)) == []  # no guard to go through


async def test_tool_runs_code_in_the_workspace(tmp_path: Path) -> None:
    [tool] = build(make_ctx(tmp_path, enable_python=True))
    assert tool.name == "run_python"
    assert tool.metadata == {"side_effect": True}
    assert await tool.ainvoke({"code": "import os\nprint(os.getcwd())"}) == f"exit code 0\n{tmp_path / 'ws'}\n"
    assert await tool.ainvoke({"code": "pass"}) == "exit code 0\n(no output)"
    assert (await tool.ainvoke({"code": "1/0"})).startswith("exit code 1\nTraceback")
    killed = await tool.ainvoke({"code": "import os\nos.kill(os.getpid(), 9)"})
    assert killed == "exit code 137 (ended by SIGKILL)\n(no output)"
    with pytest.raises(ToolError, match="no code"):
        await tool.ainvoke({"code": "  "})


async def test_tool_timeout_comes_from_settings(tmp_path: Path) -> None:
    [tool] = build(make_ctx(tmp_path, enable_python=True, tool_timeout_seconds=1.0))
    answer = await tool.ainvoke({"code": "print('started', flush=True)\nwhile True:\n    pass"})
    assert answer == "timed out after 1s (process killed)\nstarted\n"
    assert "30 seconds" in build(make_ctx(tmp_path, enable_python=True))[0].description
    assert "30 seconds" in build(make_ctx(tmp_path, enable_python=True, tool_timeout_seconds=600.0))[0].description
