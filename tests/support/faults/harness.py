"""What a fault scenario works with: the shared live pool, rigs and facades on it, and the checks.

Everything is real except the model: one live :class:`~sidekick.browser.BrowserPool` with real
Chromium, the graph and LangGraph's SQLite checkpointer, langchain-openai over real HTTP to the fake
model, and the local site. A scenario injects its fault, checks it ended in a clear message with
:func:`expect`, then runs a normal turn on the same thread (:func:`recover`, or :func:`facade_turn`
through the facade). It recovered when that turn answered and its first request to the model
carried a valid history: every assistant tool call followed by its tool result (a real OpenAI server
rejects a thread with a dangling tool call, every turn, for good).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.errors import SidekickError
from sidekick.events import ErrorEvent, Event, FinalAnswer, Finished, ToolResult
from sidekick.facade import Sidekick
from sidekick.runs import RunHandle
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import Rig, agent_settings, collect, of, open_rig, verdict

RUN_TIMEOUT = 60.0  # seconds for one turn; a hang is a failure, not a data point
CRITERIA = "The answer is clear"
RECOVERED = "Still here, and working."
REMEMBERED = "My name is Ada."


class ScenarioFailed(Exception):
    """The fault did not end as promised; ``str()`` says how."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise ScenarioFailed(message)


# -- what a scenario gets and gives back -----------------------------------------------------------
@dataclass
class Env:
    """The live pool, the fake model and the site that every scenario shares."""

    llm: FakeOpenAI
    site: LocalSite
    pool: BrowserPool
    workdir: Path
    must_exit: set[int] = field(default_factory=set)  # processes of a Chromium a scenario killed
    pool_driver: int | None = None  # the live pool's Playwright driver, once seen

    def note_pool(self) -> None:
        """Remember the pool's driver, so it is never counted as a leak while Chromium is down."""
        pid = self.pool.browser_pid
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                self.pool_driver = psutil.Process(pid).ppid()


@contextlib.asynccontextmanager
async def open_env() -> AsyncIterator[Env]:
    """A temporary folder, the fake model, the local site and a warm live pool, closed in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sidekick-faults-")))
        llm = stack.enter_context(FakeOpenAI())
        site = stack.enter_context(LocalSite())
        pool = BrowserPool(Settings(data_dir=workdir, allow_private_network=True))
        stack.push_async_callback(pool.aclose)
        await pool.warm()
        env = Env(llm=llm, site=site, pool=pool, workdir=workdir)
        env.note_pool()
        yield env


@dataclass(frozen=True)
class Outcome:
    """How a scenario's fault ended: the clear message, when it struck and when a run worked again."""

    message: str
    fault_at: float
    recovered_at: float


Fault = Callable[[Env], Awaitable[Outcome]]


@dataclass(frozen=True)
class Scenario:
    """One fault and the message it must end in: each fragment of ``says`` appears in it."""

    name: str
    fault: Fault
    says: tuple[str, ...]


def subtree(pid: int) -> set[int]:
    """``pid`` and its descendants, as far as they are still there."""
    try:
        proc = psutil.Process(pid)
        return {pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return set()


# -- events and histories ---------------------------------------------------------------------------
def describe(events: Sequence[Event]) -> str:
    """A run in one line, for failure messages."""
    parts = []
    for e in events:
        if isinstance(e, ToolResult):
            parts.append(f"tool_result({e.name}, ok={e.ok}: {e.output[:120]!r})")
        elif isinstance(e, ErrorEvent):
            parts.append(f"error({e.category}: {e.message[:160]!r})")
        elif isinstance(e, FinalAnswer):
            parts.append(f"answer({e.text[:80]!r})")
        elif isinstance(e, Finished):
            parts.append(f"finished({e.outcome})")
        else:
            parts.append(e.kind)
    return ", ".join(parts) or "(no events)"


def history_problems(messages: Sequence[dict[str, Any]]) -> list[str]:
    """What a real OpenAI server would reject in a request's messages: an assistant tool call without
    its tool result right after, or a tool result answering no call."""
    problems: list[str] = []
    pending: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        if role == "tool":
            call_id = str(m.get("tool_call_id"))
            if pending.pop(call_id, None) is None:
                problems.append(f"tool result {call_id} answers no assistant tool call")
            continue
        problems.extend(f"assistant tool call {cid} ({name}) has no tool result" for cid, name in pending.items())
        pending = {}
        if role == "assistant":
            for call in m.get("tool_calls") or []:
                pending[str(call.get("id"))] = str((call.get("function") or {}).get("name"))
    problems.extend(f"assistant tool call {cid} ({name}) has no tool result" for cid, name in pending.items())
    return problems


def check_request(request: dict[str, Any], *, present: Sequence[str] = (), absent: Sequence[str] = ()) -> None:
    """The turn's first model request: a valid history, holding what was said and not what was refused."""
    messages = request.get("messages", [])
    problems = history_problems(messages)
    expect(not problems, "the next run's history is invalid: " + "; ".join(problems))
    said = [m.get("content") for m in messages if m.get("role") == "user"]
    for text in present:
        expect(text in said, f"the thread lost {text[:40]!r}")
    for text in absent:
        expect(not any(text[:200] in str(s) for s in said), f"a refused message reached the thread: {text[:40]!r}")


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "tool"]


# -- an agent on the live pool, as a dashboard session has one ------------------------------------
def settings_for(env: Env, **overrides: Any) -> Settings:
    """Agent settings against the fake model, in a data folder of their own under the scenario's."""
    data_dir = Path(tempfile.mkdtemp(prefix="run-", dir=env.workdir))
    return agent_settings(data_dir, env.llm, **{"allow_private_network": True, **overrides})


@contextlib.asynccontextmanager
async def agent_rig(env: Env, **overrides: Any) -> AsyncIterator[Rig]:
    """Store, models and a session on the live pool with its runner; closed in reverse order."""
    async with open_rig(settings_for(env, **overrides), env.pool) as rig:
        yield rig


async def finish(handle: RunHandle) -> list[Event]:
    """Every event of a run; a run that outlasts RUN_TIMEOUT fails the scenario."""
    try:
        return await collect(handle, RUN_TIMEOUT)
    except TimeoutError:
        raise ScenarioFailed(f"the run did not finish within {RUN_TIMEOUT:g} s") from None


async def turn(rig: Rig, message: str, thread: str = "t1") -> list[Event]:
    return await finish(await rig.runner.start(message, CRITERIA, thread))


async def recover(env: Env, rig: Rig, thread: str = "t1", *, browse: bool = False) -> float:
    """A normal turn on the same thread (with ``browse``, one that opens a page); its end time."""
    env.llm.reset()  # nothing scripted for the fault may answer this turn
    if browse:
        env.llm.worker(Reply.tool_call("navigate", {"url": env.site.url("/about")}), Reply.text(RECOVERED))
    else:
        env.llm.worker(Reply.text(RECOVERED))
    env.llm.evaluator(verdict(True))
    events = await turn(rig, "Are you still there?", thread)
    done = time.monotonic()
    answers = of(events, FinalAnswer)
    expect(answers and answers[0].text == RECOVERED, f"the next run did not answer: {describe(events)}")
    if browse:
        results = of(events, ToolResult)
        expect(
            results and results[0].ok and "4217" in results[0].output,
            f"the next run could not browse: {describe(events)}",
        )
    expect(env.llm.requests, "the next run never asked the model")
    check_request(env.llm.requests[0])
    env.note_pool()
    return done


# -- the facade: its own loop thread and pool, sync calls -------------------------------------------
@contextlib.contextmanager
def facade(env: Env, base_url: str | None = None) -> Iterator[Sidekick]:
    """A started facade against the fake model (or ``base_url``), closed on exit."""
    overrides = {} if base_url is None else {"openai_base_url": base_url}
    sk = Sidekick(settings_for(env, **overrides)).start(warm=False)
    try:
        yield sk
    finally:
        sk.close()


def wait_finished(handle: RunHandle) -> list[Event]:
    """Every event of a run started through the facade, from this (non-loop) thread."""
    try:
        return list(handle.iter_events(deadline=time.monotonic() + RUN_TIMEOUT))
    except TimeoutError:
        raise ScenarioFailed(f"the run did not finish within {RUN_TIMEOUT:g} s") from None


def facade_turn(
    env: Env, sk: Sidekick, message: str, *, thread: str = "t1", answer: str = RECOVERED,
    present: Sequence[str] = (), absent: Sequence[str] = (),
) -> tuple[list[Event], float]:
    """A normal turn through the facade: it answers, and its history is valid."""
    env.llm.reset()
    env.llm.worker(Reply.text(answer))
    env.llm.evaluator(verdict(True))
    events = wait_finished(sk.start_run("tab-1", message, CRITERIA, thread))
    done = time.monotonic()
    answers = of(events, FinalAnswer)
    expect(answers and answers[0].text == answer, f"the run did not answer: {describe(events)}")
    expect(env.llm.requests, "the run never asked the model")
    check_request(env.llm.requests[0], present=present, absent=absent)
    return events, done


def refused(call: Callable[[], object]) -> str:
    """The message of the SidekickError ``call`` raised; anything else fails the scenario."""
    try:
        call()
    except SidekickError as exc:
        message = str(exc)
        expect("Traceback" not in message, "a traceback reached the user")
        return message
    raise ScenarioFailed("accepted, though it should have been refused")
