"""What every conversation store does, whatever keeps it: the shared types, the pure logic (titles,
assembling the run record, turns) and :class:`BaseStore`, the interface callers use.

A store is new, then open, then closed (``aclose`` is idempotent; a closed store is never reopened).
Every method of a closed or never-opened store raises :class:`~sidekick.errors.StoreError`.

Besides conversations, a store keeps each conversation's browser state
(:class:`~sidekick.browser.state.BrowserState`: cookies, local storage, the page's URL) per owner, so
the conversation's browser comes back signed in after idle, a crash, a restart or on another server.
It goes with its conversation (``delete``, ``prune``); states of conversations that never had a turn
are pruned by the time they were saved.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from langgraph.checkpoint.base import BaseCheckpointSaver

from sidekick.browser.state import BrowserState
from sidekick.errors import SidekickError, StoreError
from sidekick.events import ErrorEvent, Event, Finished, RunStarted, from_json
from sidekick.transcript import Transcript, transcript

TITLE_CHARS = 60
INTERRUPTED = "This turn was interrupted: Sidekick stopped before it finished. Its finished steps are kept."
CLOSED = "The conversation store is closed; restart Sidekick to continue."


class LeaseHeldError(SidekickError):
    """The conversation is running on another server (another replica holds its lease)."""

    def __init__(self, seconds_left: float) -> None:
        self.seconds_left = max(1, math.ceil(seconds_left))
        super().__init__(
            "This conversation is running on another Sidekick server; "
            f"try again when it finishes (at most {self.seconds_left} s)."
        )


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


def title_of(first_message: str) -> str:
    return " ".join(first_message.split())[:TITLE_CHARS] or "Untitled"


def assemble(rows: Iterable[tuple[str, float, str, bytes]]) -> list[RecordedRun]:
    """The runs from record rows ``(run_id, at, event JSON, png)`` in order. A run that never
    finished (the server stopped) ends with an error saying so."""
    runs: dict[str, RecordedRun] = {}
    for run_id, at, data, png in rows:
        run = runs.setdefault(run_id, RecordedRun(run_id))
        run.events.append(from_json(json.loads(data), png))
        run.times.append(at)
    for run in runs.values():
        if not isinstance(run.events[-1], Finished):
            at = run.times[-1]
            run.events += [
                ErrorEvent(message=INTERRUPTED, category="internal"),
                Finished(outcome="error", seconds=at - run.times[0], model_calls=0, tokens=0),
            ]
            run.times += [at, at]
    return list(runs.values())


class BaseStore(abc.ABC):
    """Conversations, their checkpoints, the run record and run leases.

    ``checkpointer`` is what the graph compiles with; it is set by ``open``. Leases make a
    conversation run on one server at a time: a row per running conversation with its owner and an
    expiry, so a server that dies without releasing its leases loses them when they expire.
    """

    checkpointer: BaseCheckpointSaver[Any] | None

    def __init__(self, *, screenshot_budget: int) -> None:
        self.screenshot_budget = screenshot_budget
        self.checkpointer = None
        self.closed = False
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        # `async with await open_store(...)` hands over a store that is open already.
        return self if self.checkpointer is not None else await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> Self:
        """Open what the backend needs (kept only once all of it opened) and set the checkpointer."""
        if self.closed:
            raise StoreError(CLOSED)
        async with contextlib.AsyncExitStack() as stack:
            checkpointer = await self._open(stack)
            self.checkpointer = checkpointer
            self._stack = stack.pop_all()
        return self

    @abc.abstractmethod
    async def _open(self, stack: contextlib.AsyncExitStack) -> BaseCheckpointSaver[Any]:
        """Open the backend, pushing its closing onto ``stack``; the checkpointer over it."""

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._stack.aclose()

    def _checkpoints(self) -> BaseCheckpointSaver[Any]:
        if self.checkpointer is None or self.closed:
            raise StoreError(CLOSED)
        return self.checkpointer

    # -- conversations ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def touch(self, thread_id: str, first_message: str, *, owner: str = "") -> None:
        """Record activity on a thread; its title comes from its first message, its owner from the
        first touch (later ones keep both)."""

    @abc.abstractmethod
    async def list(self, limit: int = 50, *, owners: Sequence[str] | None = None) -> builtins.list[Conversation]:
        """Conversations, the most recently active first; only those of ``owners`` when given."""

    @abc.abstractmethod
    async def exists(self, thread_id: str) -> bool: ...

    @abc.abstractmethod
    async def owner_of(self, thread_id: str) -> str | None:
        """Whose conversation it is ("" from before conversations had owners); None if there is none."""

    @abc.abstractmethod
    async def delete(self, thread_id: str) -> None:
        """The conversation, its checkpoints, its record (screenshots too), its lease and its
        browser states."""

    @abc.abstractmethod
    async def _idle_since(self, cutoff: float) -> builtins.list[str]:
        """Threads not updated since ``cutoff`` (seconds since the epoch)."""

    async def history(self, thread_id: str) -> Transcript:
        """The conversation's text as (role, text), read from its latest checkpoint: no session,
        runner or model needed."""
        found = await self._checkpoints().aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        if found is None:
            return []
        return transcript(found.checkpoint.get("channel_values", {}).get("messages", []))

    async def prune(self, keep_days: float, now: float | None = None) -> builtins.list[str]:
        """Delete conversations not updated for ``keep_days`` (with everything of theirs, see
        ``delete``) and browser states of no conversation not saved for as long; returns the
        conversations' ids."""
        cutoff = (time.time() if now is None else now) - keep_days * 86_400
        old = await self._idle_since(cutoff)
        for thread_id in old:
            await self.delete(thread_id)
        await self._prune_browser_states(cutoff)
        return old

    # -- browser states ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def save_browser_state(self, owner: str, thread_id: str, state: BrowserState) -> None:
        """Keep ``state`` as the browser state of ``owner``'s conversation (replacing the last)."""

    async def browser_state(self, owner: str, thread_id: str) -> BrowserState | None:
        """The state last saved for ``owner``'s conversation; None if none (or it is unreadable)."""
        text = await self._browser_state_json(owner, thread_id)
        if text is None:
            return None
        try:
            return BrowserState.from_json(text)
        except ValueError:
            return None

    @abc.abstractmethod
    async def _browser_state_json(self, owner: str, thread_id: str) -> str | None: ...

    @abc.abstractmethod
    async def delete_browser_state(self, owner: str, thread_id: str) -> None:
        """Forget the browser state of ``owner``'s conversation (Reset)."""

    @abc.abstractmethod
    async def _prune_browser_states(self, cutoff: float) -> None:
        """Delete browser states saved before ``cutoff`` (seconds since the epoch) whose conversation
        does not exist (it never had a turn): the others go with their conversation."""

    # -- the run record --------------------------------------------------------------------------
    @abc.abstractmethod
    async def append(self, thread_id: str, run_id: str, events: Iterable[tuple[int, float, Event]]) -> None:
        """Add events ``(seq, at, event)`` of a run to the record in one transaction; a conversation
        keeps at most ``screenshot_budget`` screenshots, the oldest go first (their steps stay)."""

    @abc.abstractmethod
    async def record(self, thread_id: str, *, images: bool = True) -> builtins.list[RecordedRun]:
        """Every run of the thread as recorded, oldest first (see :func:`assemble`). Screenshots
        whose image is gone keep their place, with no image; ``images=False`` reads none."""

    # -- leases ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def acquire_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> bool:
        """Take the thread's lease for ``ttl_seconds`` if it is free, expired or already ``owner``'s
        (then it is extended). True when ``owner`` holds it. Atomic across servers."""

    @abc.abstractmethod
    async def renew_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> bool:
        """Extend ``owner``'s lease to ``ttl_seconds`` from now; False if ``owner`` no longer holds it."""

    @abc.abstractmethod
    async def release_lease(self, thread_id: str, owner: str) -> None:
        """Give the lease up (only ``owner``'s: someone else's is left alone)."""

    @abc.abstractmethod
    async def release_all(self, owner: str) -> None:
        """Give up every lease ``owner`` holds: a server shutting down."""

    @abc.abstractmethod
    async def lease_seconds_left(self, thread_id: str) -> float:
        """Seconds until the thread's lease expires, whoever holds it; 0 when there is none."""

    async def claim_lease(self, thread_id: str, owner: str, ttl_seconds: float) -> None:
        """:meth:`acquire_lease`, raising :class:`LeaseHeldError` (with the time left) when
        another owner holds it."""
        if not await self.acquire_lease(thread_id, owner, ttl_seconds):
            raise LeaseHeldError(await self.lease_seconds_left(thread_id))
