"""The facade's conversation and run controls (regressions): deleting a conversation mid-run, and
cancelling a run of a session that does not exist."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.events import Cancelled, Finished
from sidekick.facade import Sidekick
from tests.support.child import free_port
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import verdict
from tests.support.waiting import poll


@pytest.fixture
def core(tmp_path: Path, llm: FakeOpenAI) -> Iterator[Sidekick]:
    settings = Settings(
        data_dir=tmp_path, openai_base_url=llm.base_url, model_retries=0, allow_private_network=True
    )
    sk = Sidekick(settings).start(warm=False)
    try:
        yield sk
    finally:
        sk.close()


def checkpoint_rows(path: Path, thread_id: str) -> int:
    with sqlite3.connect(path) as conn:
        tables = ("checkpoints", "writes")
        return sum(
            int(conn.execute(f"SELECT COUNT(*) FROM {t} WHERE thread_id = ?", (thread_id,)).fetchone()[0])
            for t in tables
        )


# Regression (bug 3): delete_conversation deleted the thread's checkpoints and row while a run on it
# was still going. The dashboard stopped a run only when it was its own tab's and only after the
# delete; a run anywhere else (another tab, the CLI) went on and wrote the rest of its turn into the
# deleted thread, which came back with a partial history. Now the facade cancels every run on that
# thread and waits for it to wind down before it deletes anything. The page here answers after a
# second, so a run left going would finish its tool call and its turn, and write them.
def test_deleting_a_conversation_mid_run_stops_the_run_and_leaves_nothing_behind(
    core: Sidekick, llm: FakeOpenAI, site: LocalSite, tmp_path: Path
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/slow?s=1")}), Reply.text("The page is slow."))
    llm.evaluator(verdict(True))
    handle = core.start_run("tab-1", "Open the slow page", "ok", "doomed")
    assert poll(lambda: "/slow" in site.hits, timeout=20), "the run reached the slow page"
    assert core.conversation_exists("doomed") and core.history("doomed")

    core.delete_conversation("doomed")

    events = list(handle.iter_events(deadline=time.monotonic() + 15))
    time.sleep(1.5)  # past the page's answer: anything still on its way would land now
    assert not core.conversation_exists("doomed")
    assert core.history("doomed") == []
    assert checkpoint_rows(tmp_path / "sidekick.sqlite", "doomed") == 0
    assert all(c.thread_id != "doomed" for c in core.conversations())
    assert isinstance(events[-1], Finished) and events[-1].outcome == "cancelled"
    assert any(isinstance(e, Cancelled) for e in events)
    assert len(llm.requests) == 1, "the turn went no further after the delete"


# Regression (bug 8): cancel_run reached the session's agent through the property that builds it,
# so cancelling in a session that had never run built its whole agent (runner, tools) just to find
# nothing to cancel. Now it finds the session without creating one, and the session cancels only a
# runner it already has. (An unknown session already returned False before the fix; it is checked
# here so the fix did not trade one for the other.)
def test_cancel_run_builds_nothing_and_creates_no_session(core: Sidekick) -> None:
    registry = core.registry
    assert registry is not None and core.resources().sessions == 0
    assert core.cancel_run("never-seen") is False
    assert core.resources().sessions == 0 and "never-seen" not in registry

    core.attach("tab-1")
    assert core.cancel_run("tab-1") is False  # a known session with nothing running
    session = registry.find("tab-1")
    assert session is not None and session._runner is None, "no runner was built to cancel nothing"
    assert core.resources().sessions == 1


def test_the_guard_listens_where_sidekick_guard_listen_says(tmp_path: Path) -> None:
    """Remote browsers are handed proxy addresses on SIDEKICK_GUARD_LISTEN's host (not 127.0.0.1)."""
    port = free_port()
    settings = Settings.load({"SIDEKICK_DATA_DIR": str(tmp_path), "SIDEKICK_GUARD_LISTEN": f"127.0.0.3:{port}"})
    core = Sidekick(settings).start(warm=False)
    try:
        assert core.pool is not None and core.pool.guard is not None
        proxy = core.runtime.run(core.pool.guard.open_context_proxy(), timeout=10)
        try:
            assert proxy.playwright["server"] == f"http://127.0.0.3:{port}"
        finally:
            proxy.close()
    finally:
        core.close()
