"""Where conversations live: their checkpoints, the sidebar's index, the run record and run leases.

:func:`open_store` picks the backend from the settings: PostgreSQL when ``SIDEKICK_DATABASE_URL`` is
set (:mod:`sidekick.store.postgres`, for a team running several servers), else one SQLite file under
``SIDEKICK_DATA_DIR`` (:mod:`sidekick.store.sqlite`, the embedded default). Both implement
:class:`BaseStore` (:mod:`sidekick.store.base`), so callers never ask which one they have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidekick.store.base import (
    INTERRUPTED,
    TITLE_CHARS,
    BaseStore,
    Conversation,
    LeaseHeldError,
    RecordedRun,
    turn_of,
)
from sidekick.store.sqlite import SqliteStore, Store

if TYPE_CHECKING:
    from sidekick.config import Settings

__all__ = [
    "INTERRUPTED",
    "TITLE_CHARS",
    "BaseStore",
    "Conversation",
    "LeaseHeldError",
    "RecordedRun",
    "SqliteStore",
    "Store",
    "open_store",
    "turn_of",
]


async def open_store(settings: Settings) -> BaseStore:
    """The store the settings ask for, open. Raises StoreError (PostgreSQL unreachable, with its
    host:port) or ConfigError (a malformed URL)."""
    budget = settings.screenshots_per_conversation
    if settings.database_url:
        # Imported here: a SQLite-only process never loads psycopg.
        from sidekick.store.postgres import PostgresStore

        return await PostgresStore(settings.database_url, screenshot_budget=budget).open()
    return await SqliteStore(settings.data_dir / "sidekick.sqlite", screenshot_budget=budget).open()
