"""What only the SQLite store has to get right: its file and folder, made readable by Sidekick's
user only (the file holds cookies); deletion reaching LangGraph's own tables; and a file written
before conversations had owners and leases opens, keeps its conversations (as the local user's,
owner ""), and gains the new tables."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sidekick.store import SqliteStore
from tests.support.runs import write_turn


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_open_makes_the_file_and_its_folder_readable_by_sidekicks_user_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.sqlite"
    async with SqliteStore(path) as store:
        await store.touch("t1", "hello")
        assert path.is_file() and mode(path.parent) == 0o700 and mode(path) == 0o600
        assert mode(path.with_name("s.sqlite-wal")) == 0o600  # SQLite gives it the file's mode
    os.chmod(path, 0o644)  # a file from before, or loosened by hand: tightened at the next start
    os.chmod(path.parent, 0o755)
    async with SqliteStore(path) as store:
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
        assert [c.thread_id for c in await store.list()] == ["t1"]


def checkpoint_rows(path: Path, thread_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return sum(
            int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE thread_id = ?", (thread_id,)).fetchone()[0])
            for table in ("checkpoints", "writes")
        )


async def test_delete_removes_the_threads_rows_from_langgraphs_own_tables(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    async with SqliteStore(path) as store:
        for thread in ("t1", "t2"):
            await write_turn(store, thread, f"hello {thread}", "hi")
        assert checkpoint_rows(path, "t1") > 0
        await store.delete("t1")
        assert checkpoint_rows(path, "t1") == 0 and checkpoint_rows(path, "t2") > 0


async def test_a_file_from_before_owners_and_leases_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "sidekick.sqlite"
    with sqlite3.connect(path) as old:  # the tables as the store created them before
        old.execute(
            "CREATE TABLE conversations (thread_id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, "
            "updated REAL NOT NULL)"
        )
        old.execute("INSERT INTO conversations VALUES ('t', 'Old one', 1.0, 2.0)")
    old.close()
    for _ in range(2):  # and again: nothing left to change
        async with SqliteStore(path) as store:
            [kept] = await store.list()
            assert (kept.thread_id, kept.title, kept.created, kept.updated) == ("t", "Old one", 1.0, 2.0)
            assert await store.owner_of("t") == "" and [c.thread_id for c in await store.list(owners=[""])] == ["t"]
            assert await store.acquire_lease("t", "me", 5)
            await store.release_all("me")
