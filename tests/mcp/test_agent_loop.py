"""MCP tools through the real agent loop: the fake model calls a real server's tool, approvals pause
the run, and a session's Reset and end free the server's processes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidekick.browser.pool import BrowserPool
from sidekick.events import ApprovalNeeded, FinalAnswer, ToolResult
from sidekick.mcp import McpConfig, McpHub, ServerConfig, mcp_processes
from sidekick.models import Models
from sidekick.sessions import Session, SessionDeps
from sidekick.store import Store
from sidekick.tools.base import UNTRUSTED_CLOSE
from tests.mcp.servers import files_server, time_server
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.runs import agent_settings, collect, of, verdict


@contextlib.asynccontextmanager
async def mcp_session(tmp_path: Path, llm: FakeOpenAI, *servers: ServerConfig) -> AsyncIterator[Session]:
    """A session whose runner has these MCP servers, on its own pool (no browser is used)."""
    settings = agent_settings(tmp_path, llm, tool_timeout_seconds=20)
    async with contextlib.AsyncExitStack() as stack:
        store = await Store(tmp_path / "sidekick.sqlite").open()
        stack.push_async_callback(store.aclose)
        models = Models(settings)
        stack.push_async_callback(models.aclose)
        pool = BrowserPool(settings, warm_spare=False)
        stack.push_async_callback(pool.aclose)
        hub = McpHub(McpConfig(servers), settings)
        stack.push_async_callback(hub.aclose)
        session = Session("mcp", SessionDeps(settings=settings, pool=pool, store=store, models=models, mcp=hub))
        stack.push_async_callback(session.aclose)
        yield session


def server_processes() -> int:
    return mcp_processes(memory=False).processes


async def test_the_model_calls_an_mcp_tool_and_reset_and_end_free_its_server(tmp_path: Path, llm: FakeOpenAI) -> None:
    async with mcp_session(tmp_path, llm, time_server()) as session:
        llm.worker(Reply.tool_call("time__get_current_time", {"timezone": "UTC"}), Reply.text("It is noon in UTC."))
        llm.evaluator(verdict(True))
        events = await collect(await session.runner.start("What time is it in UTC?", "Gives the time", "t1"))
        [result] = of(events, ToolResult)
        assert result.ok and "UTC" in result.output and UNTRUSTED_CLOSE in result.output
        assert of(events, FinalAnswer)[0].accepted
        # The model saw the tool with the server's own schema.
        offered = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
        assert "timezone" in offered["time__get_current_time"]["parameters"]["properties"]
        assert server_processes() == 1  # the session's own server, started by its first call

        await session.release()  # Reset
        assert server_processes() == 0
        llm.worker(Reply.tool_call("time__get_current_time", {"timezone": "UTC"}), Reply.text("Still noon."))
        llm.evaluator(verdict(True))
        events = await collect(await session.runner.start("And now?", "Gives the time", "t1"))
        assert of(events, ToolResult)[0].ok  # the tool starts its server again after a Reset
        assert server_processes() == 1
    assert server_processes() == 0  # the session's end closed it


@pytest.mark.usefixtures("node_servers")
async def test_a_writing_mcp_tool_waits_for_approval(tmp_path: Path, llm: FakeOpenAI) -> None:
    async with mcp_session(tmp_path, llm, files_server()) as session:
        llm.worker(Reply.tool_call("files__write_file", {"path": "note.txt", "content": "hi"}), Reply.text("Done."))
        llm.evaluator(verdict(True))
        events = await collect(await session.runner.start("Write a note", "A note is written", "t1"), timeout=60)
        [pending] = of(events, ApprovalNeeded)
        assert pending.name == "files__write_file"
        assert not (session.workspace / "note.txt").exists()
        events = await collect(await session.runner.resume("t1", True), timeout=60)
        assert of(events, ToolResult)[0].ok
        assert (session.workspace / "note.txt").read_text() == "hi"
    assert server_processes() == 0
