"""Conversations on disk: LangGraph's SQLite checkpointer plus a small index of titles and times.

:class:`Store` opens one SQLite file (``SIDEKICK_DATA_DIR/sidekick.sqlite``) on the loop thread. The
checkpointer keeps every thread's messages; the ``conversations`` table lists them for the sidebar.
Both share the checkpointer's connection and lock, so writes never interleave.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from sidekick.errors import StoreError
from sidekick.transcript import Transcript, transcript

TITLE_CHARS = 60


@dataclass(frozen=True)
class Conversation:
    thread_id: str
    title: str
    created: float
    updated: float


class Store:
    """The process's SQLite file. States: new → open → closed. ``aclose`` is idempotent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = contextlib.AsyncExitStack()
        self.checkpointer: AsyncSqliteSaver | None = None
        self.closed = False

    async def open(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(str(self.path)))
            await saver.setup()
            async with saver.lock:
                # WAL (set by the saver) with NORMAL sync survives an application crash; only a power
                # loss can drop the last commits, and no fsync stalls the lock every session shares.
                await saver.conn.execute("PRAGMA synchronous=NORMAL")
                await saver.conn.execute(
                    "CREATE TABLE IF NOT EXISTS conversations ("
                    "thread_id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)"
                )
                await saver.conn.commit()
            self.checkpointer = saver
            self._stack = stack.pop_all()
        return self

    def _saver(self) -> AsyncSqliteSaver:
        if self.checkpointer is None or self.closed:
            raise StoreError("The conversation store is closed; restart Sidekick to continue.")
        return self.checkpointer

    async def touch(self, thread_id: str, first_message: str) -> None:
        """Record activity on a thread; its title comes from its first message."""
        saver = self._saver()
        title = " ".join(first_message.split())[:TITLE_CHARS] or "Untitled"
        now = time.time()
        async with saver.lock:
            await saver.conn.execute(
                "INSERT INTO conversations (thread_id, title, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(thread_id) DO UPDATE SET updated = excluded.updated",
                (thread_id, title, now, now),
            )
            await saver.conn.commit()

    async def list(self, limit: int = 50) -> list[Conversation]:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "SELECT thread_id, title, created, updated FROM conversations ORDER BY updated DESC LIMIT ?", (limit,)
            )
            rows = await cursor.fetchall()
        return [Conversation(str(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]

    async def exists(self, thread_id: str) -> bool:
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute("SELECT 1 FROM conversations WHERE thread_id = ?", (thread_id,))
            return await cursor.fetchone() is not None

    async def history(self, thread_id: str) -> Transcript:
        """The conversation's text as (role, text), read from its latest checkpoint: no session,
        runner or model needed."""
        found = await self._saver().aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        if found is None:
            return []
        return transcript(found.checkpoint.get("channel_values", {}).get("messages", []))

    async def delete(self, thread_id: str) -> None:
        saver = self._saver()
        await saver.adelete_thread(thread_id)
        async with saver.lock:
            await saver.conn.execute("DELETE FROM conversations WHERE thread_id = ?", (thread_id,))
            await saver.conn.commit()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._stack.aclose()
