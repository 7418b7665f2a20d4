"""What the graph's nodes get for one run: LangGraph's ``Runtime.context`` (``context_schema``).

A :class:`RunContext` is built once per run by the session's runner and handed to
``graph.astream(..., context=...)``; nodes read it as ``runtime.context``. Nothing in it is read
through a lambda or reassigned while the run goes on, so a node can never see another run's events,
counters or screenshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

from sidekick.events import AnswerDelta, Event, Finished, Screenshot


@dataclass
class RunStats:
    model_calls: int = 0
    tokens: int = 0

    def add(self, message: BaseMessage | None) -> None:
        self.model_calls += 1
        usage = getattr(message, "usage_metadata", None) or {}
        self.tokens += int(usage.get("total_tokens", 0))


@dataclass
class RunContext:
    """One run's event sink, counters and the latest screenshot of the session's browser."""

    put: Callable[[Event], None]
    """Delivers an event to whoever follows the run (the dashboard's tab or the CLI)."""
    record: Callable[[Event], None] = lambda event: None
    """Keeps the event in the run record (the store), as it happens."""
    screen: Screenshot | None = None
    """The newest screenshot this run has seen (or carried over from the thread's last run)."""
    capture: Callable[[], Awaitable[Screenshot | None]] | None = None
    """Takes a screenshot of the session's browser (None when it cannot: no browser, a dialog)."""
    browser_used: bool = False
    """A tool used the browser since the last screenshot: the step ends with one."""
    stats: RunStats = field(default_factory=RunStats)
    finished: Finished | None = None
    """The run's last event, kept until the record is written, then delivered."""

    capturing: set[asyncio.Task[None]] = field(default_factory=set)
    """Step screenshots being taken off the step's critical path (see ``step_screenshot``)."""

    async def step_screenshot(self, *, wait: bool) -> None:
        """At the end of a step that used the browser, one screenshot for the run record; the live
        view showed the actions themselves as they happened. ``wait`` (vision: the model's next
        request shows it) takes it now; otherwise the next step goes on while it is taken, and
        :meth:`settle` waits for it before the run ends."""
        if not self.browser_used or self.capture is None:
            return
        self.browser_used = False
        if wait:
            await self._take(self.capture)
            return
        task = asyncio.get_running_loop().create_task(self._take(self.capture), name="sidekick-step-screenshot")
        self.capturing.add(task)
        task.add_done_callback(self.capturing.discard)

    async def _take(self, capture: Callable[[], Awaitable[Screenshot | None]]) -> None:
        shot = await capture()
        if shot is not None:
            self.emit(shot)

    async def settle(self, timeout: float) -> None:
        """Let the step screenshots still being taken finish (bounded), so the record has them."""
        pending = list(self.capturing)
        if not pending:
            return
        try:
            await asyncio.wait(pending, timeout=timeout)
        finally:
            for task in pending:
                task.cancel()

    def emit(self, event: Event) -> None:
        if isinstance(event, Screenshot):
            self.screen = event
            self.browser_used = False
        if not isinstance(event, AnswerDelta):  # the whole reply is recorded, not its pieces
            self.record(event)
        self.put(event)
