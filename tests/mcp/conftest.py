"""Real MCP servers for the MCP tests: mcp-server-time (PyPI), server-filesystem (npm, installed by
scripts/ensure_mcp_servers.sh), and our toy server for crashes, hangs and forks.

Every hub a test makes is closed at teardown, and the test session ends by checking that no MCP
server process of ours is left (by process group, so a reparented wrapper child counts too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.mcp import McpConfig, McpHub, ServerConfig, mcp_processes
from tests.mcp.servers import NODE_PREFIX, ensure_node_servers
from tests.support.waiting import alive_pids, until_empty


@pytest.fixture(scope="session")
def node_servers() -> Path:
    ensure_node_servers()
    return NODE_PREFIX


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", tool_timeout_seconds=20.0)


HubFactory = Callable[..., McpHub]


@pytest.fixture
async def make_hub(settings: Settings) -> AsyncIterator[HubFactory]:
    made: list[McpHub] = []

    def make(*servers: ServerConfig) -> McpHub:
        hub = McpHub(McpConfig(tuple(servers)), settings)
        made.append(hub)
        return hub

    try:
        yield make
    finally:
        for hub in made:
            await hub.aclose()


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The PIDs of ``pids`` still alive (zombies count as gone) after up to ``timeout`` seconds."""
    return until_empty(lambda: alive_pids(pids), timeout, interval=0.05)


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_mcp_servers() -> Iterator[None]:
    yield
    report = mcp_processes(memory=False)
    assert report.processes == 0, f"MCP server processes leaked by the tests: {report}"
