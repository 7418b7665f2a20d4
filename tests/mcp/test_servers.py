"""MCP servers under the session lifecycle, against real servers (no mocks)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest
from langchain_core.tools import BaseTool

from sidekick.errors import ToolError
from sidekick.mcp import McpServerError, mcp_processes
from sidekick.tools.base import UNTRUSTED_CLOSE
from tests.mcp.conftest import HubFactory, wait_gone
from tests.mcp.servers import files_server, time_server, toy_server


def by_name(tools: list[BaseTool]) -> dict[str, BaseTool]:
    return {t.name: t for t in tools}


def body(output: str) -> str:
    """The text inside the untrusted block."""
    assert output.rstrip().endswith(UNTRUSTED_CLOSE)
    return output.split("\n", 1)[1].rsplit("\n", 1)[0]


def our_descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


async def test_time_server_through_the_tools(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(time_server())
    mcp = hub.session("s1", tmp_path / "ws")
    tools = by_name(await mcp.tools())
    assert {"time__get_current_time", "time__convert_time"} <= tools.keys()
    tool = tools["time__get_current_time"]
    assert tool.metadata == {"side_effect": False, "mcp_server": "time", "mcp_tool": "get_current_time",
                             "read_only": True, "timeout": None}
    assert "timezone" in json.dumps(tool.args)
    # Listing the tools did not start this session's server; the first call does.
    assert mcp_processes().processes == 0
    assert hub.status("s1")[0].state == "new"
    out = await tool.ainvoke({"timezone": "Asia/Tokyo"})
    assert out.startswith("<<<UNTRUSTED CONTENT from MCP server time, tool get_current_time")
    assert json.loads(body(out))["timezone"] == "Asia/Tokyo"
    status = hub.status("s1")[0]
    assert (status.state, status.running, status.scope) == ("ready", 1, "session")
    assert "time__convert_time" in status.tools
    report = mcp_processes()
    assert report.processes == 1 and report.total_bytes > 0
    await mcp.aclose()
    assert mcp_processes().processes == 0
    await mcp.aclose()  # idempotent
    with pytest.raises(ToolError, match="closed"):
        await tool.ainvoke({"timezone": "UTC"})


async def test_filesystem_server_rooted_in_the_workspace(make_hub: HubFactory, tmp_path: Path,
                                                         node_servers: Path) -> None:
    workspace = tmp_path / "ws"
    hub = make_hub(files_server())
    mcp = hub.session("s1", workspace)
    tools = by_name(await mcp.tools())
    assert tools["files__write_file"].metadata["side_effect"] is True  # no readOnlyHint: needs Approve
    assert tools["files__list_directory"].metadata["side_effect"] is False
    await tools["files__write_file"].ainvoke({"path": "hello.txt", "content": "hi from MCP"})
    assert (workspace / "hello.txt").read_text() == "hi from MCP"
    assert "hello.txt" in await tools["files__list_directory"].ainvoke({"path": "."})
    assert body(await tools["files__read_text_file"].ainvoke({"path": "hello.txt"})) == "hi from MCP"
    with pytest.raises(ToolError, match="files__read_text_file failed") as info:
        await tools["files__read_text_file"].ainvoke({"path": "/etc/hostname"})
    assert "UNTRUSTED" in str(info.value)  # the server's words reach the model marked as such
    pids = mcp.server("files").pids()
    assert len(pids) >= 2  # npx and the node server (and a shell between them)
    await mcp.aclose()
    assert wait_gone(pids, timeout=0) == []


async def test_crash_is_a_plain_error_and_the_next_call_restarts(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(toy_server())
    mcp = hub.session("s1", tmp_path / "ws")
    tools = by_name(await mcp.tools())
    first = body(await tools["toy__echo"].ainvoke({"text": "a"}))
    with pytest.raises(ToolError) as info:
        await tools["toy__crash"].ainvoke({})
    message = str(info.value)
    assert "stopped during crash" in message and "exited with code 3" in message and "Traceback" not in message
    status = hub.status("s1")[0]
    assert status.state == "failed" and "exited with code 3" in (status.last_error or "")
    started = time.monotonic()
    second = body(await tools["toy__echo"].ainvoke({"text": "b"}))
    assert time.monotonic() - started >= 0.5  # the backoff
    assert first.split("pid ")[1] != second.split("pid ")[1]
    assert mcp.server("toy").starts == 2 and hub.status("s1")[0].state == "ready"


async def test_server_that_cannot_start(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(toy_server("broken", "--crash-on-start"), time_server())
    mcp = hub.session("s1", tmp_path / "ws")
    names = {t.name for t in await mcp.tools()}
    assert "time__get_current_time" in names and not any(n.startswith("broken__") for n in names)
    broken = hub.status()[0]
    assert broken.state == "failed" and "could not start" in (broken.last_error or "")
    with pytest.raises(McpServerError, match="could not start"):
        await mcp.server("broken").call("echo", {"text": "x"})
    assert "refusing to start" in (mcp.server("broken").last_error or "")  # stderr, for the sidebar
    with pytest.raises(McpServerError, match="failed recently"):  # backoff, longer than this budget
        mcp.server("broken").timeout = 0.2
        await mcp.server("broken").call("echo", {"text": "x"})


async def test_hanging_tool_is_bounded_by_its_timeout(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(toy_server(timeout=2.0))
    mcp = hub.session("s1", tmp_path / "ws")
    tools = by_name(await mcp.tools())
    await tools["toy__echo"].ainvoke({"text": "warm"})
    pids = mcp.server("toy").pids()
    started = time.monotonic()
    with pytest.raises(ToolError, match="hang did not finish within 2 s"):
        await tools["toy__hang"].ainvoke({})
    assert time.monotonic() - started < 5
    assert wait_gone(pids, timeout=0) == []  # the hung server was ended
    assert "warm" not in body(await tools["toy__echo"].ainvoke({"text": "again"}))


async def test_forking_wrapper_leaves_nothing(make_hub: HubFactory, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    hub = make_hub(toy_server(wrapped=True))
    mcp = hub.session("s1", workspace)
    tools = by_name(await mcp.tools())
    await tools["toy__ignore_term"].ainvoke({})
    in_group = int(body(await tools["toy__spawn"].ainvoke({})))
    escaped = int(body(await tools["toy__spawn"].ainvoke({"escape": True})))
    wrapper, helper = map(int, (workspace / "wrapper.pids").read_text().split())
    pids = [wrapper, helper, in_group, escaped, *mcp.server("toy").pids()]
    assert set(pids) <= our_descendants()
    assert set(pids) <= set(mcp_processes().pids)
    started = time.monotonic()
    await mcp.aclose()
    took = time.monotonic() - started
    assert wait_gone(pids, timeout=0) == [], "every process of the wrapper's tree is gone when aclose returns"
    assert mcp_processes().processes == 0 and not (set(pids) & our_descendants())
    assert took < 5  # stdin close, SIGTERM (ignored here), SIGKILL: each after a grace of 1 s


async def test_environment_is_scrubbed(make_hub: HubFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-servers")
    monkeypatch.setenv("SIDEKICK_MODEL", "secret-model")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    hub = make_hub(toy_server(env={"TOY_OWN": "mine"}))
    workspace = tmp_path / "ws"
    tools = by_name(await hub.session("s1", workspace).tools())
    getenv = tools["toy__getenv"]
    for name in ("OPENAI_API_KEY", "SIDEKICK_MODEL", "HTTPS_PROXY"):
        assert body(await getenv.ainvoke({"name": name})) == "(absent)"
    assert body(await getenv.ainvoke({"name": "TOY_OWN"})) == "mine"
    assert body(await getenv.ainvoke({"name": "PATH"})) == os.environ["PATH"]
    assert Path(body(await tools["toy__cwd"].ainvoke({}))) == workspace.resolve()


async def test_approve_policies(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(toy_server("ask", approve="always"), toy_server("trust", approve="never"), toy_server("ann"))
    tools = by_name(await hub.session("s1", tmp_path).tools())
    assert tools["ask__echo"].metadata["side_effect"] is True
    assert tools["trust__write_note"].metadata["side_effect"] is False
    assert tools["ann__write_note"].metadata["side_effect"] is True
    assert tools["ann__echo"].metadata["side_effect"] is False


async def test_session_and_process_scope(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(toy_server("own"), toy_server("shared", scope="process"))
    a, b = hub.session("a", tmp_path / "a"), hub.session("b", tmp_path / "b")
    assert hub.session("a", tmp_path / "a") is a
    ta, tb = by_name(await a.tools()), by_name(await b.tools())

    async def pid(tools: dict[str, BaseTool], name: str) -> str:
        return body(await tools[f"{name}__echo"].ainvoke({"text": "x"})).split("pid ")[1]

    assert await pid(ta, "own") != await pid(tb, "own")
    assert await pid(ta, "shared") == await pid(tb, "shared")
    assert [s.running for s in hub.status()] == [2, 1]
    own_a = a.server("own").pids()
    await a.aclose()
    assert wait_gone(own_a, timeout=0) == []
    assert await pid(tb, "own") and await pid(tb, "shared")  # b and the shared server go on
    assert hub.session("a", tmp_path / "a") is not a  # after Reset, a fresh one
    await hub.aclose()
    await hub.aclose()
    assert mcp_processes().processes == 0
    with pytest.raises(ToolError):
        await pid(tb, "own")


async def test_suspend_ends_servers_and_the_next_call_starts_them(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = make_hub(time_server())
    mcp = hub.session("s1", tmp_path)
    tool = by_name(await mcp.tools())["time__get_current_time"]
    await tool.ainvoke({"timezone": "UTC"})
    assert mcp_processes().processes == 1
    await mcp.suspend()
    assert mcp_processes().processes == 0 and hub.status("s1")[0].state == "new"
    await tool.ainvoke({"timezone": "UTC"})
    assert mcp_processes().processes == 1


async def test_proxy_placeholder(make_hub: HubFactory, settings: object, tmp_path: Path) -> None:
    from sidekick.mcp import McpConfig, McpHub

    cfg = toy_server(env={"ALL_PROXY": "${SIDEKICK_PROXY}"})
    async with McpHub(McpConfig((cfg,)), settings, proxy_url="socks5h://127.0.0.1:1080") as hub:  # type: ignore[arg-type]
        tools = by_name(await hub.session("s1", tmp_path).tools())
        assert body(await tools["toy__getenv"].ainvoke({"name": "ALL_PROXY"})) == "socks5h://127.0.0.1:1080"
    hub = make_hub(cfg)
    assert await hub.session("s1", tmp_path).tools() == []
    assert "proxy is not running" in (hub.status()[0].last_error or "")
