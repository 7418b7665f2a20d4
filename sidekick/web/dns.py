"""Host-name lookups for the web policy: cached, shared while under way, and bounded.

Answers are cached per name for ``cache_seconds`` (failures for 2 s), and lookups of a name already
under way are shared, so a page with 200 sub-resources costs one lookup. Only addresses are cached,
never verdicts, so a new policy applies from the next request on.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

from sidekick.web.policy import Resolver, default_resolver

_FAILED_LOOKUP_SECONDS = 2.0
_MAX_CACHED_NAMES = 1024


@dataclass
class _Lookup:
    task: asyncio.Task[list[str]]
    expires: float = float("inf")  # set when the lookup finishes


class DnsCache:
    """Resolves names with ``resolve``, each lookup bounded by ``timeout``. Use it on one event loop."""

    def __init__(self, resolve: Resolver | None = None, *, cache_seconds: float = 30.0, timeout: float = 3.0) -> None:
        self._resolve = resolve or default_resolver
        self._cache_seconds = cache_seconds
        self.timeout = timeout
        self._lookups: dict[str, _Lookup] = {}

    async def lookup(self, name: str) -> list[str]:
        entry = self._lookups.get(name)
        if entry is None or entry.expires <= time.monotonic():
            if len(self._lookups) >= _MAX_CACHED_NAMES:
                self._forget_expired()
            entry = _Lookup(asyncio.get_running_loop().create_task(self._resolve_now(name)))
            self._lookups[name] = entry
            entry.task.add_done_callback(functools.partial(self._settle, entry))
        # Shielded: a caller that gives up must not cancel the lookup others are waiting for.
        task = entry.task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current and current.cancelling()):
                raise OSError(f"the lookup of {name} was cancelled (the guard closed)") from None
            raise

    def pending(self) -> list[asyncio.Task[list[str]]]:
        return [entry.task for entry in self._lookups.values() if not entry.task.done()]

    def cancel(self) -> None:
        """Cancel lookups under way and forget every answer (the owner is closing)."""
        for task in self.pending():
            task.cancel()
        self._lookups.clear()

    async def _resolve_now(self, name: str) -> list[str]:
        async with asyncio.timeout(self.timeout):
            return await self._resolve(name)

    def _settle(self, entry: _Lookup, _task: asyncio.Task[list[str]]) -> None:
        failed = entry.task.cancelled() or entry.task.exception() is not None  # also marks it retrieved
        entry.expires = time.monotonic() + (_FAILED_LOOKUP_SECONDS if failed else self._cache_seconds)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for name, entry in list(self._lookups.items()):
            if entry.expires <= now:
                del self._lookups[name]
        while len(self._lookups) >= _MAX_CACHED_NAMES:  # all fresh: drop the oldest
            del self._lookups[next(iter(self._lookups))]
