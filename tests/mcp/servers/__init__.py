"""The MCP servers the tests and the churn benchmark run, as server configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sidekick.mcp import ServerConfig

ROOT = Path(__file__).resolve().parents[3]
SERVERS = Path(__file__).parent
TOY = SERVERS / "toy_server.py"
WRAPPER = SERVERS / "forking_wrapper.sh"
NODE_PREFIX = ROOT / ".make" / "node"


def time_server(name: str = "time", **kw: object) -> ServerConfig:
    args = ("-m", "mcp_server_time", "--local-timezone", "UTC")
    return ServerConfig(name=name, command=sys.executable, args=args, **kw)  # type: ignore[arg-type]


def toy_server(name: str = "toy", *extra: str, wrapped: bool = False, **kw: object) -> ServerConfig:
    command = [sys.executable, str(TOY), *extra]
    if wrapped:
        command = ["sh", str(WRAPPER), *command]
    return ServerConfig(name=name, command=command[0], args=tuple(command[1:]), **kw)  # type: ignore[arg-type]


def files_server(name: str = "files", **kw: object) -> ServerConfig:
    # Through npx, as users configure it: npx -> sh -> node, a wrapper with children.
    args = ("--prefix", str(NODE_PREFIX), "--offline", "mcp-server-filesystem", ".")
    return ServerConfig(name=name, command="npx", args=args, **kw)  # type: ignore[arg-type]



def ensure_node_servers() -> None:
    """Install the pinned npm servers if they are not there yet (idempotent, fast when done)."""
    subprocess.run([str(ROOT / "scripts" / "ensure_mcp_servers.sh")], check=True, timeout=300)
