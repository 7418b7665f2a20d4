"""The facade as the dashboard uses it: its own loop thread, sync calls with timeouts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.core import Sidekick, valid_thread_id
from sidekick.errors import NavigationError, RuntimeStoppedError, SidekickError
from sidekick.resources import browser_processes
from tests.conftest import wait_until
from tests.fakes.site import LocalSite


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
    assert wait_until(lambda: core.resources().sessions == 0, timeout=10)


def test_close_is_idempotent_frees_every_process_and_refuses_later_calls(tmp_path: Path, site: LocalSite) -> None:
    sk = Sidekick(Settings(data_dir=tmp_path, allow_private_network=True)).start()
    sk.open_url("a", site.url("/"))
    sk.open_url("b", site.url("/about"))
    sk.close()
    sk.close()
    assert wait_until(lambda: browser_processes(memory=False).processes == 0, timeout=10)
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
    assert not core.conversation_exists("nope") and core.history("tab-1", "../x") == []
