"""The conversation store on a real SQLite file: the index of titles and times, transcripts read
from real LangGraph checkpoints, deletion, and what a closed store says."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sidekick.errors import SidekickError, StoreError
from sidekick.store import TITLE_CHARS, Store
from tests.support.runs import write_turn


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store(tmp_path / "nested" / "sidekick.sqlite").open()
    try:
        yield opened
    finally:
        await opened.aclose()




def checkpoint_rows(path: Path, thread_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)).fetchone()[0])


async def test_open_creates_the_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.sqlite"
    store = await Store(path).open()
    try:
        assert path.is_file() and await store.list() == []
    finally:
        await store.aclose()


async def test_touch_creates_a_row_titled_by_the_first_message_then_updates_only_the_time(db: Store) -> None:
    await db.touch("t1", "  Find   the\nsecret   number " + "x" * 100)
    [first] = await db.list()
    assert first.thread_id == "t1"
    assert first.title == ("Find the secret number " + "x" * 100)[:TITLE_CHARS] and len(first.title) == TITLE_CHARS
    assert first.created == first.updated

    await asyncio.sleep(0.01)
    await db.touch("t1", "A later message")
    [again] = await db.list()
    assert again.title == first.title and again.created == first.created and again.updated > first.updated


async def test_a_blank_first_message_is_untitled(db: Store) -> None:
    await db.touch("t1", " \n\t ")
    assert [c.title for c in await db.list()] == ["Untitled"]


async def test_list_is_newest_activity_first_and_honours_the_limit(db: Store) -> None:
    for thread in ("old", "middle", "new"):
        await db.touch(thread, thread)
        await asyncio.sleep(0.01)
    await db.touch("old", "again")  # activity moves it to the top
    assert [c.thread_id for c in await db.list()] == ["old", "new", "middle"]
    assert [c.thread_id for c in await db.list(limit=2)] == ["old", "new"]


async def test_exists(db: Store) -> None:
    assert not await db.exists("t1")
    await db.touch("t1", "hi")
    assert await db.exists("t1") and not await db.exists("t2")


async def test_history_reads_the_transcript_from_the_checkpoint_without_any_runner(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    first = await Store(path).open()
    try:
        await write_turn(first, "t1", "What is the number?", "It is 4217.")
        await write_turn(first, "t1", "And doubled?", "8434.")
        await write_turn(first, "other", "Elsewhere", "Not this one.")
    finally:
        await first.aclose()
    # A store opened afresh on the same file, with no graph, session or model in sight.
    reopened = await Store(path).open()
    try:
        assert await reopened.history("t1") == [
            ("user", "What is the number?"),
            ("assistant", "It is 4217."),
            ("user", "And doubled?"),
            ("assistant", "8434."),
        ]
        assert await reopened.history("never-written") == []
    finally:
        await reopened.aclose()


async def test_delete_removes_the_checkpoints_and_the_row_of_that_thread_only(db: Store) -> None:
    for thread in ("t1", "t2"):
        await db.touch(thread, f"hello {thread}")
        await write_turn(db, thread, f"hello {thread}", "hi")
    assert checkpoint_rows(db.path, "t1") > 0

    await db.delete("t1")

    assert not await db.exists("t1") and await db.history("t1") == []
    assert checkpoint_rows(db.path, "t1") == 0
    assert await db.exists("t2") and await db.history("t2") == [("user", "hello t2"), ("assistant", "hi")]
    await db.delete("t1")  # deleting what is gone is fine


# Regression (bug 6): `_saver()` raised a bare RuntimeError("The conversation store is not open."),
# which is no SidekickError, so the dashboard and CLI showed it as an internal failure with a
# traceback. Now every call on a closed (or never opened) store raises StoreError, a SidekickError
# whose message says what to do.
@pytest.mark.parametrize("opened", [True, False], ids=["closed", "never-opened"])
async def test_a_closed_store_raises_store_error_with_a_plain_message(tmp_path: Path, opened: bool) -> None:
    store = Store(tmp_path / "s.sqlite")
    if opened:
        await (await store.open()).aclose()
        await store.aclose()  # idempotent
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.touch("t1", "hi"),
        store.list,
        lambda: store.exists("t1"),
        lambda: store.history("t1"),
        lambda: store.delete("t1"),
    ]
    for call in calls:
        with pytest.raises(StoreError) as info:
            await call()
        assert isinstance(info.value, SidekickError)
        assert str(info.value) == "The conversation store is closed; restart Sidekick to continue."
