"""The stdio transport: the MCP SDK's ``stdio_client``, but one that hands us the process.

The SDK's client also starts the server in a new session, but it keeps the process to itself and,
when the server exits on stdin close, never signals the group, so a wrapper's child (``npx`` ->
``node``, ``sh`` -> ``python``) that outlived the wrapper would be left running. This one is the same
reader/writer pair around JSON-RPC lines, ends with :func:`~sidekick.mcp.procs.end_group`, keeps the
last lines of stderr for the sidebar instead of printing them into the dashboard's terminal, and
reports the exit so the owner task notices a crash between calls.

Like the SDK's, it must be entered and exited in one task (anyio's task group rule).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import mcp.types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from mcp.shared.message import SessionMessage

from sidekick.mcp.procs import end_group, register_group

_STDERR_LINES = 20


@dataclass
class ProcessInfo:
    """What the owner learns about its process: filled in as it runs."""

    pid: int | None = None
    returncode: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_LINES))

    def stderr_tail(self, lines: int = 3) -> str:
        return " | ".join(list(self.stderr)[-lines:])


Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]


@asynccontextmanager
async def stdio_transport(
    command: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    label: str,
    info: ProcessInfo,
) -> AsyncIterator[Streams]:
    process = await anyio.open_process(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    info.pid = process.pid
    register_group(process.pid, label)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_stdout() -> None:
        assert process.stdout is not None
        async with read_writer:
            buffer = ""
            async for chunk in TextReceiveStream(process.stdout, encoding="utf-8", errors="replace"):
                lines = (buffer + chunk).split("\n")
                buffer = lines.pop()
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        message: SessionMessage | Exception = SessionMessage(
                            types.JSONRPCMessage.model_validate_json(line)
                        )
                    except Exception as exc:  # a stray print() on stdout: the session reports it
                        message = exc
                    try:
                        await read_writer.send(message)
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return

    async def write_stdin() -> None:
        assert process.stdin is not None
        async with write_reader:
            async for message in write_reader:
                line = message.message.model_dump_json(by_alias=True, exclude_none=True) + "\n"
                try:
                    await process.stdin.send(line.encode("utf-8"))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    return  # the server is gone; the owner learns it from the exit

    async def read_stderr() -> None:
        assert process.stderr is not None
        with anyio.CancelScope():
            async for chunk in TextReceiveStream(process.stderr, encoding="utf-8", errors="replace"):
                info.stderr.extend(line.strip()[:300] for line in chunk.splitlines() if line.strip())

    async def wait_exit() -> None:
        info.returncode = await process.wait()
        info.exited.set()

    try:
        async with anyio.create_task_group() as tg:
            for job in (read_stdout, write_stdin, read_stderr, wait_exit):
                tg.start_soon(job)
            try:
                yield read_stream, write_stream
            finally:
                await end_group(process)
                tg.cancel_scope.cancel()
    finally:
        for stream in (read_stream, write_stream, read_writer, write_reader):
            await stream.aclose()
        with anyio.move_on_after(1, shield=True):
            await process.aclose()
