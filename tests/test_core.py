"""The facade as the dashboard uses it: its own loop thread, sync calls with timeouts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.errors import NavigationError, RuntimeStoppedError, SidekickError
from sidekick.events import Blocked, ToolResult
from sidekick.facade import Sidekick, valid_thread_id
from sidekick.procs import browser_processes
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import verdict
from tests.support.waiting import poll


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Sidekick]:
    sk = Sidekick(Settings(data_dir=tmp_path, allow_private_network=True)).start()
    try:
        yield sk
    finally:
        sk.close()


def test_open_reset_and_account(core: Sidekick, site: LocalSite) -> None:
    shot = core.open_url("tab-1", site.url("/about"))
    assert shot.title == "About" and shot.png.startswith(b"\x89PNG")
    res = core.resources()
    assert res.sessions == 1 and res.sessions_with_browser == 1 and res.processes.processes >= 3
    freed = core.reset("tab-1")
    assert freed.contexts == 1 and freed.processes >= 1
    assert core.resources().sessions_with_browser == 0


def test_bad_urls_are_clear_errors_and_the_session_keeps_working(core: Sidekick, site: LocalSite) -> None:
    for bad in ("not a url", "file:///etc/passwd", ""):
        with pytest.raises(NavigationError):
            core.open_url("tab-1", bad)
    assert core.open_url("tab-1", site.url("/")).title == "Sidekick test site"


def test_end_session_frees_without_waiting(core: Sidekick, site: LocalSite) -> None:
    core.open_url("tab-1", site.url("/"))
    t0 = time.monotonic()
    core.end_session("tab-1")
    assert time.monotonic() - t0 < 0.1  # submitted, not awaited: safe on Streamlit's server thread
    assert poll(lambda: core.resources().sessions == 0, timeout=10)


def test_close_is_idempotent_frees_every_process_and_refuses_later_calls(tmp_path: Path, site: LocalSite) -> None:
    sk = Sidekick(Settings(data_dir=tmp_path, allow_private_network=True)).start()
    sk.open_url("a", site.url("/"))
    sk.open_url("b", site.url("/about"))
    sk.close()
    sk.close()
    assert poll(lambda: browser_processes(memory=False).processes == 0, timeout=10)
    with pytest.raises(RuntimeStoppedError):
        sk.open_url("a", site.url("/"))
    sk.end_session("a")  # never raises after close: on_release may fire late


def test_without_a_model_the_browser_still_works_and_runs_say_why(core: Sidekick, site: LocalSite) -> None:
    assert not core.model_ready
    assert core.open_url("tab-1", site.url("/")).title
    handle = core.start_run("tab-1", "hello", "ok", "thread-1")
    events = list(handle.iter_events())
    assert events[-1].outcome == "error"  # type: ignore[attr-defined]
    assert any("No model is configured" in getattr(e, "message", "") for e in events)


def test_thread_ids_are_checked(core: Sidekick) -> None:
    assert valid_thread_id("abc_DEF-123") and not valid_thread_id("../x") and not valid_thread_id("")
    with pytest.raises(SidekickError, match="conversation id"):
        core.start_run("tab-1", "hi", "ok", "../../etc/passwd")
    assert not core.conversation_exists("nope") and core.history("../x") == []


def test_the_web_policy_blocks_private_addresses_and_the_run_shows_it(
    tmp_path: Path, site: LocalSite, llm: FakeOpenAI
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("That page is private."))
    llm.evaluator(verdict(True))
    sk = Sidekick(Settings(data_dir=tmp_path, openai_base_url=llm.base_url, model_retries=0)).start()
    try:
        events = list(sk.start_run("tab-1", "Open the about page", "ok", "t-1").iter_events())
        with pytest.raises(NavigationError, match="web policy"):
            sk.open_url("tab-1", site.url("/"))
    finally:
        sk.close()
    blocked = [e for e in events if isinstance(e, Blocked)]
    assert blocked and "127.0.0.1" in blocked[0].url and "loopback" in blocked[0].reason
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not result.ok and "web policy" in result.output
    assert "/about" not in site.hits and "/" not in site.hits  # nothing reached the private server
