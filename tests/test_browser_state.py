"""Browser state that survives: a conversation's browser comes back signed in, on the same page,
after the idle timer closed its context, after Chromium was killed, and in a new tab (a reload) on the
same conversation; Reset and New chat start clean; deleting a conversation (or the KEEP_DAYS sweep)
deletes its browser state and its workspace files.

Real Chromium, the real SQLite store, the local test site: signing in is its ``/set-cookie`` page
setting a cookie (plus local storage set by the page's own script); ``/cookies`` is the account page,
which shows the cookie the browser sent, so "signed in" is what the site itself saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidekick.browser.context import SessionBrowser
from sidekick.browser.pool import BrowserPool
from sidekick.browser.state import BrowserState
from sidekick.config import Settings
from sidekick.events import FinalAnswer
from sidekick.facade import Sidekick
from sidekick.sessions import Session, SessionRegistry
from sidekick.store import BaseStore
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.run_server import remote_settings, run_server
from tests.support.runs import MakeRegistry, agent_settings, open_rig, verdict
from tests.support.waiting import wait_until

USER = getpass.getuser()  # the local user: nobody signs in here


async def sign_in(session: Session, site: LocalSite, who: str = "alice") -> SessionBrowser:
    """Sign in on the site (its cookie), keep a note in local storage, and open the account page."""
    browser = await session.browser()
    await browser.goto(site.url(f"/set-cookie?value={who}"))
    await browser.call(lambda p: p.evaluate("localStorage.setItem('draft', 'half-written')"), timeout=5, what="note")
    await browser.goto(site.url("/cookies"))
    return browser


async def account(browser: SessionBrowser) -> str:
    """What the account page says the browser sent (after a reload, so it is the site's answer now)."""
    await browser.call(lambda p: p.reload(), timeout=10, what="reload")
    return str(await browser.call(lambda p: p.inner_text("#c"), timeout=5, what="read"))


async def saved(store: BaseStore, thread: str, url: str) -> BrowserState:
    """The state saved for ``thread`` once it names ``url`` (the session saves a moment after use)."""
    found: BrowserState = await wait_until(
        lambda: _saved_at(store, thread, url), timeout=10, what=f"a saved state at {url}"
    )
    return found


async def _saved_at(store: BaseStore, thread: str, url: str) -> BrowserState | None:
    state = await store.browser_state(USER, thread)
    return state if state is not None and state.url == url else None


async def note(browser: SessionBrowser) -> object:
    return await browser.call(lambda p: p.evaluate("localStorage.getItem('draft')"), timeout=5, what="note")


async def test_idle_closes_the_context_and_the_next_use_comes_back_signed_in_on_the_same_page(
    registries: MakeRegistry, store: BaseStore, pool: BrowserPool, site: LocalSite
) -> None:
    registry = registries(idle_seconds=60)
    session = registry.get("tab-1")
    await session.open_conversation("t1")
    first = await sign_in(session, site)
    assert await account(first) == "sk=alice"

    await registry.sweep(now=time.monotonic() + 61)  # the idle timer, without waiting an hour

    assert first.closed and not session.has_browser and pool.session_contexts == 0
    kept = await store.browser_state(USER, "t1")
    assert kept is not None and kept.url == site.url("/cookies")
    assert [c["name"] for c in kept.storage["cookies"]] == ["sk"]
    again = await session.browser()
    assert again is not first and again.page.url == site.url("/cookies")
    assert await account(again) == "sk=alice" and await note(again) == "half-written"


async def test_after_chromium_is_killed_the_next_action_is_signed_in_on_the_same_page(
    registries: MakeRegistry, store: BaseStore, pool: BrowserPool, site: LocalSite
) -> None:
    session = registries().get("tab-1")
    await session.open_conversation("t1")
    await sign_in(session, site)
    await saved(store, "t1", site.url("/cookies"))  # saved while alive: a dead browser cannot be read
    pid = pool.browser_pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: not pool.browser_connected(), what="Chromium gone")

    restored = await session.browser()
    assert pool.crashes == 1 and restored.page.url == site.url("/cookies")
    assert await account(restored) == "sk=alice" and await note(restored) == "half-written"


async def test_a_new_tab_on_the_same_conversation_finds_it_signed_in(
    registries: MakeRegistry, site: LocalSite
) -> None:
    """A reload is a new Streamlit session: the state follows the conversation, not the tab."""
    registry = registries()
    before = registry.get("tab-before-reload")
    await before.open_conversation("t1")
    await sign_in(before, site)
    await registry.end("tab-before-reload")  # the old tab's session ends (its state saved first)

    after = registry.get("tab-after-reload")
    await after.open_conversation("t1")
    browser = await after.browser()
    assert browser.page.url == site.url("/cookies") and await account(browser) == "sk=alice"


async def test_reset_starts_clean_and_forgets_the_state(
    registries: MakeRegistry, store: BaseStore, site: LocalSite
) -> None:
    registry = registries()
    session = registry.get("tab-1")
    await session.open_conversation("t1")
    await sign_in(session, site)
    await saved(store, "t1", site.url("/cookies"))

    freed = await registry.reset("tab-1")

    assert freed.contexts == 1 and await store.browser_state(USER, "t1") is None
    clean = await session.browser()
    assert clean.page.url == "about:blank" and await clean.context.cookies() == []
    assert await account_of(clean, site) == "(none)"


async def account_of(browser: SessionBrowser, site: LocalSite) -> str:
    await browser.goto(site.url("/cookies"))
    return await account(browser)


async def test_new_chat_starts_clean_and_the_old_conversation_keeps_its_own(
    registries: MakeRegistry, store: BaseStore, site: LocalSite
) -> None:
    session = registries().get("tab-1")
    await session.open_conversation("t1")
    old = await sign_in(session, site)

    await session.open_conversation("t2")  # New chat

    assert old.closed
    fresh = await session.browser()
    assert fresh.page.url == "about:blank" and await account_of(fresh, site) == "(none)"
    await session.open_conversation("t1")  # back to the first conversation, from the sidebar
    back = await session.browser()
    assert back.page.url == site.url("/cookies") and await account(back) == "sk=alice"


async def test_a_saved_page_that_no_longer_loads_leaves_the_session_usable(
    registries: MakeRegistry, store: BaseStore, site: LocalSite
) -> None:
    session = registries().get("tab-1")
    await session.open_conversation("t1")
    gone = "http://127.0.0.1:9/nothing-listens-here"
    await store.save_browser_state(USER, "t1", BrowserState(storage={"cookies": [], "origins": []}, url=gone))

    browser = await session.browser()

    assert browser.page.url != gone
    assert await account_of(browser, site) == "(none)"


async def test_each_conversation_has_its_own_workspace_in_its_users_folder(
    registries: MakeRegistry, settings: Settings
) -> None:
    session = registries().get("tab-1")
    assert session.workspace.name == "tab-1"  # not told its conversation yet: its own folder
    await session.open_conversation("t1")
    assert session.workspace == (settings.data_dir / "workspaces" / USER / "t1").resolve()


# -- through the facade: New chat from the dashboard, deleting a conversation, KEEP_DAYS -----------
@pytest.fixture
def core_settings(tmp_path: Path, llm: FakeOpenAI) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        openai_base_url=llm.base_url,
        model_retries=0,
        allow_private_network=True,
        auto_approve=True,
    )


@pytest.fixture
def core(core_settings: Settings) -> Iterator[Sidekick]:
    sk = Sidekick(core_settings).start(warm=False)
    try:
        yield sk
    finally:
        sk.close()


def registry_of(core: Sidekick) -> SessionRegistry:
    assert core.registry is not None
    return core.registry


def cookies_in(core: Sidekick, session_id: str) -> list[str]:
    async def read() -> list[str]:
        browser = await registry_of(core).get(session_id).browser()
        return [c["name"] for c in await browser.context.cookies()]

    return core.runtime.run(read(), 30)


def test_new_chat_from_the_dashboard_reaches_the_core_and_gives_a_clean_browser(
    core: Sidekick, site: LocalSite
) -> None:
    core.attach("tab-1", thread_id="t1")  # the tab renders on conversation t1
    core.open_url("tab-1", site.url("/set-cookie?value=alice"))
    assert cookies_in(core, "tab-1") == ["sk"]

    core.attach("tab-1", thread_id="t2")  # New chat: what bindings.switch_conversation sends

    assert cookies_in(core, "tab-1") == []
    core.attach("tab-1", thread_id="t1")
    assert cookies_in(core, "tab-1") == ["sk"]


def test_deleting_a_conversation_deletes_its_workspace_files_and_browser_state(
    core: Sidekick, llm: FakeOpenAI, site: LocalSite
) -> None:
    for thread in ("doomed", "kept"):
        llm.worker(Reply.tool_call("write_file", {"path": "notes.txt", "content": thread}), Reply.text("Saved."))
        llm.evaluator(verdict(True))
        handle = core.start_run("tab-1", "Save a note", "saved", thread)
        events = list(handle.iter_events(deadline=time.monotonic() + 30))
        assert any(isinstance(e, FinalAnswer) for e in events)
        core.open_url("tab-1", site.url("/set-cookie?value=alice"))
    session = registry_of(core).get("tab-1")
    folder = core.settings.data_dir / "workspaces" / USER
    assert (folder / "doomed" / "notes.txt").read_text() == "doomed"
    assert (folder / "kept" / "notes.txt").read_text() == "kept"
    assert session.thread == "kept"
    core.attach("tab-1", thread_id="doomed")  # back on it: its browser state was saved when it left
    assert core.runtime.run(_state(core, "doomed"), 10) is not None

    core.delete_conversation("doomed")

    assert not (folder / "doomed").exists() and (folder / "kept" / "notes.txt").read_text() == "kept"
    assert core.runtime.run(_state(core, "doomed"), 10) is None
    assert core.runtime.run(_state(core, "kept"), 10) is not None


async def _state(core: Sidekick, thread: str) -> BrowserState | None:
    assert core.store is not None
    return await core.store.browser_state(USER, thread)


def test_keep_days_removes_old_conversations_workspaces_and_browser_states(
    core_settings: Settings, llm: FakeOpenAI
) -> None:
    with contextlib.closing(Sidekick(core_settings).start(warm=False)) as first:
        for thread in ("old", "recent"):
            llm.worker(Reply.tool_call("write_file", {"path": "n.txt", "content": thread}), Reply.text("Saved."))
            llm.evaluator(verdict(True))
            list(first.start_run("tab-1", "Save a note", "saved", thread).iter_events(deadline=time.monotonic() + 30))
            assert first.store is not None
            state = BrowserState(url="https://example.com/")
            first.runtime.run(first.store.save_browser_state(USER, thread, state), 10)
    with sqlite3.connect(core_settings.data_dir / "sidekick.sqlite") as db:  # "old" was last used 30 days ago
        month_ago = time.time() - 30 * 86_400
        db.execute("UPDATE conversations SET updated = ? WHERE thread_id = 'old'", (month_ago,))
        db.execute("UPDATE browser_states SET saved = ? WHERE thread_id = 'old'", (month_ago,))
    db.close()
    folder = core_settings.data_dir / "workspaces" / USER
    assert (folder / "old" / "n.txt").exists()

    with contextlib.closing(Sidekick(dataclasses.replace(core_settings, keep_days=7)).start(warm=False)) as second:
        assert not (folder / "old").exists() and (folder / "recent" / "n.txt").read_text() == "recent"
        assert [c.thread_id for c in second.conversations()] == ["recent"]
        assert second.runtime.run(_state(second, "old"), 10) is None
        assert second.runtime.run(_state(second, "recent"), 10) is not None


def test_the_store_file_and_its_folder_are_readable_by_sidekicks_user_only(core: Sidekick) -> None:
    data = core.settings.data_dir
    assert (data.stat().st_mode & 0o777) == 0o700
    for name in ("sidekick.sqlite", "sidekick.sqlite-wal"):
        if (data / name).exists():
            assert ((data / name).stat().st_mode & 0o777) == 0o600, name



# -- moving to another browser endpoint ---------------------------------------------------------
async def test_a_run_whose_browser_server_dies_carries_on_on_the_other_with_its_cookie(
    tmp_path: Path, settings: Settings, llm: FakeOpenAI, site: LocalSite
) -> None:
    """Two real ``playwright run-server`` processes; the server the session is on is killed while
    the agent's navigation waits on a page; its next action opens on the other server, signed in."""
    with run_server() as a, run_server() as b:
        pool = BrowserPool(remote_settings(settings, a, b), warm_spare=False)
        try:
            async with open_rig(agent_settings(tmp_path, llm), pool) as rig:
                await rig.session.open_conversation("t1")
                llm.worker(
                    Reply.tool_call("navigate", {"url": site.url("/set-cookie?value=alice")}),  # signs in
                    Reply.tool_call("navigate", {"url": site.url("/about")}),
                    Reply.tool_call("navigate", {"url": site.url("/hang")}),  # its server dies meanwhile
                    Reply.tool_call("navigate", {"url": site.url("/cookies")}),
                    Reply.text("Still signed in."),
                )
                llm.evaluator(verdict(True))
                run = asyncio.ensure_future(rig.run("Sign in, then check the account", thread="t1"))
                await wait_until(lambda: "/hang" in site.hits, timeout=30, what="the run waiting on /hang")
                await saved(rig.store, "t1", site.url("/about"))
                first = await rig.session.browser()
                doomed = next(ep.name for ep in pool.endpoints if ep.generation == first.generation)
                (a if doomed == a else b).kill()

                events = await asyncio.wait_for(run, 60)

                assert [e.text for e in events if isinstance(e, FinalAnswer)] == ["Still signed in."]
                moved = await rig.session.browser()
                assert next(ep.name for ep in pool.endpoints if ep.generation == moved.generation) != doomed
                results = [str(m["content"]) for m in llm.requests[-2]["messages"] if m.get("role") == "tool"]
                assert f"The connection to the browser server {doomed} was lost" in results[-2]
                assert "sk=alice" in results[-1]  # the site saw the cookie, on the other server
        finally:
            await pool.aclose()
