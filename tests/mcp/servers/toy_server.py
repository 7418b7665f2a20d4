"""A small MCP server of ours, for what no published server does on purpose: crash, hang, fork.

Run as ``python toy_server.py [--crash-on-start]``; it serves stdio with the MCP SDK's FastMCP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

if "--crash-on-start" in sys.argv:
    print("toy server: refusing to start", file=sys.stderr)
    sys.exit(4)

app = FastMCP("toy")
READ_ONLY = ToolAnnotations(readOnlyHint=True)


@app.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return the text, with this server's PID."""
    return f"{text} (pid {os.getpid()})"


@app.tool(annotations=READ_ONLY)
def getenv(name: str) -> str:
    """The value of an environment variable in this server, or (absent)."""
    return os.environ.get(name, "(absent)")


@app.tool(annotations=READ_ONLY)
def cwd() -> str:
    """This server's working folder."""
    return os.getcwd()


@app.tool()
def write_note(text: str) -> str:
    """Write note.txt in the working folder (no annotations: a side effect)."""
    Path("note.txt").write_text(text)
    return "written"


@app.tool(annotations=READ_ONLY)
def crash() -> str:
    """Exit at once, in the middle of the call."""
    os._exit(3)


@app.tool(annotations=READ_ONLY)
async def hang() -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return "unreachable"


@app.tool(annotations=READ_ONLY)
def spawn(escape: bool = False) -> int:
    """Start a child that ignores SIGTERM and stdin; with escape, in a session of its own."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"],
        stdin=subprocess.DEVNULL,
        start_new_session=escape,
    )
    return child.pid


@app.tool(annotations=READ_ONLY)
def ignore_term() -> str:
    """From now on this server ignores SIGTERM (and stdin close is all it gets first)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return "ignoring SIGTERM"


if __name__ == "__main__":
    app.run("stdio")
