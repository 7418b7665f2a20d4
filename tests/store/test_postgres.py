"""What only the PostgreSQL store has to get right, on a real server: versioned migrations that are
idempotent and safe when servers start together, a database down at start or lost mid-use (plain
StoreErrors naming host:port, never the password; nothing committed lost), a real agent turn on
the PostgreSQL checkpointer, and ``open_store`` choosing the backend from the settings."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph

from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.errors import ConfigError, StoreError
from sidekick.events import AnswerDelta, FinalAnswer, Finished, RunStarted, Screenshot
from sidekick.store import SqliteStore, open_store
from sidekick.store.postgres import MIGRATIONS, PostgresStore
from tests.store.test_stores import write_turn
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.postgres import Cluster, free_port
from tests.support.runs import agent_settings, open_rig, verdict


def schema(url: str) -> tuple[int, list[int], list[str]]:
    """Our schema version, LangGraph's migrations applied, and our tables."""
    with psycopg.connect(url) as conn:
        ours = conn.execute("SELECT version FROM sidekick_schema").fetchall()
        assert len(ours) == 1
        langgraph = [int(r[0]) for r in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'sidekick_%' ORDER BY tablename"
            )
        ]
    return int(ours[0][0]), langgraph, tables


TABLES = [
    "sidekick_browser_states", "sidekick_conversations", "sidekick_leases", "sidekick_run_events", "sidekick_schema"
]


# -- migrations ------------------------------------------------------------------------------------
async def test_migrations_run_once_and_a_restart_keeps_the_data(pg_url: str) -> None:
    async with PostgresStore(pg_url) as first:
        await first.touch("t", "hello")
        await write_turn(first, "t", "hello", "hi")
    version, langgraph, tables = schema(pg_url)
    assert version == len(MIGRATIONS) and tables == TABLES and langgraph == list(range(len(langgraph)))
    async with PostgresStore(pg_url) as again:  # nothing left to migrate; nothing lost
        assert schema(pg_url) == (version, langgraph, tables)
        assert [c.thread_id for c in await again.list()] == ["t"]
        assert await again.history("t") == [("user", "hello"), ("assistant", "hi")]


async def test_servers_starting_together_migrate_once_and_all_open(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    try:
        opened = await asyncio.wait_for(asyncio.gather(*(s.open() for s in stores)), 60)
        version, langgraph, tables = schema(pg_url)
        assert version == len(MIGRATIONS) and tables == TABLES and len(set(langgraph)) == len(langgraph) > 0
        await opened[0].touch("t", "from one server")
        assert all([await s.exists("t") for s in opened])
    finally:
        for s in stores:
            await s.aclose()


async def test_a_database_migrated_by_a_newer_sidekick_is_refused_plainly(pg_url: str) -> None:
    await (await PostgresStore(pg_url).open()).aclose()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE sidekick_schema SET version = version + 1")
    store = PostgresStore(pg_url)
    known = len(MIGRATIONS)
    with pytest.raises(StoreError, match=rf"set up by a newer Sidekick \(schema {known + 1}; this one knows {known}\)"):
        await store.open()
    await store.aclose()


# -- a database that is not there ------------------------------------------------------------------
async def test_a_database_down_at_start_is_a_plain_error_naming_where_never_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://sidekick:s3cret-pw@127.0.0.1:{port}/sidekick"
    began = time.monotonic()
    with pytest.raises(StoreError) as info:
        await open_store(Settings(database_url=url))
    message = str(info.value)
    assert time.monotonic() - began < 5
    assert message.startswith(f"Cannot connect to the conversation database at 127.0.0.1:{port}: ")
    assert "refused" in message.lower() and "SIDEKICK_DATABASE_URL" in message
    assert "s3cret-pw" not in message and "sidekick:" not in message and info.value.__cause__ is None


async def test_a_wrong_password_is_reported_without_the_password(own_cluster: Cluster) -> None:
    with psycopg.connect(own_cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE alice LOGIN PASSWORD 'right-pw'")
    hba = own_cluster.data / "pg_hba.conf"
    hba.write_text("host all alice 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with psycopg.connect(own_cluster.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    url = f"postgresql://alice:wrong-pw@127.0.0.1:{own_cluster.port}/postgres"
    with pytest.raises(StoreError) as info:
        await PostgresStore(url).open()
    assert "password authentication failed" in str(info.value) and "wrong-pw" not in str(info.value)


def test_a_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SIDEKICK_DATABASE_URL is not a PostgreSQL connection URL"):
        PostgresStore("postgresql://host:notaport:/x?bogus=1")


async def test_a_database_lost_mid_use_is_a_plain_store_error_and_nothing_committed_is_lost(
    own_cluster: Cluster,
) -> None:
    url = own_cluster.create_database("lost")
    async with PostgresStore(url, connect_timeout=2, statement_timeout=5) as store:
        await store.touch("t", "kept")
        await write_turn(store, "t", "kept", "saved")
        own_cluster.stop()
        started = RunStarted(run_id="r", thread_id="t", message="m", criteria="c")
        calls: list[Callable[[], Awaitable[object]]] = [
            store.list,
            lambda: store.acquire_lease("t", "a", 30),
            lambda: store.append("t", "r", [(1, 1.0, started)]),
            lambda: store.history("t"),  # the checkpointer's own call
        ]
        for call in calls:
            began = time.monotonic()
            with pytest.raises(StoreError) as info:
                await call()
            assert time.monotonic() - began < 10
            assert str(info.value).startswith(f"The conversation database at 127.0.0.1:{own_cluster.port} could not")
            assert "What was saved before is kept" in str(info.value)
        own_cluster.start()
        # The pool replaces the connections the restart broke; what was committed is all there.
        assert [c.title for c in await store.list()] == ["kept"]
        assert await store.history("t") == [("user", "kept"), ("assistant", "saved")]


async def test_a_graph_whose_database_goes_away_mid_run_raises_store_error(own_cluster: Cluster) -> None:
    url = own_cluster.create_database("midrun")
    async with PostgresStore(url, connect_timeout=2, statement_timeout=5) as store:

        async def first(state: MessagesState) -> dict[str, Any]:
            return {"messages": [AIMessage("step one")]}

        async def second(state: MessagesState) -> dict[str, Any]:
            await asyncio.to_thread(own_cluster.stop)  # the database goes away between two steps
            return {"messages": [AIMessage("step two")]}

        graph = StateGraph(MessagesState)
        graph.add_node("first", first)
        graph.add_node("second", second)
        graph.add_edge(START, "first")
        graph.add_edge("first", "second")
        compiled = graph.compile(checkpointer=store.checkpointer)
        with pytest.raises(StoreError, match="could not be used"):
            # "sync": each step's checkpoint is committed before the next step starts, so which
            # steps were committed when the server stopped is certain (the default writes them
            # alongside the next step).
            await compiled.ainvoke(
                {"messages": [("user", "go")]}, {"configurable": {"thread_id": "t"}}, durability="sync"
            )
        own_cluster.start()
        # The step that finished before the loss was committed and is still there.
        assert await store.history("t") == [("user", "go"), ("assistant", "step one")]


# -- the agent on PostgreSQL -----------------------------------------------------------------------
async def test_a_real_agent_turn_on_postgres_is_read_back_by_another_server(
    pg_url: str, tmp_path: Path, pool: BrowserPool, llm: FakeOpenAI, site: LocalSite
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("It is 4217."))
    llm.evaluator(verdict(True))
    settings = agent_settings(tmp_path / "data", llm, allow_private_network=True, database_url=pg_url)
    async with await open_store(settings) as store, open_rig(settings, pool, store=store) as rig:
        assert isinstance(store, PostgresStore)
        live = await rig.run("Secret number?", "Quotes the number")
        assert isinstance(live[-1], Finished) and live[-1].outcome == "answer"
        await rig.store.touch("t1", "Secret number?")

    async with PostgresStore(pg_url) as other_server:
        assert await other_server.history("t1") == [("user", "Secret number?"), ("assistant", "It is 4217.")]
        [run] = await other_server.record("t1")
        kept = [e for e in live if not isinstance(e, AnswerDelta)]  # streamed pieces are not recorded
        assert [type(e) for e in run.events] == [type(e) for e in kept] and run.events[:2] == kept[:2]
        assert any(isinstance(e, FinalAnswer) and e.text == "It is 4217." for e in run.events)
        [recorded_shot] = [e for e in run.events if isinstance(e, Screenshot)]
        [live_shot] = [e for e in live if isinstance(e, Screenshot)]
        assert recorded_shot.png == live_shot.png and recorded_shot.png.startswith(b"\x89PNG")
    assert not list((tmp_path / "data").rglob("*.png")) and not list((tmp_path / "data").rglob("*.sqlite"))


async def test_open_store_is_sqlite_without_a_database_url(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(data_dir=tmp_path), screenshots_per_conversation=7)
    async with await open_store(settings) as store:
        assert isinstance(store, SqliteStore) and store.path == tmp_path / "sidekick.sqlite"
        assert store.screenshot_budget == 7


async def test_commits_are_asynchronous_like_sqlites_unless_the_url_says_otherwise(pg_url: str) -> None:
    """Sidekick's sessions commit without waiting for the disk flush (SQLite's WAL + NORMAL
    durability); a URL naming synchronous_commit in its options keeps the server's way."""

    async def setting(url: str) -> str:
        async with PostgresStore(url) as store:
            assert store._pool is not None  # the store's own connections, as its checkpointer gets them
            async with store._pool.connection() as conn:
                row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        assert row is not None
        return str(row["synchronous_commit"])

    assert await setting(pg_url) == "off"
    separator = "&" if "?" in pg_url else "?"
    assert await setting(f"{pg_url}{separator}options=-c%20synchronous_commit%3Don") == "on"
