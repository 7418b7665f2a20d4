"""The team store: PostgreSQL holds everything, so any Sidekick server (replica) can serve any
conversation. Chosen by ``SIDEKICK_DATABASE_URL=postgresql://…``.

One psycopg connection pool per server, shared by LangGraph's ``AsyncPostgresSaver`` (the
checkpoints) and our tables: ``sidekick_conversations`` (the sidebar's index),
``sidekick_run_events`` (the run record, step screenshots as ``bytea`` in the row, so every replica
reads them: nothing is kept on one server's disk), ``sidekick_leases`` (which server is running
which conversation, until when) and ``sidekick_browser_states`` (each conversation's cookies, local
storage and page, per owner). Who may read them is the database's access control: give the role in
``SIDEKICK_DATABASE_URL`` to Sidekick alone.

Our tables are created by numbered migrations at start; ``sidekick_schema`` holds the version
reached. Starting is safe with several servers at once: one takes an advisory lock, migrates (each
migration in its own transaction) and lets go; the others wait, then find nothing left to do.

Every wait is bounded (connecting, the pool, each statement, the migration lock), and a database
that is down or goes away surfaces as :class:`~sidekick.errors.StoreError` with a plain message
naming host:port, never the password. That includes the checkpointer's calls from the graph.
Committed rows stay committed: a lost connection only loses the statement in flight.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from sidekick.browser.state import BrowserState
from sidekick.closing import close_quietly
from sidekick.errors import ConfigError, StoreError
from sidekick.events import Event, Screenshot
from sidekick.store.base import CLOSED, BaseStore, Conversation, RecordedRun, assemble, title_of

Connection = psycopg.AsyncConnection[DictRow]

# Seconds a pooled connection may sit unused and still be handed out without a ping.
_PING_AFTER_IDLE = 2.0

# Key of the advisory lock held while migrating: any constant unique to Sidekick in this database.
_MIGRATION_LOCK = 0x51D3_C1C0_0001

# Append-only: the version is the position (1-based). Never edit one that has shipped; add another.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE sidekick_conversations (thread_id text PRIMARY KEY, title text NOT NULL, "
        "created double precision NOT NULL, updated double precision NOT NULL, owner text NOT NULL DEFAULT '')",
        "CREATE INDEX sidekick_conversations_by_update ON sidekick_conversations (updated)",
        "CREATE TABLE sidekick_run_events (thread_id text NOT NULL, run_id text NOT NULL, seq integer NOT NULL, "
        "at double precision NOT NULL, kind text NOT NULL, data text NOT NULL, png bytea, "
        "PRIMARY KEY (thread_id, run_id, seq))",
        # PNGs are compressed already: storing them out of line without compressing saves the effort.
        "ALTER TABLE sidekick_run_events ALTER COLUMN png SET STORAGE EXTERNAL",
        "CREATE INDEX sidekick_run_events_by_time ON sidekick_run_events (thread_id, at)",
        "CREATE TABLE sidekick_leases (thread_id text PRIMARY KEY, owner text NOT NULL, "
        "expires timestamptz NOT NULL)",
        "CREATE INDEX sidekick_leases_by_owner ON sidekick_leases (owner)",
    ),
    (
        "CREATE TABLE sidekick_browser_states (owner text NOT NULL, thread_id text NOT NULL, "
        "saved double precision NOT NULL, state text NOT NULL, PRIMARY KEY (owner, thread_id))",
        "CREATE INDEX sidekick_browser_states_by_thread ON sidekick_browser_states (thread_id)",
    ),
)


def address(url: str) -> str:
    """``host:port`` of a connection URL (for messages: never the user or password)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(
            "SIDEKICK_DATABASE_URL is not a PostgreSQL connection URL; "
            "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    return f"{host}:{params.get('port') or 5432}"


class PostgresStore(BaseStore):
    """One server's view of the team database. States: new → open → closed; ``aclose`` is idempotent."""

    checkpointer: _Checkpointer | None

    def __init__(
        self,
        url: str,
        *,
        screenshot_budget: int = 300,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
        migration_wait: float = 60.0,
    ) -> None:
        super().__init__(screenshot_budget=screenshot_budget)
        self.where = address(url)
        self.statement_timeout = statement_timeout
        self._url = url
        self._password = str(conninfo_to_dict(url).get("password") or "")
        self._async_commit = "synchronous_commit" not in str(conninfo_to_dict(url).get("options") or "")
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._migration_wait = migration_wait
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._last_used: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()

    # -- lifecycle -------------------------------------------------------------------------------
    async def _open(self, stack: contextlib.AsyncExitStack) -> _Checkpointer:
        try:
            await self._migrate()
            pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
                self._url,
                connection_class=Connection,
                # What AsyncPostgresSaver requires of its connections.
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
                        "connect_timeout": max(1, round(self._connect_timeout))},
                min_size=1,
                max_size=self._pool_size,
                open=False,
                configure=self._configure,
                check=self._check,
                reset=self._returned,
                timeout=self._connect_timeout,
                # The pool retries a lost server with a doubling delay; giving up soon restarts
                # the doubling on the next request, so a server that is back is used within
                # seconds instead of after the delay an outage had grown.
                reconnect_timeout=self._connect_timeout,
                name="sidekick",
            )
            stack.push_async_callback(_close_pool, pool)
            await pool.open(wait=True, timeout=self._connect_timeout)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise StoreError(
                f"Cannot connect to the conversation database at {self.where}: {self._reason(exc)}. "
                "Check that PostgreSQL is running there and that SIDEKICK_DATABASE_URL is right."
            ) from None
        self._pool = pool
        return _Checkpointer(pool, self)

    async def _configure(self, conn: Connection) -> None:
        # The server ends a statement that runs too long; the client bound in `_guard` covers a
        # server that stopped answering at all.
        ms = str(round(self.statement_timeout * 1000))
        await conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false), "
            "set_config('idle_in_transaction_session_timeout', %s, false)",
            (ms, ms, ms),
        )
        if self._async_commit:
            # The durability of Sidekick's SQLite (WAL, synchronous=NORMAL): a commit survives a
            # crash or kill -9 of Sidekick at once, and is flushed to disk by the WAL writer within
            # a fraction of a second, not before the commit returns (two flushes per agent step,
            # most of PostgreSQL's cost on a busy machine). The URL's own `options=-c
            # synchronous_commit=…` wins.
            await conn.execute("SET synchronous_commit = off")

    async def _check(self, conn: Connection) -> None:
        # A connection the server may have dropped (a restart, a proxy's idle timeout) is pinged on
        # checkout, so the pool replaces it instead of handing it to a caller to fail on. One used
        # moments ago is taken as alive: a ping on every checkout costs a round trip per call, a
        # fifth of a checkpoint step (benchmarks/checkpoints.py).
        if time.monotonic() - self._last_used.get(conn, 0.0) > _PING_AFTER_IDLE:
            await AsyncConnectionPool.check_connection(conn)

    async def _returned(self, conn: Connection) -> None:
        self._last_used[conn] = time.monotonic()

    async def _migrate(self) -> None:
        """Bring the database to the newest schema (LangGraph's, then ours), one server at a time."""
        async with asyncio.timeout(self._connect_timeout):
            conn = await Connection.connect(
                self._url,
                autocommit=True,
                prepare_threshold=0,
                row_factory=dict_row,
                connect_timeout=max(1, round(self._connect_timeout)),
            )
        try:
            # The lock's wait has its own limit and message; this bounds everything else too.
            async with conn, asyncio.timeout(self._migration_wait + 2 * self.statement_timeout):
                await self._configure(conn)
                await self._lock_for_migration(conn)
                # LangGraph's own migrations build indexes CONCURRENTLY: outside any transaction.
                await AsyncPostgresSaver(conn).setup()
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS sidekick_schema (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                    "version integer NOT NULL)"
                )
                await conn.execute("INSERT INTO sidekick_schema (version) VALUES (0) ON CONFLICT DO NOTHING")
                row = await (await conn.execute("SELECT version FROM sidekick_schema")).fetchone()
                version = int(row["version"]) if row else 0
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"The conversation database at {self.where} was set up by a newer Sidekick (schema "
                        f"{version}; this one knows {len(MIGRATIONS)}). Upgrade this server."
                    )
                for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(statement)
                        await conn.execute("UPDATE sidekick_schema SET version = %s", (number,))
                # Closing the connection releases the advisory lock too; this is only sooner.
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
        except (psycopg.Error, TimeoutError) as exc:
            raise StoreError(
                f"Could not set up the conversation database at {self.where}: {self._reason(exc)}."
            ) from None

    async def _lock_for_migration(self, conn: Connection) -> None:
        # Polled, not pg_advisory_lock(): a server blocked in that call holds a snapshot, and the
        # CREATE INDEX CONCURRENTLY in LangGraph's migrations (run by the lock's holder) waits for
        # every older snapshot: the two would deadlock.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._migration_wait
        while True:
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_MIGRATION_LOCK,))).fetchone()
            if row and row["got"]:
                return
            if loop.time() > deadline:
                raise StoreError(
                    f"Another Sidekick server has been setting up the conversation database at {self.where} "
                    f"for over {self._migration_wait:g} s; check that server, then restart this one."
                )
            await asyncio.sleep(0.1)

    # -- errors ----------------------------------------------------------------------------------
    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return "no answer in time"
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # libpq says 'connection to server at "h", port p failed: REASON': the address is ours to say.
        text = text.rpartition(" failed: ")[2].replace("FATAL:  ", "").strip()
        if self._password:
            text = text.replace(self._password, "***")
        return text[:200] or type(exc).__name__

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Bound a call on the database and turn its failure into a plain :class:`StoreError`."""
        try:
            async with asyncio.timeout(self.statement_timeout + self._connect_timeout):
                yield
        except (psycopg.Error, TimeoutError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"The conversation database at {self.where} could not be used ({self._reason(exc)}). "
            "What was saved before is kept; try again when the database is back."
        )

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._pool is None or self.closed:
            raise StoreError(CLOSED)
        async with self._guard(), self._pool.connection() as conn:
            yield conn

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> builtins.list[DictRow]:
        async with self._connection() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def _run(self, query: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; the number of rows it changed."""
        async with self._connection() as conn:
            return (await conn.execute(query, params)).rowcount

    # -- conversations ---------------------------------------------------------------------------
    async def touch(self, thread_id: str, first_message: str, *, owner: str = "") -> None:
        await self._run(
            "INSERT INTO sidekick_conversations (thread_id, title, created, updated, owner) "
            "VALUES (%s, %s, extract(epoch FROM now()), extract(epoch FROM now()), %s) "
            "ON CONFLICT (thread_id) DO UPDATE SET updated = excluded.updated",
            (thread_id, title_of(first_message), owner),
        )

    async def list(self, limit: int = 50, *, owners: Sequence[str] | None = None) -> builtins.list[Conversation]:
        rows = await self._rows(
            "SELECT thread_id, title, created, updated FROM sidekick_conversations "
            "WHERE %s::text[] IS NULL OR owner = ANY(%s::text[]) ORDER BY updated DESC LIMIT %s",
            (None if owners is None else list(owners), None if owners is None else list(owners), limit),
        )
        return [
            Conversation(str(r["thread_id"]), str(r["title"]), float(r["created"]), float(r["updated"])) for r in rows
        ]

    async def exists(self, thread_id: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM sidekick_conversations WHERE thread_id = %s", (thread_id,)))

    async def owner_of(self, thread_id: str) -> str | None:
        rows = await self._rows("SELECT owner FROM sidekick_conversations WHERE thread_id = %s", (thread_id,))
        return str(rows[0]["owner"]) if rows else None

    async def delete(self, thread_id: str) -> None:
        await self._checkpoints().adelete_thread(thread_id)
        async with self._connection() as conn, conn.transaction():
            for table in ("conversations", "run_events", "leases", "browser_states"):
                await conn.execute(f"DELETE FROM sidekick_{table} WHERE thread_id = %s", (thread_id,))

    async def _idle_since(self, cutoff: float) -> builtins.list[str]:
        rows = await self._rows("SELECT thread_id FROM sidekick_conversations WHERE updated < %s", (cutoff,))
        return [str(r["thread_id"]) for r in rows]

    # -- the run record --------------------------------------------------------------------------
    async def append(self, thread_id: str, run_id: str, events: Iterable[tuple[int, float, Event]]) -> None:
        rows = [
            (
                thread_id,
                run_id,
                seq,
                at,
                event.kind,
                json.dumps(event.to_json(), ensure_ascii=False),
                event.png if isinstance(event, Screenshot) else None,
            )
            for seq, at, event in events
        ]
        if not rows:
            return
        async with self._connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO sidekick_run_events (thread_id, run_id, seq, at, kind, data, png) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (thread_id, run_id, seq) DO UPDATE SET "
                    "at = excluded.at, kind = excluded.kind, data = excluded.data, png = excluded.png",
                    rows,
                )
            if any(row[6] is not None for row in rows):
                # The budget in the same transaction: the record never holds more than it allows.
                await conn.execute(
                    "UPDATE sidekick_run_events SET png = NULL WHERE thread_id = %s AND (run_id, seq) IN ("
                    "SELECT run_id, seq FROM sidekick_run_events WHERE thread_id = %s AND png IS NOT NULL "
                    "ORDER BY at DESC, seq DESC OFFSET %s)",
                    (thread_id, thread_id, self.screenshot_budget),
                )

    async def record(self, thread_id: str, *, images: bool = True) -> builtins.list[RecordedRun]:
        png = "png" if images else "NULL::bytea AS png"
        rows = await self._rows(
            f"SELECT run_id, at, data, {png} FROM sidekick_run_events WHERE thread_id = %s ORDER BY at, run_id, seq",
            (thread_id,),
        )
        return assemble(
            (str(r["run_id"]), float(r["at"]), str(r["data"]), bytes(r["png"]) if r["png"] is not None else b"")
            for r in rows
        )

    # -- leases: the database's clock decides expiry, so servers whose clocks differ still agree -----
    async def acquire_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> bool:
        changed = await self._run(
            "INSERT INTO sidekick_leases (thread_id, owner, expires) "
            "VALUES (%s, %s, now() + make_interval(secs => %s)) "
            "ON CONFLICT (thread_id) DO UPDATE SET owner = excluded.owner, expires = excluded.expires "
            "WHERE sidekick_leases.expires < now() OR sidekick_leases.owner = excluded.owner",
            (thread_id, owner, float(ttl_seconds)),
        )
        return changed == 1

    async def renew_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> bool:
        changed = await self._run(
            "UPDATE sidekick_leases SET expires = now() + make_interval(secs => %s) "
            "WHERE thread_id = %s AND owner = %s",
            (float(ttl_seconds), thread_id, owner),
        )
        return changed == 1

    async def release_lease(self, thread_id: str, owner: str) -> None:
        await self._run("DELETE FROM sidekick_leases WHERE thread_id = %s AND owner = %s", (thread_id, owner))

    async def release_all(self, owner: str) -> None:
        await self._run("DELETE FROM sidekick_leases WHERE owner = %s", (owner,))

    async def lease_seconds_left(self, thread_id: str) -> float:
        rows = await self._rows(
            "SELECT greatest(0, extract(epoch FROM expires - now()))::float8 AS left FROM sidekick_leases "
            "WHERE thread_id = %s",
            (thread_id,),
        )
        return float(rows[0]["left"]) if rows else 0.0


    # -- browser states ----------------------------------------------------------------------------
    async def save_browser_state(self, owner: str, thread_id: str, state: BrowserState) -> None:
        await self._run(
            "INSERT INTO sidekick_browser_states (owner, thread_id, saved, state) "
            "VALUES (%s, %s, extract(epoch FROM now()), %s) ON CONFLICT (owner, thread_id) "
            "DO UPDATE SET saved = excluded.saved, state = excluded.state",
            (owner, thread_id, state.to_json()),
        )

    async def _browser_state_json(self, owner: str, thread_id: str) -> str | None:
        rows = await self._rows(
            "SELECT state FROM sidekick_browser_states WHERE owner = %s AND thread_id = %s", (owner, thread_id)
        )
        return str(rows[0]["state"]) if rows else None

    async def delete_browser_state(self, owner: str, thread_id: str) -> None:
        await self._run("DELETE FROM sidekick_browser_states WHERE owner = %s AND thread_id = %s", (owner, thread_id))

    async def _prune_browser_states(self, cutoff: float) -> None:
        await self._run(
            "DELETE FROM sidekick_browser_states s WHERE saved < %s "
            "AND NOT EXISTS (SELECT 1 FROM sidekick_conversations c WHERE c.thread_id = s.thread_id)",
            (cutoff,),
        )


async def _close_pool(pool: AsyncConnectionPool[Connection]) -> None:
    await close_quietly(pool.close(timeout=5.0), 10.0, "Closing the database pool")


class _Checkpointer(AsyncPostgresSaver):
    """LangGraph's saver over the store's pool, with the store's bounds and plain errors: the graph
    calls these, so a database lost mid-run reaches the run as a StoreError, not psycopg's own."""

    def __init__(self, pool: AsyncConnectionPool[Connection], store: PostgresStore) -> None:
        super().__init__(pool)
        self._store = store

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        if self._store.closed:
            raise StoreError(CLOSED)
        return self._store._guard()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        async with self._guard():
            return await super().aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # Errors only: a time bound would also count the time the caller spends between items.
        try:
            async for item in super().alist(config, filter=filter, before=before, limit=limit):
                yield item
        except psycopg.Error as exc:
            raise self._store._failed(exc) from exc

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        async with self._guard():
            return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        async with self._guard():
            await super().aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        async with self._guard():
            await super().adelete_thread(thread_id)
