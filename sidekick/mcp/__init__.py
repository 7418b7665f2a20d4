"""MCP tool servers, under the same lifecycle guarantee as the browser.

- :mod:`~sidekick.mcp.config` reads the ``mcp.json`` file (``load_config``).
- :mod:`~sidekick.mcp.procs` starts nothing but ends and counts server process groups.
- :mod:`~sidekick.mcp.transport` is the stdio transport that hands us the process.
- :mod:`~sidekick.mcp.server` is one connection: state, owner task, restarts with backoff.
- :mod:`~sidekick.mcp.tools` turns listed tools into ``NAME__tool`` StructuredTools.
- :mod:`~sidekick.mcp.hub` says who owns which server: the process (``McpHub``) or a session
  (``SessionMcp``).
"""

from sidekick.mcp.config import McpConfig, ServerConfig, config_path, load_config, parse_config
from sidekick.mcp.hub import McpHub, ServerStatus, SessionMcp
from sidekick.mcp.procs import McpProcessReport, kill_mcp_processes, mcp_processes
from sidekick.mcp.server import McpServer, McpServerError, ServerState, ToolSpec

__all__ = [
    "McpConfig",
    "McpHub",
    "McpProcessReport",
    "McpServer",
    "McpServerError",
    "ServerConfig",
    "ServerState",
    "ServerStatus",
    "SessionMcp",
    "ToolSpec",
    "config_path",
    "kill_mcp_processes",
    "load_config",
    "mcp_processes",
    "parse_config",
]
