"""Conversations on disk: LangGraph's SQLite checkpointer, an index of titles and times, and the
run record.

:class:`Store` opens one SQLite file (``SIDEKICK_DATA_DIR/sidekick.sqlite``) on the loop thread. The
checkpointer keeps every thread's messages; the ``conversations`` table lists them for the sidebar;
``run_events`` is the run record: every event of every run, in order, with its time. Step
screenshots are PNG files under ``SIDEKICK_DATA_DIR/records/THREAD/`` that the record names (never
blobs in the checkpoint); each conversation keeps at most ``screenshot_budget`` of them, newest
first. All tables share the checkpointer's connection and lock, so writes never interleave.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from sidekick.errors import StoreError
from sidekick.events import ErrorEvent, Event, Finished, RunStarted, Screenshot, from_json
from sidekick.transcript import Transcript, transcript

TITLE_CHARS = 60
INTERRUPTED = "This turn was interrupted: Sidekick stopped before it finished. Its finished steps are kept."
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Conversation:
    thread_id: str
    title: str
    created: float
    updated: float


@dataclass
class RecordedRun:
    """One run as the record kept it: its events in order, each with the time it happened."""

    run_id: str
    events: list[Event] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @property
    def started(self) -> RunStarted | None:
        first = self.events[0] if self.events else None
        return first if isinstance(first, RunStarted) else None

    @property
    def opens_turn(self) -> bool:
        """A user's message starts it (a run resumed after an approval continues the turn before)."""
        started = self.started
        return started is not None and bool(started.message)


def turn_of(runs: list[RecordedRun], run_id: str) -> list[RecordedRun]:
    """The run ``run_id`` and the runs that continue its turn (resumed after an approval)."""
    for i, run in enumerate(runs):
        if run.run_id == run_id:
            end = i + 1
            while end < len(runs) and not runs[end].opens_turn:
                end += 1
            return runs[i:end]
    return []


class Store:
    """The process's SQLite file. States: new → open → closed. ``aclose`` is idempotent."""

    def __init__(self, path: Path, *, screenshot_budget: int = 300) -> None:
        self.path = path
        self.records = path.parent / "records"
        self.screenshot_budget = screenshot_budget
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
                await saver.conn.execute(
                    "CREATE TABLE IF NOT EXISTS run_events ("
                    "thread_id TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL, "
                    "kind TEXT NOT NULL, data TEXT NOT NULL, file TEXT, PRIMARY KEY (thread_id, run_id, seq))"
                )
                await saver.conn.execute("CREATE INDEX IF NOT EXISTS run_events_by_time ON run_events (thread_id, at)")
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
        """The conversation, its record and its screenshots."""
        saver = self._saver()
        await saver.adelete_thread(thread_id)
        async with saver.lock:
            await saver.conn.execute("DELETE FROM conversations WHERE thread_id = ?", (thread_id,))
            await saver.conn.execute("DELETE FROM run_events WHERE thread_id = ?", (thread_id,))
            await saver.conn.commit()
        await asyncio.to_thread(shutil.rmtree, self._folder(thread_id), True)

    async def prune(self, keep_days: float, now: float | None = None) -> builtins.list[str]:
        """Delete conversations not updated for ``keep_days``; returns their ids."""
        cutoff = (time.time() if now is None else now) - keep_days * 86_400
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute("SELECT thread_id FROM conversations WHERE updated < ?", (cutoff,))
            old = [str(row[0]) for row in await cursor.fetchall()]
        for thread_id in old:
            await self.delete(thread_id)
        return old

    # -- the run record --------------------------------------------------------------------------
    def _folder(self, thread_id: str) -> Path:
        return self.records / (_SAFE.sub("_", thread_id)[:64] or "thread")

    async def append(self, thread_id: str, run_id: str, events: Iterable[tuple[int, float, Event]]) -> None:
        """Add events of a run to the record (screenshots as files), in one transaction."""
        saver = self._saver()
        rows: list[tuple[Any, ...]] = []
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
        """Every run of the thread as recorded, oldest first. A run that never finished (the server
        stopped) ends with an error saying so. Screenshots whose file is gone keep their place, with
        no image; ``images=False`` reads none."""
        saver = self._saver()
        async with saver.lock:
            cursor = await saver.conn.execute(
                "SELECT run_id, at, data, file FROM run_events WHERE thread_id = ? ORDER BY at, run_id, seq",
                (thread_id,),
            )
            rows = await cursor.fetchall()
        runs: dict[str, RecordedRun] = {}
        folder = self._folder(thread_id)
        for run_id, at, data, file in rows:
            png = b""
            if file and images:
                png = await asyncio.to_thread(_read_file, folder / str(file))
            run = runs.setdefault(str(run_id), RecordedRun(str(run_id)))
            run.events.append(from_json(json.loads(data), png))
            run.times.append(float(at))
        for run in runs.values():
            if not isinstance(run.events[-1], Finished):
                at = run.times[-1]
                run.events += [
                    ErrorEvent(message=INTERRUPTED, category="internal"),
                    Finished(outcome="error", seconds=at - run.times[0], model_calls=0, tokens=0),
                ]
                run.times += [at, at]
        return list(runs.values())

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._stack.aclose()


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
