"""MCP tools as the model sees them: ``NAME__tool`` StructuredTools with the server's own schemas.

The schemas come from the server's listing (converted by langchain-mcp-adapters); the call goes to
a :class:`~sidekick.mcp.server.McpServer` that the caller chooses per call, so the session, not the
tool, decides which process answers. Results are text wrapped as untrusted content: the graph reads
``str(output)``, so images and binary resources are described, not inlined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from sidekick.errors import ToolError
from sidekick.mcp.config import ServerConfig
from sidekick.mcp.server import ToolSpec
from sidekick.tools.base import untrusted

Caller = Callable[[str, dict[str, Any]], Awaitable[CallToolResult]]
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DESCRIPTION_LIMIT = 1024


def tool_name(server: str, tool: str) -> str:
    """``NAME__tool`` within OpenAI's 64-character tool-name alphabet."""
    return f"{server}__{_UNSAFE.sub('_', tool)}"[:64]


def needs_approval(config: ServerConfig, spec: ToolSpec) -> bool:
    """``approve``: always, never, or (the default) unless the server marks the tool read-only."""
    if config.approve == "always":
        return True
    if config.approve == "never":
        return False
    return not spec.read_only


def render(server: str, tool: str, result: CallToolResult) -> str:
    """The result as text for the model; an ``isError`` result is raised as a ToolError."""
    parts = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent | AudioContent):
            parts.append(f"[{type(block).__name__.removesuffix('Content').lower()} {block.mimeType}, not shown]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block, EmbeddedResource):
            res = block.resource
            if isinstance(res, TextResourceContents):
                parts.append(res.text)
            elif isinstance(res, BlobResourceContents):
                parts.append(f"[binary resource {res.uri} {res.mimeType or ''}, not shown]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    text = "\n".join(parts) or "(no output)"
    source = f"MCP server {server}, tool {tool}"
    if result.isError:
        raise ToolError(f"{tool_name(server, tool)} failed: {untrusted(text, source, 4000)}")
    return untrusted(text, source)


def build_tools(config: ServerConfig, specs: tuple[ToolSpec, ...], call: Caller) -> list[BaseTool]:
    tools: list[BaseTool] = []
    seen: set[str] = set()
    for spec in specs:
        name = tool_name(config.name, spec.name)
        if name in seen:  # two MCP names that differ only in characters OpenAI refuses
            continue
        seen.add(name)
        tools.append(_tool(config, spec, name, call))
    return tools


def _tool(config: ServerConfig, spec: ToolSpec, name: str, call: Caller) -> BaseTool:
    async def run(**arguments: Any) -> str:
        return render(config.name, spec.name, await call(spec.name, arguments))

    # The description is the server's text, shown to the model as a tool description: say whose.
    description = f"[MCP server {config.name}] {spec.description}".strip()[:_DESCRIPTION_LIMIT]
    return StructuredTool(
        name=name,
        description=description,
        args_schema=spec.schema,
        coroutine=run,
        metadata={
            "side_effect": needs_approval(config, spec),
            "mcp_server": config.name,
            "mcp_tool": spec.name,
            "read_only": spec.read_only,
            # The graph's backstop for this call: the server's own budget, start included.
            "timeout": config.timeout,
        },
    )
