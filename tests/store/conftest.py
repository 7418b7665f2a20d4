"""Stores on both backends, for tests that must behave the same on each.

PostgreSQL runs for real: one throwaway cluster for the test session (``tests.support.postgres``),
a fresh database per test. Without Debian's server binaries the PostgreSQL cases skip, saying how to
install them; that is the only reason they skip.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidekick.store import BaseStore, SqliteStore
from sidekick.store.postgres import PostgresStore
from tests.support.postgres import Cluster, cluster_or_skip

MakeStore = Callable[..., Awaitable[BaseStore]]
"""The ``stores`` fixture: ``await make(screenshot_budget=…)``, another server on the same data
(``opened=False``: not opened yet)."""

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with cluster_or_skip() as running:
        yield running


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster for this test alone: one it may stop and start."""
    with cluster_or_skip() as running:
        yield running


@pytest.fixture
def pg_url(cluster: Cluster) -> str:
    """A new empty database on the session's cluster."""
    return cluster.create_database(f"test_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def stores(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """Opens stores on one shared data place (a SQLite file, or one PostgreSQL database): each call
    is another server. Every store it opened is closed at the end, even when the test fails."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    made: list[BaseStore] = []

    async def make(*, opened: bool = True, **options: Any) -> BaseStore:
        store: BaseStore = (
            PostgresStore(url, **options) if url else SqliteStore(tmp_path / "data" / "sidekick.sqlite", **options)
        )
        made.append(store)
        return await store.open() if opened else store

    try:
        yield make
    finally:
        for store in reversed(made):
            await store.aclose()


@pytest.fixture
async def store(stores: MakeStore) -> BaseStore:
    return await stores()
