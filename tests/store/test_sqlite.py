"""What only the SQLite store has to get right: a file written before conversations had owners and
leases opens, keeps its conversations (as the local user's, owner ""), and gains the new tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidekick.store import SqliteStore


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
