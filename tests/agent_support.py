"""The agent on one loop, as several test modules use it: real HTTP to the fake model, real Chromium,
a real SQLite file. The fixtures live in ``conftest.py``; these are the helpers they share."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from sidekick.agent import Agent, RunHandle
from sidekick.config import Settings
from sidekick.events import Event, Finished
from sidekick.models import Models
from sidekick.sessions import Session
from sidekick.store import Store
from tests.fakes.openai_server import Reply


def verdict(met: bool | list[bool], feedback: str = "ok", needs_user: bool = False) -> Reply:
    mets = met if isinstance(met, list) else [met]
    return Reply.json(
        {
            "checks": [{"criterion": f"c{i}", "met": m, "evidence": f"evidence {i}"} for i, m in enumerate(mets)],
            "success_criteria_met": all(mets),
            "user_input_needed": needs_user,
            "feedback": feedback,
        }
    )


@dataclasses.dataclass
class Rig:
    settings: Settings
    store: Store
    models: Models
    session: Session
    agent: Agent

    async def run(self, message: str, criteria: str = "The answer is clear", thread: str = "t1") -> list[Event]:
        return await collect(await self.agent.start(message, criteria, thread))


async def collect(handle: RunHandle, timeout: float = 30.0) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while not events or not isinstance(events[-1], Finished):
            events.extend(handle.drain())
            await asyncio.sleep(0.01)
    return events


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]
