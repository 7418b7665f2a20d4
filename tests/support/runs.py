"""A session and its runner on real parts, for tests and benchmarks alike: real HTTP to the fake
model, real Chromium through a shared pool, a real SQLite file (or a store the caller opened).

:func:`open_rig` acquires everything under one ``AsyncExitStack``, so whatever a test does, its
store, models and session are closed when the ``async with`` ends, failure or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph

from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.events import Event, Finished
from sidekick.models import Models
from sidekick.runs import RunHandle, Runner
from sidekick.sessions import Session, SessionDeps, SessionRegistry
from sidekick.store import BaseStore, Store
from tests.support.fakes.openai_server import FakeOpenAI, Reply

MakeRegistry = Callable[..., SessionRegistry]
"""The ``registries`` fixture: ``make(idle_seconds=…, grace_seconds=…, is_active=…)``."""


def verdict(met: bool | list[bool], feedback: str = "ok", needs_user: bool = False) -> Reply:
    """The evaluator's structured reply: one check per criterion."""
    mets = met if isinstance(met, list) else [met]
    return Reply.json(
        {
            "checks": [{"criterion": f"c{i}", "met": m, "evidence": f"evidence {i}"} for i, m in enumerate(mets)],
            "success_criteria_met": all(mets),
            "user_input_needed": needs_user,
            "feedback": feedback,
        }
    )


def agent_settings(data_dir: Path, llm: FakeOpenAI, **overrides: Any) -> Settings:
    """Settings for an agent against the fake model: no retries, short budgets."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "openai_base_url": llm.base_url,
        "openai_api_key": "test",
        "model_retries": 0,
        "model_timeout_seconds": 5,
        "tool_timeout_seconds": 5,
    }
    return Settings(**{**values, **overrides})


@dataclasses.dataclass
class Rig:
    settings: Settings
    store: BaseStore
    models: Models
    session: Session

    @property
    def runner(self) -> Runner:
        return self.session.runner

    async def run(self, message: str, criteria: str = "The answer is clear", thread: str = "t1") -> list[Event]:
        return await collect(await self.runner.start(message, criteria, thread))


@contextlib.asynccontextmanager
async def open_rig(
    settings: Settings, pool: BrowserPool, name: str = "s1", *, store: BaseStore | None = None
) -> AsyncIterator[Rig]:
    """A store, models and a session (with its runner) on ``pool``, closed in reverse on exit.
    ``store``: an open store to run on instead of a SQLite file in the data folder (its opener
    closes it)."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await Store(settings.data_dir / "sidekick.sqlite").open()
            stack.push_async_callback(store.aclose)
        models = Models(settings)
        stack.push_async_callback(models.aclose)
        session = Session(name, SessionDeps(settings=settings, pool=pool, store=store, models=models))
        stack.push_async_callback(session.aclose)
        yield Rig(settings, store, models, session)


async def collect(handle: RunHandle, timeout: float = 30.0) -> list[Event]:
    """Every event of a run, up to and including ``Finished``."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while not events or not isinstance(events[-1], Finished):
            events.extend(handle.drain())
            await asyncio.sleep(0.01)
    return events


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]

async def write_turn(store: BaseStore, thread_id: str, user: str, reply: str) -> None:
    """One real graph step on the store's checkpointer: the user's message, a tool call the
    transcript must skip, and a reply."""

    def answer(state: MessagesState) -> dict[str, Any]:
        call = AIMessage("", tool_calls=[{"id": f"c-{len(state['messages'])}", "name": "read_page", "args": {}}])
        return {"messages": [call, AIMessage(reply)]}

    graph = StateGraph(MessagesState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    compiled = graph.compile(checkpointer=store.checkpointer)
    await compiled.ainvoke({"messages": [("user", user)]}, {"configurable": {"thread_id": thread_id}})
