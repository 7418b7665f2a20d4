"""The embedded store: one SQLite file holding LangGraph's checkpoints, an index of titles and times,
the run record and run leases. The default when ``SIDEKICK_DATABASE_URL`` is unset.

:class:`SqliteStore` opens ``SIDEKICK_DATA_DIR/sidekick.sqlite`` on the loop thread. The
checkpointer keeps every thread's messages; the ``conversations`` table lists them for the sidebar;
``run_events`` is the run record: every event of every run, in order, with its time. Step
screenshots are PNG files under ``SIDEKICK_DATA_DIR/records/THREAD/`` that the record names (never
blobs in the checkpoint); each conversation keeps at most ``screenshot_budget`` of them, newest
first. ``browser_states`` keeps each conversation's browser state (cookies included). All tables
share the checkpointer's connection and lock, so writes never interleave.

Only Sidekick's user may read any of it: the folder is made ``0700`` and the file (with SQLite's
``-wal`` and ``-shm`` files, which take the file's mode) ``0600``, also when they existed before.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from sidekick.browser.state import BrowserState
from sidekick.errors import StoreError
from sidekick.events import Event, Screenshot
from sidekick.store.base import CLOSED, BaseStore, Conversation, RecordedRun, assemble, title_of

_SAFE = re.compile(r"[^A-Za-z0-9_-]")

# Idempotent (IF NOT EXISTS): each start brings an older file up to date.
_TABLES = (
    "CREATE TABLE IF NOT EXISTS conversations (thread_id TEXT PRIMARY KEY, title TEXT NOT NULL, "
    "created REAL NOT NULL, updated REAL NOT NULL, owner TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS run_events ("
    "thread_id TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL, "
    "kind TEXT NOT NULL, data TEXT NOT NULL, file TEXT, PRIMARY KEY (thread_id, run_id, seq))",
    "CREATE INDEX IF NOT EXISTS run_events_by_time ON run_events (thread_id, at)",
    "CREATE TABLE IF NOT EXISTS leases (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_by_owner ON leases (owner)",
    "CREATE TABLE IF NOT EXISTS browser_states (owner TEXT NOT NULL, thread_id TEXT NOT NULL, "
    "saved REAL NOT NULL, state TEXT NOT NULL, PRIMARY KEY (owner, thread_id))",
)


class SqliteStore(BaseStore):
    """The process's SQLite file. States: new → open → closed. ``aclose`` is idempotent."""

    checkpointer: AsyncSqliteSaver | None

    def __init__(self, path: Path, *, screenshot_budget: int = 300) -> None:
        super().__init__(screenshot_budget=screenshot_budget)
        self.path = path
        self.records = path.parent / "records"

    async def _open(self, stack: contextlib.AsyncExitStack) -> AsyncSqliteSaver:
        await asyncio.to_thread(_private, self.path)
        saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(str(self.path)))
        await saver.setup()
        async with saver.lock:
            # WAL (set by the saver) with NORMAL sync survives an application crash; only a power
            # loss can drop the last commits, and no fsync stalls the lock every session shares.
            await saver.conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _TABLES:
                await saver.conn.execute(statement)
            cursor = await saver.conn.execute("SELECT name FROM pragma_table_info('conversations')")
            if "owner" not in {str(row[0]) for row in await cursor.fetchall()}:
                # A file from before conversations had owners: its conversations get "".
                await saver.conn.execute("ALTER TABLE conversations ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            await saver.conn.commit()
        return saver

    def _saver(self) -> AsyncSqliteSaver:
        if self.checkpointer is None or self.closed:
            raise StoreError(CLOSED)
        return self.checkpointer

    async def touch(self, thread_id: str, first_message: str, *, owner: str = "") -> None:
        saver = self._saver()
        now = time.time()
        async with saver.lock:
            await saver.conn.execute(
                "INSERT INTO conversations (thread_id, title, created, updated, owner) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(thread_id) DO UPDATE SET updated = excluded.updated",
                (thread_id, title_of(first_message), now, now, owner),
            )
            await saver.conn.commit()

    async def list(self, limit: int = 50, *, owners: Sequence[str] | None = None) -> builtins.list[Conversation]:
        saver = self._saver()
        where, params = "", builtins.list[object]([limit])
        if owners is not None:
            where = f"WHERE owner IN ({', '.join('?' * len(owners))}) " if owners else "WHERE 0 "
            params = [*owners, limit]
        async with saver.lock:
            cursor = await saver.conn.execute(
                f"SELECT thread_id, title, created, updated FROM conversations {where}ORDER BY updated DESC LIMIT ?",
                params,
            )
            rows = await cursor.fetchall()
        return [Conversation(str(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]

    async def owner_of(self, thread_id: str) -> str | None:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute("SELECT owner FROM conversations WHERE thread_id = ?", (thread_id,))
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def exists(self, thread_id: str) -> bool:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute("SELECT 1 FROM conversations WHERE thread_id = ?", (thread_id,))
            return await cursor.fetchone() is not None

    async def delete(self, thread_id: str) -> None:
        saver = self._saver()
        await saver.adelete_thread(thread_id)
        async with saver.lock:
            for table in ("conversations", "run_events", "leases", "browser_states"):
                await saver.conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
            await saver.conn.commit()
        await asyncio.to_thread(shutil.rmtree, self._folder(thread_id), True)

    async def _idle_since(self, cutoff: float) -> builtins.list[str]:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute("SELECT thread_id FROM conversations WHERE updated < ?", (cutoff,))
            return [str(row[0]) for row in await cursor.fetchall()]

    # -- the run record --------------------------------------------------------------------------
    def _folder(self, thread_id: str) -> Path:
        return self.records / (_SAFE.sub("_", thread_id)[:64] or "thread")

    async def append(self, thread_id: str, run_id: str, events: Iterable[tuple[int, float, Event]]) -> None:
        saver = self._saver()
        rows: builtins.list[tuple[Any, ...]] = []
        shots = 0
        for seq, at, event in events:
            data = event.to_json()
            file: str | None = None
            if isinstance(event, Screenshot):
                folder = self._folder(thread_id)
                file = f"{_SAFE.sub('_', run_id)}-{seq:05d}.png"
                await asyncio.to_thread(_write_file, folder / file, event.png)
                shots += 1
            rows.append((thread_id, run_id, seq, at, event.kind, json.dumps(data, ensure_ascii=False), file))
        async with saver.lock:
            await saver.conn.executemany(
                "INSERT OR REPLACE INTO run_events (thread_id, run_id, seq, at, kind, data, file) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            await saver.conn.commit()
        if shots:
            await self._keep_screenshot_budget(thread_id)

    async def _keep_screenshot_budget(self, thread_id: str) -> None:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "SELECT file FROM run_events WHERE thread_id = ? AND file IS NOT NULL ORDER BY at DESC, seq DESC "
                "LIMIT -1 OFFSET ?",
                (thread_id, self.screenshot_budget),
            )
            stale = [str(row[0]) for row in await cursor.fetchall()]
            if not stale:
                return
            await saver.conn.executemany(
                "UPDATE run_events SET file = NULL WHERE thread_id = ? AND file = ?", [(thread_id, f) for f in stale]
            )
            await saver.conn.commit()
        await asyncio.to_thread(_remove_files, self._folder(thread_id), stale)

    async def record(self, thread_id: str, *, images: bool = True) -> builtins.list[RecordedRun]:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "SELECT run_id, at, data, file FROM run_events WHERE thread_id = ? ORDER BY at, run_id, seq",
                (thread_id,),
            )
            rows = await cursor.fetchall()
        folder = self._folder(thread_id)
        read: builtins.list[tuple[str, float, str, bytes]] = []
        for run_id, at, data, file in rows:
            png = await asyncio.to_thread(_read_file, folder / str(file)) if file and images else b""
            read.append((str(run_id), float(at), str(data), png))
        return assemble(read)

    # -- leases: the file is one machine's, but two processes (the dashboard and the CLI) share it --
    async def acquire_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> bool:
        saver = self._saver()
        now = time.time()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "INSERT INTO leases (thread_id, owner, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(thread_id) DO UPDATE SET owner = excluded.owner, expires = excluded.expires "
                "WHERE leases.expires < ? OR leases.owner = excluded.owner",
                (thread_id, owner, now + ttl_seconds, now),
            )
            held = cursor.rowcount == 1
            await saver.conn.commit()
        return held

    async def renew_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> bool:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "UPDATE leases SET expires = ? WHERE thread_id = ? AND owner = ?",
                (time.time() + ttl_seconds, thread_id, owner),
            )
            held = cursor.rowcount == 1
            await saver.conn.commit()
        return held

    async def release_lease(self, thread_id: str, owner: str) -> None:
        await self._change("DELETE FROM leases WHERE thread_id = ? AND owner = ?", (thread_id, owner))

    async def release_all(self, owner: str) -> None:
        await self._change("DELETE FROM leases WHERE owner = ?", (owner,))

    async def lease_seconds_left(self, thread_id: str) -> float:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute("SELECT expires FROM leases WHERE thread_id = ?", (thread_id,))
            row = await cursor.fetchone()
        return max(0.0, float(row[0]) - time.time()) if row else 0.0

    # -- browser states --------------------------------------------------------------------------
    async def save_browser_state(self, owner: str, thread_id: str, state: BrowserState) -> None:
        saver = self._saver()
        async with saver.lock:
            await saver.conn.execute(
                "INSERT OR REPLACE INTO browser_states (owner, thread_id, saved, state) VALUES (?, ?, ?, ?)",
                (owner, thread_id, time.time(), state.to_json()),
            )
            await saver.conn.commit()

    async def _browser_state_json(self, owner: str, thread_id: str) -> str | None:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "SELECT state FROM browser_states WHERE owner = ? AND thread_id = ?", (owner, thread_id)
            )
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def delete_browser_state(self, owner: str, thread_id: str) -> None:
        await self._change("DELETE FROM browser_states WHERE owner = ? AND thread_id = ?", (owner, thread_id))

    async def _prune_browser_states(self, cutoff: float) -> None:
        await self._change(
            "DELETE FROM browser_states WHERE saved < ? AND thread_id NOT IN (SELECT thread_id FROM conversations)",
            (cutoff,),
        )

    async def _change(self, statement: str, params: Sequence[Any]) -> None:
        saver = self._saver()
        async with saver.lock:
            await saver.conn.execute(statement, params)
            await saver.conn.commit()


Store = SqliteStore
"""The name callers have always used for the SQLite store."""


def _private(path: Path) -> None:
    """The folder ``0700`` and the database file ``0600`` (created so, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _remove_files(folder: Path, names: Iterable[str]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)
