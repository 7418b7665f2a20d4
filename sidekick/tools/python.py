"""Run model-written Python in an OS sandbox, in a separate, limited process.

Every run gets a fresh bubblewrap sandbox (``sidekick.tools.sandbox``): no network, the standard
library and system files read-only, the session's workspace read-write, a private ``/tmp``, its own
PID namespace and no capabilities. In it, a fresh interpreter in isolated mode (``-I``: no
environment variables of its own, no user site-packages, no current directory on ``sys.path``) runs
with a scrubbed environment and resource limits on memory, CPU time, file size and core dumps. A
tiny bootstrap sets the limits and then ``exec``s the real interpreter, which reads the code from
stdin; limits survive ``exec`` and no ``preexec_fn`` runs in our (threaded) process.

The tool is on only when ``SIDEKICK_ENABLE_PYTHON`` is set and the sandbox works on this machine
(:func:`available` says why not otherwise); it never falls back to an unsandboxed process. Every call
still waits for approval unless auto-approve is on: the code can fill its workspace and use its
limits.

``SIDEKICK_PYTHON_NETWORK=1`` gives the script the web, through the web policy only. The sandbox's
network namespace still has nothing but its own loopback; the web policy guard's HTTP proxy socket
(:meth:`~sidekick.web.guard.Guard.sandbox_socket`) is bound into it, and the bootstrap starts a tiny
forwarder on ``127.0.0.1:3128`` inside, to that socket, before the script runs. ``HTTP_PROXY``,
``HTTPS_PROXY`` and ``ALL_PROXY`` name it, so ``urllib`` (and most clients) use it; the guard checks
every request (CONNECT or plain GET) as it checks the browser's. Anything that ignores the variables
finds no route at all: the proxy is the only way out, not a convention.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from langchain_core.tools import BaseTool, StructuredTool

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools import sandbox
from sidekick.tools.base import ToolContext
from sidekick.tools.files import Workspace

MAX_TOOL_TIMEOUT = 30.0
# After the process exits (or is killed) its pipe may still hold output; wait this long for the rest.
_DRAIN_SECONDS = 1.0
_MIB = 1024 * 1024

# Runs with ``-I -S`` (nothing but the standard library is needed), sets the limits and becomes the
# real interpreter. ``-u`` keeps stdout and stderr unbuffered, so they interleave in order and the
# output printed before a kill is not lost; ``-X utf8`` because ``-I`` ignores PYTHONIOENCODING.
# Plain ``-I`` (not ``-S``) for the code itself: ``-S`` would drop ``exit()``. With a proxy socket
# (argv 5), a forked child relays 127.0.0.1:PROXY_PORT to it; the port is bound before the script
# starts, and the child dies with the sandbox's PID namespace. Small thread stacks: RLIMIT_AS counts them.
_BOOTSTRAP = """\
import os, resource, sys
for name, value in zip(("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE"), sys.argv[1:5]):
    kind = getattr(resource, name)
    hard = resource.getrlimit(kind)[1]
    value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
    resource.setrlimit(kind, (value, value))  # soft = hard: without capabilities, never raised again
if len(sys.argv) > 5:
    import socket, threading
    listener = socket.create_server(("127.0.0.1", int(sys.argv[6])), backlog=64)
    if os.fork() == 0:
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(quiet, fd)
        threading.stack_size(256 * 1024)
        def pipe(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        def relay(client):
            with client, socket.socket(socket.AF_UNIX) as upstream:
                try:
                    upstream.connect(sys.argv[5])
                except OSError:
                    return
                back = threading.Thread(target=pipe, args=(upstream, client))
                back.start()
                pipe(client, upstream)
                back.join()
        while True:
            threading.Thread(target=relay, args=(listener.accept()[0],), daemon=True).start()
    listener.close()
os.execv(sys.executable, [sys.executable, "-I", "-u", "-X", "utf8", "-"])
"""
PROXY_PORT = 3128
"""Where the sandbox's forwarder to the web policy's proxy listens, on the sandbox's own loopback."""
PROXY_SOCKET = "/run/sidekick/proxy.sock"
"""Where the guard's proxy socket shows inside the sandbox."""
_PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
# RLIMIT_NPROC is left alone: it counts every process of our user (it would fail the child at random
# under a busy host) and is not enforced for root anyway. Killing the sandbox ends every descendant.


@dataclass(frozen=True)
class PythonResult:
    """``exit_code`` is None when the run timed out; 128+N (as a shell reports it) when signal N ended it."""

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
    proxy_socket: Path | None = None,
) -> PythonResult:
    """Run ``code`` in a fresh sandbox whose only writable folder of the host is ``cwd``.

    ``cpu_seconds`` defaults to just over ``timeout``: a backstop should the wall-clock kill not come.
    ``proxy_socket`` (the guard's :meth:`~sidekick.web.guard.Guard.sandbox_socket`) gives the script
    the web through the web policy; without it, no network at all.
    Raises :class:`~sidekick.tools.sandbox.SandboxUnavailable` (a ``ToolError``) when there is no sandbox.
    """
    box = await asyncio.to_thread(sandbox.default)  # probed once per process, then cached
    env = scrubbed_env(cwd, python=box.python)
    argv = python_command(box.python, timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds, file_mb=file_mb)
    binds: list[tuple[Path, str]] = []
    if proxy_socket is not None:
        argv += [PROXY_SOCKET, str(PROXY_PORT)]
        env.update(dict.fromkeys(_PROXY_VARIABLES, _PROXY_URL))
        binds.append((proxy_socket, PROXY_SOCKET))
    command = box.command(argv, workspace=cwd, env=env, binds=binds)
    return await run_process(command, code=code, cwd=cwd, env=env, timeout=timeout, output_limit=output_limit)


def python_command(
    python: str, *, timeout: float, memory_mb: int = 512, cpu_seconds: int | None = None, file_mb: int = 10
) -> list[str]:
    """The bootstrap that sets the limits and becomes ``python`` reading the code from stdin."""
    if cpu_seconds is None:
        cpu_seconds = math.ceil(timeout) + 1
    limits = [memory_mb * _MIB, cpu_seconds, file_mb * _MIB, 0]
    return [python, "-I", "-S", "-c", _BOOTSTRAP, *map(str, limits)]


def scrubbed_env(home: Path, *, python: str) -> dict[str, str]:
    """All the environment the code gets: none of ours (API keys stay out)."""
    return {
        # The host's PATH names folders the sandbox does not have.
        "PATH": os.pathsep.join(dict.fromkeys([str(Path(python).parent), "/usr/local/bin", "/usr/bin", "/bin"])),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        # For interpreters the code starts itself; ours runs with -I, which ignores it.
        "PYTHONIOENCODING": "utf-8",
    }


async def run_process(
    command: Sequence[str], *, code: str, cwd: Path, env: Mapping[str, str], timeout: float, output_limit: int
) -> PythonResult:
    """Start ``command`` in its own session, feed it ``code`` and collect its output in bounded memory.

    Its whole process group is killed on timeout, on cancellation and at the end. The sandbox is not
    added here: :func:`run_python` is the only caller in Sidekick (the benchmark times the bare process).
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    transport, collector = await loop.subprocess_exec(
        lambda: _Collector(output_limit),
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
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
        # Also on success: a background child must not outlive the call (or hold our pipe open). In
        # the sandbox this kills bwrap and its namespace init, and the kernel then kills the rest.
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


def available(settings: Settings) -> list[tuple[str, bool, str]]:
    """``[("run_python", on, why it is off)]``; probes the sandbox (once per process) only when asked for."""
    if not settings.enable_python:
        return [("run_python", False, "set SIDEKICK_ENABLE_PYTHON=1")]
    try:
        sandbox.default()
    except sandbox.SandboxUnavailable as exc:
        return [("run_python", False, f"the Python sandbox cannot be made: {exc}")]
    return [("run_python", True, "")]


def build(ctx: ToolContext) -> list[BaseTool]:
    """``run_python`` when :func:`available` says it is on; nothing otherwise. With
    ``SIDEKICK_PYTHON_NETWORK=1`` it also needs ``ctx.proxy_socket`` (the web policy's proxy)."""
    [(_, on, _)] = available(ctx.settings)
    network = ctx.settings.python_network
    if not on or (network and ctx.proxy_socket is None):
        return []
    root = ctx.workspace
    timeout = min(ctx.settings.tool_timeout_seconds, MAX_TOOL_TIMEOUT)
    proxy_socket = ctx.proxy_socket if network else None

    async def run_python_tool(code: str) -> str:
        if not code.strip():
            raise ToolError("There is no code to run.")
        # The workspace is created on first use, and refuses to be our own working directory.
        cwd = (await asyncio.to_thread(Workspace, root)).root
        result = await run_python(
            code, cwd=cwd, timeout=timeout, proxy_socket=await proxy_socket() if proxy_socket else None
        )
        output = result.output or "(no output)"
        if result.timed_out:
            return f"timed out after {timeout:g}s (process killed)\n{output}"
        return f"exit code {result.exit_code}{_signal_note(result.exit_code)}\n{output}"

    return [
        StructuredTool.from_function(
            coroutine=run_python_tool,
            name="run_python",
            description=(
                "Run a Python 3 script in a fresh sandboxed process and get its exit code and printed "
                "output (stdout and stderr, first 10,000 bytes). The working directory is your "
                "workspace, so files it writes can be read with read_file; /tmp is private and "
                f"emptied after each call. The standard library only; {_network_note(network)} Limits: "
                f"{timeout:g} seconds, 512 MB of memory, 10 MB per written file. Nothing persists "
                "between calls except workspace files; there is no input(). Use print() to see results."
            ),
            metadata={"side_effect": True},
        )
    ]


def _network_note(network: bool) -> str:
    if network:
        return (
            "web access through an HTTP proxy that applies the web policy (urllib uses it; "
            "local and private addresses are refused)."
        )
    return "no network."


def _signal_note(exit_code: int | None) -> str:
    # bwrap reports a signal N as 128+N; naming it tells the model a limit (SIGXCPU, SIGKILL) was hit.
    if exit_code is None or exit_code <= 128:
        return ""
    try:
        return f" (ended by {signal.Signals(exit_code - 128).name})"
    except ValueError:
        return ""
