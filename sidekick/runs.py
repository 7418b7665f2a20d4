"""One session's runs: start, resume after an approval, stream events, cancel, one at a time.

:class:`Runner` runs the graph on the loop thread as an asyncio task and puts typed events on a
thread-safe queue (:class:`RunHandle`) that the dashboard's script thread, or the CLI, drains. Every
run ends with exactly one outcome event and then ``Finished``, whatever happens: answer, question,
approval pause, model error, timeout, budget spent or cancellation. After a cancellation or failure,
tool calls left without a result get one saying so, so the thread stays valid for the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.errors import GraphRecursionError
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from sidekick import events as ev
from sidekick.agent import prompts
from sidekick.agent.context import RunContext
from sidekick.agent.graph import build_graph
from sidekick.agent.state import State, TurnInput
from sidekick.closing import close_quietly
from sidekick.config import Settings
from sidekick.errors import ConfigError, ModelError, RunInProgressError, SidekickError
from sidekick.models import Models, explain_model_error
from sidekick.store import BaseStore
from sidekick.tools.base import BrowserGetter, ToolContext

if TYPE_CHECKING:
    from sidekick.browser.context import SessionBrowser
from sidekick.tools.registry import build_tools
from sidekick.transcript import text_of

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 20_000
MAX_CRITERIA_CHARS = 2_000
Graph = CompiledStateGraph[State, RunContext, TurnInput, State]
REPAIR_SECONDS = 5.0
# A cancelled run repairs its thread, then writes its record: wait for both, each bounded.
CANCEL_SECONDS = 2 * REPAIR_SECONDS + 10.0
STEP_SHOT_SECONDS = 3.0
INTERRUPTED = "Not run: the turn ended (stopped, failed or timed out) before this tool call finished."


@dataclass
class RunHandle:
    """A run's events, for a thread outside the loop. ``done`` is set after ``Finished``."""

    run_id: str
    thread_id: str
    events: queue.Queue[ev.Event] = field(default_factory=queue.Queue)
    done: threading.Event = field(default_factory=threading.Event)

    def drain(self, timeout: float = 0.0) -> list[ev.Event]:
        """Every event queued now; waits up to ``timeout`` for the first one."""
        out: list[ev.Event] = []
        try:
            out.append(self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait())
            while True:
                out.append(self.events.get_nowait())
        except queue.Empty:
            pass
        return out

    def iter_events(self, poll: float = 0.1, deadline: float | None = None) -> Iterator[ev.Event]:
        """Events as they come, until ``Finished``; TimeoutError past ``deadline`` (``time.monotonic``)."""
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("no Finished event before the deadline")
            for event in self.drain(timeout=poll):
                yield event
                if isinstance(event, ev.Finished):
                    return


class Recorder:
    """Writes one run's events to the run record as they happen, a batch at a time, so a server
    killed mid-run loses at most the step in flight. Owned by the run: ``async with`` starts the
    writer and, on exit, writes what is left (bounded). A failing store never fails the run."""

    def __init__(self, store: BaseStore, thread_id: str, run_id: str, *, flush_seconds: float = 10.0) -> None:
        self._store = store
        self._thread_id = thread_id
        self._run_id = run_id
        self._flush_seconds = flush_seconds
        self._queue: asyncio.Queue[tuple[int, float, ev.Event] | None] = asyncio.Queue()
        self._seq = 0
        self._writer: asyncio.Task[None] | None = None

    def add(self, event: ev.Event) -> None:
        self._seq += 1
        self._queue.put_nowait((self._seq, time.time(), event))

    async def __aenter__(self) -> Recorder:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"sidekick-record-{self._run_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue.put_nowait(None)
        writer = self._writer
        if writer is None:
            return
        try:
            done, _ = await asyncio.wait([writer], timeout=self._flush_seconds)
        except asyncio.CancelledError:
            # A Stop or a close landed now: the run's last events are still written (bounded) before
            # the cancellation goes on, so whoever closes the store next finds the writer done.
            done, _ = await asyncio.wait([writer], timeout=self._flush_seconds)
            if not done:
                writer.cancel()
            raise
        if not done:
            writer.cancel()
            log.warning("The record of run %s was not written within %g s", self._run_id, self._flush_seconds)

    async def _write(self) -> None:
        finished = False
        while not finished:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            finished = batch[-1] is None
            events = [item for item in batch if item is not None]
            if not events:
                continue
            try:
                await self._store.append(self._thread_id, self._run_id, events)
            except Exception:  # the record is kept on a best-effort basis; the run goes on
                log.exception("Could not record events of run %s", self._run_id)


def check_message(message: str, criteria: str) -> tuple[str, str]:
    """Clean a user's message and criteria, or raise a clear error. Nothing is lost: the caller
    keeps the text, so the person can edit and resend it."""
    cleaned = _printable(message).strip()
    if not cleaned:
        raise SidekickError("Type a message first.")
    if len(cleaned) > MAX_MESSAGE_CHARS:
        raise SidekickError(
            f"That message is {len(cleaned):,} characters; the limit is {MAX_MESSAGE_CHARS:,}. "
            "Shorten it or put the long part in a file."
        )
    crit = _printable(criteria).strip() or prompts.DEFAULT_CRITERIA
    if len(crit) > MAX_CRITERIA_CHARS:
        raise SidekickError(
            f"The success criteria are {len(crit):,} characters; keep them under {MAX_CRITERIA_CHARS:,}."
        )
    return cleaned, crit


def _printable(text: str) -> str:
    """Drop control characters (keeping newlines and tabs): they confuse models and terminals."""
    return "".join(c for c in text if c in "\n\t" or (ord(c) >= 32 and c != "\x7f"))


@dataclass(frozen=True, kw_only=True)
class RunnerDeps:
    """What a session's runner is built from."""

    settings: Settings
    models: Models | None
    store: BaseStore
    workspace: Path
    get_browser: BrowserGetter | None
    owner: str = ""
    """Whose conversations this runner's turns belong to."""
    replica: str = "local"
    """Which server runs them: the holder of a running conversation's lease."""
    more_tools: Callable[[], Awaitable[Sequence[BaseTool]]] | None = None
    """The session's tools from elsewhere (its MCP servers), fetched once before the first run."""
    proxy_socket: Callable[[], Awaitable[Path]] | None = None
    """The web policy's proxy socket for the Python sandbox (``Guard.sandbox_socket``)."""


class Runner:
    """Runs the graph for one session, one turn at a time. Lives on the loop thread.

    States: idle ⇄ running; closed is final (``aclose`` is idempotent). :meth:`emit` is the session's
    event sink: tools and the web policy report through it to whichever run is in progress.
    """

    def __init__(self, deps: RunnerDeps) -> None:
        self.settings = deps.settings
        self._deps = deps
        self._graph: Graph | None = None
        self._task: asyncio.Task[None] | None = None
        self._run: RunContext | None = None
        self._thread_id: str | None = None
        # The screen the thread's last run ended on, for vision on its next turn; forgotten when the
        # browser is reset or closed (it no longer shows that page).
        self._screen: tuple[str, ev.Screenshot] | None = None
        self._busy = False
        self.closed = False

    @property
    def running(self) -> bool:
        """A turn is under way: from start until its Finished event is delivered."""
        return self._busy and self._task is not None and not self._task.done()

    @property
    def thread_id(self) -> str | None:
        """The conversation of the run in progress, if any."""
        return self._thread_id if self.running else None

    async def _built(self) -> Graph:
        if self._graph is None:
            more = await self._deps.more_tools() if self._deps.more_tools is not None else ()
            return self.graph(more)
        return self._graph

    def graph(self, more_tools: Sequence[BaseTool] = ()) -> Graph:
        """The session's compiled graph, built once: its tools are fixed from then on."""
        if self._graph is None:
            deps = self._deps
            if deps.models is None:
                raise ConfigError("No model is configured.")
            ctx = ToolContext(
                settings=deps.settings,
                workspace=deps.workspace,
                get_browser=self._browser_for_tools if deps.get_browser is not None else None,
                emit=self.emit,
                proxy_socket=deps.proxy_socket,
            )
            self._graph = build_graph(
                settings=deps.settings,
                models=deps.models,
                tools=[*build_tools(ctx), *more_tools],
                checkpointer=deps.store.checkpointer,
            )
        return self._graph

    def report_blocked(self, url: str, reason: str) -> None:
        """The web policy stopped a request of this session; shown in the run's steps."""
        self.emit(ev.Blocked(url=url[:500], reason=reason))

    def emit(self, event: ev.Event) -> None:
        """Send an event to the run in progress (events outside a run have nobody to see them)."""
        run = self._run
        if run is not None and self.running:
            run.emit(event)

    async def _browser_for_tools(self) -> SessionBrowser:
        """The session's browser, for a tool: the step it is in ends with a screenshot."""
        assert self._deps.get_browser is not None
        if self._run is not None:
            self._run.browser_used = True
        return await self._deps.get_browser()

    async def _step_screenshot(self) -> ev.Screenshot | None:
        """The browser as a step left it; None if there is none to take (a failure never fails the step)."""
        get = self._deps.get_browser
        if get is None:
            return None
        try:
            async with asyncio.timeout(STEP_SHOT_SECONDS):
                sb = await get()
                if not sb.alive or sb.dialog is not None:  # an open dialog freezes the page
                    return None
                return await sb.screenshot()
        except (TimeoutError, SidekickError) as exc:
            log.info("No screenshot at the end of the step: %s", str(exc) or "timed out")
            return None

    def forget_screen(self) -> None:
        """The browser was reset or closed: its last screenshot no longer shows what it shows."""
        self._screen = None

    # -- runs ------------------------------------------------------------------------------------
    async def start(self, message: str, criteria: str, thread_id: str) -> RunHandle:
        """Start a turn. Raises a SidekickError on bad input or if a run is already going."""
        message, criteria = check_message(message, criteria)
        await self._claim(thread_id)
        return self._launch(thread_id, message, criteria, resume=None)

    async def resume(self, thread_id: str, approved: bool) -> RunHandle:
        """Go on with a turn paused for approval of a side-effecting tool call."""
        await self._claim(thread_id)
        return self._launch(thread_id, "", "", resume={"approved": approved})

    async def _claim(self, thread_id: str) -> None:
        """Hold the conversation's lease, so no other replica runs it at the same time (raises
        LeaseHeldError, a plain message, when one does)."""
        if self.running:
            raise RunInProgressError("Sidekick is still working on your last message: wait for it, or press Stop.")
        await self._deps.store.claim_lease(thread_id, self._deps.replica, self.settings.lease_seconds)

    def _launch(self, thread_id: str, message: str, criteria: str, resume: dict[str, Any] | None) -> RunHandle:
        if self.closed:
            raise SidekickError("This session was reset or ended; start again.")
        if self.running:
            raise RunInProgressError("Sidekick is still working on your last message: wait for it, or press Stop.")
        handle = RunHandle(run_id=uuid.uuid4().hex[:12], thread_id=thread_id)
        carried = self._screen[1] if self._screen is not None and self._screen[0] == thread_id else None
        recorder = Recorder(self._deps.store, thread_id, handle.run_id)
        run = RunContext(put=handle.events.put, record=recorder.add, screen=carried, capture=self._step_screenshot)
        self._run, self._thread_id, self._busy = run, thread_id, True
        self._task = asyncio.get_running_loop().create_task(
            self._recorded(recorder, handle, run, message, criteria, resume), name=f"sidekick-run-{handle.run_id}"
        )
        return handle

    async def _renew(self, thread_id: str) -> None:
        """Keep the lease while the run goes on (a third of its life at a time)."""
        every = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            try:
                async with asyncio.timeout(every):
                    await self._deps.store.renew_lease(thread_id, self._deps.replica, self.settings.lease_seconds)
            except Exception as exc:  # the database is away: the run finds out on its own next write
                log.warning("Could not renew the lease on %s: %r", thread_id, exc)

    async def cancel(self, timeout: float = CANCEL_SECONDS) -> bool:
        """Stop the running turn; returns whether there was one. Waits for it to wind down."""
        task = self._task
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.wait([task], timeout=timeout)
        return True

    async def _recorded(
        self,
        recorder: Recorder,
        handle: RunHandle,
        run: RunContext,
        message: str,
        criteria: str,
        resume: dict[str, Any] | None,
    ) -> None:
        store, thread_id, replica = self._deps.store, handle.thread_id, self._deps.replica
        renewing = asyncio.get_running_loop().create_task(self._renew(thread_id), name=f"sidekick-lease-{thread_id}")
        try:
            async with recorder:
                await self._main(handle, run, message, criteria, resume)
        finally:
            renewing.cancel()
            await asyncio.wait([renewing], timeout=REPAIR_SECONDS)
            await close_quietly(store.release_lease(thread_id, replica), REPAIR_SECONDS, "Releasing a lease")
            self._busy = False
            if run.finished is not None:
                run.put(run.finished)
            handle.done.set()

    async def _main(
        self, handle: RunHandle, run: RunContext, message: str, criteria: str, resume: dict[str, Any] | None
    ) -> None:
        emit = run.emit
        started = time.monotonic()
        outcome: Any = "error"
        config: RunnableConfig = {
            "configurable": {"thread_id": handle.thread_id},
            "recursion_limit": self.settings.recursion_limit,
        }
        emit(ev.RunStarted(run_id=handle.run_id, thread_id=handle.thread_id, message=message, criteria=criteria))
        if resume is not None:
            emit(ev.ApprovalAnswered(approved=bool(resume.get("approved"))))
        try:
            graph = await self._built()
            await self._repair(graph, config, resuming=resume is not None)
            if resume is None:
                await self._deps.store.touch(handle.thread_id, message, owner=self._deps.owner)
            payload: TurnInput | Command[Any] = (
                Command(resume=resume)
                if resume is not None
                else TurnInput(
                    messages=[HumanMessage(message)], criteria=criteria, feedback=None, evaluations=0, outcome=None
                )
            )
            pending: Any = None
            async with asyncio.timeout(self.settings.turn_timeout_seconds):
                async for update in graph.astream(payload, config, context=run, stream_mode="updates"):
                    if "__interrupt__" in update:
                        pending = update["__interrupt__"]
            if pending:
                request = pending[0].value
                emit(ev.ApprovalNeeded(call_id=request["call_id"], name=request["name"], args=dict(request["args"])))
                outcome = "approval"
            else:
                outcome = await self._conclude(graph, config, run)
        except asyncio.CancelledError:
            emit(ev.Cancelled(reason="Stopped. The conversation is kept; send a new message to go on."))
            outcome = "cancelled"
        except TimeoutError:
            emit(
                ev.ErrorEvent(
                    message=f"The task took longer than {self.settings.turn_timeout_seconds:g} s and was stopped. "
                    "Try a smaller step, or raise SIDEKICK_TURN_TIMEOUT.",
                    category="timeout",
                )
            )
        except GraphRecursionError:
            emit(
                ev.FinalAnswer(
                    text="I ran out of steps for this turn before finishing "
                    f"(SIDEKICK_RECURSION_LIMIT={self.settings.recursion_limit}). "
                    "Ask me to continue, or narrow the task.",
                    accepted=False,
                )
            )
            outcome = "answer"
        except ConfigError as exc:
            emit(ev.ErrorEvent(message=str(exc), category="config"))
        except ModelError as exc:
            emit(ev.ErrorEvent(message=str(exc), category="model"))
        except SidekickError as exc:
            emit(ev.ErrorEvent(message=str(exc), category="internal"))
        except Exception as exc:
            model_error = explain_model_error(exc, self.settings)
            if model_error is not None:
                emit(ev.ErrorEvent(message=str(model_error), category="model"))
            else:
                log.exception("Run %s failed", handle.run_id)
                emit(ev.ErrorEvent(message=f"Something went wrong ({type(exc).__name__}). The session still works; "
                                "try again.", category="internal"))
        finally:
            if outcome in ("cancelled", "error") and self._graph is not None:
                # Shielded and bounded: a cancelled run still leaves a valid thread behind. A second
                # Stop while it repairs waits for the repair too (bounded), so the run ends with it.
                repair = asyncio.ensure_future(self._repair(self._graph, config, resuming=False))
                try:
                    await asyncio.wait([repair], timeout=REPAIR_SECONDS)
                except asyncio.CancelledError:
                    await asyncio.wait([repair], timeout=REPAIR_SECONDS)
                if not repair.done():
                    repair.cancel()
                elif not repair.cancelled() and repair.exception() is not None:
                    log.warning("Could not repair thread %s: %r", handle.thread_id, repair.exception())
            # Step screenshots still being taken belong in the record, before Finished (bounded;
            # a second Stop while they finish does not stop the run from ending properly).
            with contextlib.suppress(asyncio.CancelledError):
                await run.settle(STEP_SHOT_SECONDS)
            if run.screen is not None:
                self._screen = (handle.thread_id, run.screen)
            # Recorded now, delivered once the record is written (_recorded): whoever sees Finished
            # may start the next turn at once, and finds the record complete and the runner free.
            run.finished = ev.Finished(
                outcome=outcome,
                seconds=time.monotonic() - started,
                model_calls=run.stats.model_calls,
                tokens=run.stats.tokens,
            )
            run.record(run.finished)

    async def _conclude(self, graph: Graph, config: RunnableConfig, run: RunContext) -> str:
        state = (await graph.aget_state(config)).values
        messages: list[BaseMessage] = state.get("messages", [])
        answer = text_of(messages[-1]).strip() if messages else ""
        match state.get("outcome"):
            case "question":
                if answer.startswith("Question:"):
                    text = answer.removeprefix("Question:").strip()
                else:
                    text = state.get("feedback") or answer
                run.emit(ev.Question(text=text))
                return "question"
            case "accepted":
                run.emit(ev.FinalAnswer(text=answer, accepted=True))
            case _:
                note = (
                    f"\n\n_This answer did not pass review after {state.get('evaluations', 0)} round(s). "
                    f"Reviewer's last feedback: {state.get('feedback') or 'none'}_"
                )
                run.emit(ev.FinalAnswer(text=answer + note, accepted=False))
        return "answer"

    async def _repair(self, graph: Graph, config: RunnableConfig, *, resuming: bool) -> None:
        """Give every unanswered tool call a result, so the thread is valid for the model again."""
        if resuming:
            return
        snapshot = await graph.aget_state(config)
        messages: list[BaseMessage] = snapshot.values.get("messages", []) if snapshot.values else []
        answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        for message in reversed(messages):
            if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
                calls: list[tuple[str | None, str | None]] = [(c["id"], c["name"]) for c in message.tool_calls]
                calls += [(c.get("id"), c.get("name")) for c in message.invalid_tool_calls]
                missing = [
                    ToolMessage(content=INTERRUPTED, tool_call_id=str(call_id), name=str(name or "unknown"))
                    for call_id, name in calls
                    if call_id and call_id not in answered
                ]
                if missing:
                    await graph.aupdate_state(config, {"messages": missing}, as_node="tools")
                return
            if isinstance(message, HumanMessage):
                return

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.cancel()
