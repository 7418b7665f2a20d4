"""Run model-written Python in a separate, limited process.

The child is a fresh interpreter in isolated mode (``-I``: no environment variables of its own, no
user site-packages, no current directory on ``sys.path``) with a scrubbed environment, its own
session and process group, and resource limits on memory, CPU time, file size and core dumps. A
tiny bootstrap sets the limits and then ``exec``s the real interpreter, which reads the code from
stdin; limits survive ``exec`` and no ``preexec_fn`` runs in our (threaded) process.

This bounds what a run can cost, and keeps our secrets out of its environment, but it is not a
security boundary: the code runs as our user and can read what we can read. That is why the tool is
off by default and every call waits for approval unless auto-approve is on.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from langchain_core.tools import BaseTool, StructuredTool

from sidekick.errors import ToolError
from sidekick.tools.base import ToolContext
from sidekick.tools.files import Workspace

MAX_TOOL_TIMEOUT = 30.0
# After the process exits (or is killed) its pipe may still hold output; wait this long for the rest.
_DRAIN_SECONDS = 1.0
_MIB = 1024 * 1024

# Runs with ``-I -S`` (nothing but the standard library is needed), sets the limits and becomes the
# real interpreter. ``-u`` keeps stdout and stderr unbuffered, so they interleave in order and the
# output printed before a kill is not lost; ``-X utf8`` because ``-I`` ignores PYTHONIOENCODING.
# Plain ``-I`` (not ``-S``) for the code itself: ``-S`` would drop ``exit()`` and installed packages.
_BOOTSTRAP = """\
import os, resource, sys
for name, value in zip(("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE"), sys.argv[1:5]):
    kind = getattr(resource, name)
    hard = resource.getrlimit(kind)[1]
    value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
    resource.setrlimit(kind, (value, value))
os.execv(sys.executable, [sys.executable, "-I", "-u", "-X", "utf8", "-"])
"""
# RLIMIT_NPROC is left alone: it counts every process of our user (it would fail the child at random
# under a busy host) and is not enforced for root anyway. The process group kill covers descendants.


@dataclass(frozen=True)
class PythonResult:
    """``exit_code`` is None when the run timed out; a negative code is the signal that ended it."""

    exit_code: int | None
    output: str
    timed_out: bool
    duration: float


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the first ``limit`` bytes of output and counts the rest, so memory stays bounded."""

    def __init__(self, limit: int) -> None:
        loop = asyncio.get_running_loop()
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        room = max(self.limit - len(self.kept), 0)
        self.kept += data[:room]
        self.dropped += max(len(data) - room, 0)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the process has exited and every pipe is closed: all output has arrived.
        if not self.finished.done():
            self.finished.set_result(None)

    def output(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[… truncated {self.dropped} bytes]"
        return text


async def run_python(
    code: str,
    *,
    cwd: Path,
    timeout: float = 10.0,
    output_limit: int = 10_000,
    memory_mb: int = 512,
    cpu_seconds: int | None = None,
    file_mb: int = 10,
) -> PythonResult:
    """Run ``code`` in ``cwd``; kill its whole process group on timeout, on cancellation and at the end.

    ``cpu_seconds`` defaults to just over ``timeout``: a backstop should the wall-clock kill not come.
    """
    if cpu_seconds is None:
        cpu_seconds = math.ceil(timeout) + 1
    limits = [memory_mb * _MIB, cpu_seconds, file_mb * _MIB, 0]
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(cwd),
        # For interpreters the code starts itself; ours runs with -I, which ignores it.
        "PYTHONIOENCODING": "utf-8",
    }
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    transport, collector = await loop.subprocess_exec(
        lambda: _Collector(output_limit),
        sys.executable,
        "-I",
        "-S",
        "-c",
        _BOOTSTRAP,
        *map(str, limits),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        # Buffered by the transport; if the child dies first, the pipe error is dropped with it.
        stdin.write(code.encode("utf-8", errors="surrogatepass"))
        stdin.close()
        try:
            # Shielded: a timeout or a cancellation must not cancel the future we wait on again below.
            async with asyncio.timeout(timeout):
                await asyncio.shield(collector.exited)
        except TimeoutError:
            timed_out = True
    finally:
        # Also on success: a background child must not outlive the call (or hold our pipe open).
        _kill_group(transport.get_pid())
        try:
            await asyncio.wait_for(asyncio.shield(collector.exited), _DRAIN_SECONDS)
            await asyncio.wait_for(asyncio.shield(collector.finished), _DRAIN_SECONDS)
        except TimeoutError:
            pass  # a grandchild that left our process group still holds the pipe; stop reading
        finally:
            transport.close()
    return PythonResult(
        exit_code=None if timed_out else transport.get_returncode(),
        output=collector.output(),
        timed_out=timed_out,
        duration=time.monotonic() - started,
    )


def _kill_group(pid: int) -> None:
    # The child leads its own session, so its process group id is its pid.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def build(ctx: ToolContext) -> list[BaseTool]:
    """``run_python`` when ``SIDEKICK_ENABLE_PYTHON`` is on; nothing otherwise."""
    if not ctx.settings.enable_python:
        return []
    root = ctx.workspace
    timeout = min(ctx.settings.tool_timeout_seconds, MAX_TOOL_TIMEOUT)

    async def run_python_tool(code: str) -> str:
        if not code.strip():
            raise ToolError("There is no code to run.")
        # The workspace is created on first use, and refuses to be our own working directory.
        cwd = (await asyncio.to_thread(Workspace, root)).root
        result = await run_python(code, cwd=cwd, timeout=timeout)
        output = result.output or "(no output)"
        if result.timed_out:
            return f"timed out after {timeout:g}s (process killed)\n{output}"
        return f"exit code {result.exit_code}\n{output}"

    return [
        StructuredTool.from_function(
            coroutine=run_python_tool,
            name="run_python",
            description=(
                "Run a Python 3 script in a fresh process and get its exit code and printed output "
                "(stdout and stderr, first 10,000 bytes). The working directory is your workspace, so "
                "files it writes can be read with read_file. Limits: "
                f"{timeout:g} seconds, 512 MB of memory, 10 MB per written file. Nothing persists "
                "between calls except files; there is no input(). Use print() to see results."
            ),
            metadata={"side_effect": True},
        )
    ]
