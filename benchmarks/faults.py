"""Faults and bad input: does every one end in a clear message, with the session still usable?

Run from the project root::

    python -m benchmarks.faults                       # a table
    python -m benchmarks.faults --json                # one JSON object on stdout
    python -m benchmarks.faults --only model_429,empty_message

Everything is real except the model: one live :class:`~sidekick.browser.BrowserPool` with real
Chromium shared by the scenarios, the graph and LangGraph's SQLite checkpointer, langchain-openai
over real HTTP to the fake model (``tests.support.fakes.openai_server.FakeOpenAI``), and a local site
(``tests.support.fakes.site.LocalSite``). Scenarios that need the facade start a real
:class:`~sidekick.facade.Sidekick` (its own loop thread and its own pool) and close it.

Each scenario injects one fault (Chromium killed mid-navigation, a page that never loads, a 10 MB
page, the model answering 500 / 429 / garbage or not at all, a tool that raises, bad arguments,
bad input to the facade, a malformed setting), checks that it ended in a clear message, then runs
a normal turn on the same thread. It **recovered** when that turn answered and its first request
to the model carried a valid history: every assistant tool call followed by its tool result (a real
OpenAI server rejects a thread with a dangling tool call, every turn, for good).

- **recover_s**: from the fault to the end of that successful turn.
- **leaked_processes**: after the scenario closed what it opened (and waiting up to 5 s for exits),
  Chromium and Playwright-driver processes descending from this process that are not the live pool's
  own (its driver, its Chromium and that Chromium's children), plus any process of a Chromium the
  scenario killed that is still alive anywhere. Browser contexts left open beyond the pool's warm
  spare fail the scenario.
- **total_leaked**: the sum over scenarios, plus the processes left once the live pool is closed too
  (the target is zero: nothing descends from this process at the end).

The scenario functions are shared with ``tests/test_faults.py``, which asserts their outcomes. The
exit code is 0 whether or not every scenario recovered: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import psutil
from langchain_core.tools import BaseTool, StructuredTool

import sidekick.runs
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.errors import ConfigError, SidekickError
from sidekick.events import ErrorEvent, Event, FinalAnswer, Finished, RunStarted, ToolResult
from sidekick.facade import Sidekick
from sidekick.procs import browser_processes, self_memory_bytes
from sidekick.runs import RunHandle
from sidekick.tools.base import ToolContext
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import Rig as SupportRig
from tests.support.runs import open_rig, verdict

T = TypeVar("T")

RUN_TIMEOUT = 60.0  # seconds for one turn; a hang is a failure, not a data point
SCENARIO_TIMEOUT = 180.0
EXIT_WAIT = 5.0  # seconds to let processes exit before counting leftovers
CRITERIA = "The answer is clear"
RECOVERED = "Still here, and working."
REMEMBERED = "My name is Ada."
TOOL_TIMEOUT = 2.0  # the small SIDEKICK_TOOL_TIMEOUT of the hanging-page scenario
MODEL_TIMEOUT = 2.0  # the small SIDEKICK_MODEL_TIMEOUT of the hanging-model scenario
HUGE_MB = 10
RSS_LIMIT_MB = 64.0  # retained RSS growth allowed by loading and reading the 10 MB page
RSS_AGAIN_MB = 16.0  # further growth allowed by reading it twice more: memory must not pile up
HUGE_TOOL_TIMEOUT = 30.0  # the tool budget for the 10 MB page: we measure its time, not a busy CPU's
HUGE_TOOL_SECONDS = 15.0  # navigate and read_page of the 10 MB page, each
MESSAGE_LIMIT_CHARS = 9_000  # a capped tool result, with its untrusted-block markers


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


@dataclass
class Outcome:
    """How a scenario's fault ended: the clear message, when it struck and when a run worked again."""

    message: str
    fault_at: float
    recovered_at: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    name: str
    recovered: bool
    message: str
    recover_s: float | None
    leaked_processes: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recovered": self.recovered,
            "message": self.message,
            "recover_s": None if self.recover_s is None else round(self.recover_s, 3),
            "leaked_processes": self.leaked_processes,
        }


# -- events and histories ---------------------------------------------------------------------------
def of(events: Sequence[Event], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


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


def accept() -> Reply:
    """The evaluator's verdict that every criterion is met."""
    return verdict(True)


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


# -- an agent on the live pool, as a dashboard session has one ------------------------------------
class Rig(SupportRig):
    """The shared rig, with this report's default criteria and thread."""

    async def start(self, message: str, thread: str = "t1", criteria: str = CRITERIA) -> RunHandle:
        return await self.runner.start(message, criteria, thread)

    async def run(self, message: str, thread: str = "t1", criteria: str = CRITERIA) -> list[Event]:
        return await collect(await self.start(message, thread, criteria))


def settings_for(env: Env, name: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": env.workdir / name,
        "openai_base_url": env.llm.base_url,
        "openai_api_key": "test",
        "model_retries": 0,
        "model_timeout_seconds": 5.0,
        "tool_timeout_seconds": 5.0,
        "allow_private_network": True,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def agent_rig(env: Env, name: str, **overrides: Any) -> AsyncIterator[Rig]:
    """Store, models and a session on the live pool with its runner; closed in reverse order."""
    async with open_rig(settings_for(env, name, **overrides), env.pool, name=name) as rig:
        yield Rig(rig.settings, rig.store, rig.models, rig.session)


async def collect(handle: RunHandle, timeout: float = RUN_TIMEOUT) -> list[Event]:
    events: list[Event] = []
    try:
        async with asyncio.timeout(timeout):
            while not events or not isinstance(events[-1], Finished):
                events.extend(handle.drain())
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise ScenarioFailed(f"the run did not finish within {timeout:g} s: {describe(events)}") from None
    return events


async def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ScenarioFailed(what)
        await asyncio.sleep(0.02)


async def recover(env: Env, rig: Rig, thread: str = "t1", *, browse: bool = False) -> float:
    """A normal turn on the same thread (with ``browse``, one that opens a page); its end time."""
    env.llm.reset()  # nothing scripted for the fault may answer this turn
    if browse:
        env.llm.worker(Reply.tool_call("navigate", {"url": env.site.url("/about")}), Reply.text(RECOVERED))
    else:
        env.llm.worker(Reply.text(RECOVERED))
    env.llm.evaluator(accept())
    events = await rig.run("Are you still there?", thread)
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


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "tool"]


# -- the browser ------------------------------------------------------------------------------------
def subtree(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return set()


async def chromium_killed(env: Env) -> Outcome:
    """Chromium's main process is SIGKILLed while a navigate call waits for a page."""
    async with agent_rig(env, "chromium_killed") as rig:
        env.llm.worker(
            Reply.tool_call("navigate", {"url": env.site.url("/hang")}),
            Reply.text("The browser stopped, so I could not open that page."),
        )
        env.llm.evaluator(accept())
        handle = await rig.start("Open the slow page")
        await wait_for(lambda: "/hang" in env.site.hits, 30, "the browser never asked for /hang")
        env.note_pool()
        pid = env.pool.browser_pid
        expect(pid is not None, "the pool does not know its Chromium's process id")
        assert pid is not None
        launches = env.pool.launches
        env.must_exit |= subtree(pid)
        fault = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        events = await collect(handle)
        results = of(events, ToolResult)
        expect(results, f"the navigate call got no result: {describe(events)}")
        told = results[0].output
        expect(not results[0].ok and "browser stopped" in told.lower(), f"the model was not told: {told!r}")
        expect(of(events, FinalAnswer), f"the run did not finish with the model's answer: {describe(events)}")
        sent = tool_messages(env.llm.requests[-2]) if len(env.llm.requests) >= 2 else []
        expect(sent and "browser stopped" in sent[0].lower(), "the model's next request did not carry the result")
        done = await recover(env, rig, browse=True)
        expect(
            env.pool.launches == launches + 1,
            f"Chromium was launched {env.pool.launches - launches} times after the kill, not once",
        )
        expect(env.pool.browser_pid not in (None, pid), "the pool did not record the new Chromium")
        return Outcome(
            told, fault, done,
            {"launches_before": launches, "launches_after": env.pool.launches, "killed_pid": pid},
        )


async def page_never_loads(env: Env) -> Outcome:
    """A page that never answers, with a small tool timeout."""
    async with agent_rig(env, "page_never_loads", tool_timeout_seconds=TOOL_TIMEOUT) as rig:
        env.llm.worker(
            Reply.tool_call("navigate", {"url": env.site.url("/hang")}),
            Reply.text("That page did not load."),
        )
        env.llm.evaluator(accept())
        fault = time.monotonic()
        events = await rig.run("Open the page that never loads")
        results = of(events, ToolResult)
        expect(results, f"the navigate call got no result: {describe(events)}")
        told = results[0].output
        expect(not results[0].ok, f"navigate to a hanging page succeeded: {told!r}")
        expect(f"{TOOL_TIMEOUT:g} s" in told, f"the result does not say how long it waited: {told!r}")
        # The budget, then stopping the load and a last screenshot, each bounded by a few seconds.
        expect(results[0].seconds < TOOL_TIMEOUT + 10, f"the call took {results[0].seconds:.1f} s")
        expect(of(events, FinalAnswer), f"the run did not finish with the model's answer: {describe(events)}")
        done = await recover(env, rig, browse=True)
        return Outcome(told, fault, done, {"tool_seconds": results[0].seconds})


def retained_rss_mb() -> float:
    """This process's RSS after a collection and, with glibc, after freed heap is handed back to the
    OS: what the process keeps. (glibc otherwise holds on to freed memory, so plain RSS reports a
    high-water mark that varies by tens of MB from run to run.)"""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return self_memory_bytes() / 2**20


def huge_html(megabytes: int = HUGE_MB) -> str:
    line = "<p>" + "The quick brown fox jumps over the lazy dog. " * 22 + "</p>\n"
    count = megabytes * 2**20 // len(line) + 1
    return "<html><head><title>Huge</title></head><body>" + line * count + "</body></html>"


async def huge_page(env: Env) -> Outcome:
    """A page with 10 MB of text: navigate and read_page return capped text in bounded time, and
    Python's memory grows by a bounded amount once, not again with each read."""
    async with agent_rig(env, "huge_page", tool_timeout_seconds=HUGE_TOOL_TIMEOUT) as rig:
        rss_before = retained_rss_mb()
        env.site.route("/huge", huge_html())
        env.llm.worker(
            Reply.tool_call("navigate", {"url": env.site.url("/huge")}),
            Reply.tool_call("read_page", {}),
            Reply.text("It is a very long page about a fox."),
        )
        env.llm.evaluator(accept())
        fault = time.monotonic()
        first = await rig.run("Read the huge page")
        env.site.reset()  # the site lets go of its copy; Chromium has the page
        rss_first = retained_rss_mb()

        env.llm.reset()
        env.llm.worker(Reply.tool_call("read_page", {}), Reply.tool_call("read_page", {}), Reply.text("Same page."))
        env.llm.evaluator(accept())
        again = await rig.run("Read it twice more")
        # The last worker request of the second turn carries the thread's four tool results.
        sent = tool_messages(env.llm.requests[-2]) if len(env.llm.requests) >= 2 else []
        growth = rss_first - rss_before, retained_rss_mb() - rss_first

        results = of(first, ToolResult) + of(again, ToolResult)
        expect(len(results) == 4 and all(r.ok for r in results), f"the tools failed: {describe(first + again)}")
        slowest = max(r.seconds for r in results)
        expect(slowest < HUGE_TOOL_SECONDS, f"a tool took {slowest:.1f} s on the huge page")
        expect(len(sent) == 4, f"the model got {len(sent)} of the 4 tool results")
        longest = max(len(s) for s in sent)
        expect(longest < MESSAGE_LIMIT_CHARS, f"a tool result sent to the model was {longest:,} characters")
        expect("truncated" in sent[1], "read_page did not say it truncated the page")
        expect(growth[0] < RSS_LIMIT_MB, f"Python's RSS grew by {growth[0]:.0f} MB with the first load")
        expect(growth[1] < RSS_AGAIN_MB, f"Python's RSS grew by {growth[1]:.0f} MB more with two more reads")
        done = await recover(env, rig, browse=True)
        message = (
            f"results capped at {longest:,} characters; slowest tool {slowest:.1f} s; "
            f"Python RSS +{growth[0]:.0f} MB, then {growth[1]:+.0f} MB for two more reads"
        )
        return Outcome(
            message, fault, done,
            {"tool_seconds": [r.seconds for r in results], "result_chars": [len(s) for s in sent],
             "rss_growth_mb": growth[0], "rss_again_mb": growth[1]},
        )


# -- the model --------------------------------------------------------------------------------------
async def _model_fault(env: Env, name: str, replies: Sequence[Reply], wanted: str, **overrides: Any) -> Outcome:
    async with agent_rig(env, name, **overrides) as rig:
        env.llm.worker(*replies)
        fault = time.monotonic()
        events = await rig.run("Look at the about page, please.")
        errors = of(events, ErrorEvent)
        expect(errors and errors[0].category == "model", f"no model error: {describe(events)}")
        told = errors[0].message
        expect(wanted in told, f"the message does not say {wanted!r}: {told!r}")
        expect("test" not in told, "the API key showed in the message")
        last = events[-1]
        expect(isinstance(last, Finished) and last.outcome == "error", describe(events))
        done = await recover(env, rig)
        return Outcome(told, fault, done)


async def model_500(env: Env) -> Outcome:
    """The model server fails with 500 after a tool step (so the thread holds a tool call)."""
    replies = (Reply.tool_call("navigate", {"url": env.site.url("/about")}), Reply.error(500))
    return await _model_fault(env, "model_500", replies, "failed (500)")


async def model_429(env: Env) -> Outcome:
    return await _model_fault(env, "model_429", (Reply.error(429),), "rate-limiting")


async def model_hangs(env: Env) -> Outcome:
    return await _model_fault(
        env, "model_hangs", (Reply.hang(),), f"within {MODEL_TIMEOUT:g} s", model_timeout_seconds=MODEL_TIMEOUT
    )


# -- tools ------------------------------------------------------------------------------------------
async def _tool_fault(env: Env, rig: Rig, calls: Reply, message: str, count: int) -> tuple[list[ToolResult], float]:
    env.llm.worker(calls, Reply.text("The tool failed; here is what I know."))
    env.llm.evaluator(accept())
    fault = time.monotonic()
    events = await rig.run(message)
    results = of(events, ToolResult)
    expect(len(results) == count, f"expected {count} tool results: {describe(events)}")
    expect(not any(r.ok for r in results), f"a broken tool call succeeded: {describe(events)}")
    expect(of(events, FinalAnswer), f"the run did not finish with the model's answer: {describe(events)}")
    return results, fault


async def tool_bad_arguments(env: Env) -> Outcome:
    """navigate with a number for its URL, and with no URL at all."""
    async with agent_rig(env, "tool_bad_arguments") as rig:
        calls = Reply.tool_calls([("navigate", {"url": 12345}), ("navigate", {})])
        results, fault = await _tool_fault(env, rig, calls, "Open page 12345", 2)
        for r in results:
            expect("invalid arguments for navigate" in r.output, f"unclear result: {r.output!r}")
        done = await recover(env, rig, browse=True)
        return Outcome(" / ".join(r.output for r in results), fault, done)


def _exploding_tool() -> BaseTool:
    async def explode(what: str = "") -> str:
        raise RuntimeError(f"boom {what}".strip())

    return StructuredTool.from_function(coroutine=explode, name="explode", description="Always fails.")


async def tool_raises(env: Env) -> Outcome:
    """A tool whose implementation raises RuntimeError.

    The runner builds its tools itself (``sidekick.runs.build_tools``) and takes none from outside,
    so the graph is built with that function wrapped to add one more tool.
    """
    real = sidekick.runs.build_tools

    def with_explode(ctx: ToolContext) -> list[BaseTool]:
        return [*real(ctx), _exploding_tool()]

    async with agent_rig(env, "tool_raises") as rig:
        with mock.patch.object(sidekick.runs, "build_tools", with_explode):
            rig.runner.graph()  # built (and kept) now, while the wrapper is in place
        calls = Reply.tool_call("explode", {"what": "now"})
        results, fault = await _tool_fault(env, rig, calls, "Use the explode tool", 1)
        told = results[0].output
        expect("failed unexpectedly (RuntimeError: boom now)" in told, f"unclear result: {told!r}")
        done = await recover(env, rig, browse=True)
        return Outcome(told, fault, done)


async def tool_malformed_arguments(env: Env) -> Outcome:
    """The model sends a tool call whose arguments are not valid JSON."""
    async with agent_rig(env, "tool_malformed_arguments") as rig:
        broken = Reply("message", calls=(("navigate", '{"url": "http://127.0.0.1'),))
        env.llm.worker(broken, Reply.text("Sorry, my last call was garbled."))
        env.llm.evaluator(accept(), accept())
        fault = time.monotonic()
        events = await rig.run("Open the home page")
        expect(isinstance(events[-1], Finished), describe(events))
        problems: list[str] = []
        results = of(events, ToolResult)
        told = results[0].output if results else ""
        try:
            done = await recover(env, rig)
        except ScenarioFailed as exc:
            problems.append(str(exc))
        if not results or results[0].ok:
            problems.append(f"the model was not told its call's arguments were malformed ({describe(events)})")
        if problems:
            raise ScenarioFailed("; ".join(problems))
        return Outcome(told, fault, done)


# -- the facade: its own loop thread, sync calls ----------------------------------------------------
class FlakyFront:
    """An HTTP front for the fake model: answers the next requests with scripted garbage (status 200),
    and forwards every other request to the fake unchanged."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan: deque[tuple[bytes, str] | None] = deque()  # per request: garbage, or None to forward
        self._lock = threading.Lock()
        front = self
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with front._lock:
                    step = front.plan.popleft() if front.plan else None
                if step is not None:
                    self._send(200, *step)
                    return
                path = self.path.removeprefix("/v1")
                request = urllib.request.Request(
                    front.upstream + path, data=body, headers={"Content-Type": "application/json"}
                )
                try:
                    with opener.open(request, timeout=RUN_TIMEOUT) as response:
                        self._send(response.status, response.read(), response.headers.get("Content-Type", ""))
                except urllib.error.HTTPError as exc:
                    with exc:
                        self._send(exc.code, exc.read(), exc.headers.get("Content-Type", ""))

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FlakyFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def facade(env: Env, name: str, base_url: str | None = None, **overrides: Any) -> Iterator[Sidekick]:
    if base_url is not None:
        overrides["openai_base_url"] = base_url
    sk = Sidekick(settings_for(env, name, **overrides)).start(warm=False)
    try:
        yield sk
    finally:
        sk.close()


def wait_finished(handle: RunHandle, timeout: float = RUN_TIMEOUT) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while not events or not isinstance(events[-1], Finished):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScenarioFailed(f"the run did not finish within {timeout:g} s: {describe(events)}")
        events.extend(handle.drain(timeout=min(0.1, left)))
    return events


def facade_turn(
    env: Env, sk: Sidekick, message: str, *, thread: str = "t1", answer: str = RECOVERED,
    present: Sequence[str] = (), absent: Sequence[str] = (),
) -> tuple[list[Event], float]:
    """A normal turn through the facade: it answers, and its history is valid."""
    env.llm.reset()
    env.llm.worker(Reply.text(answer))
    env.llm.evaluator(accept())
    events = wait_finished(sk.start_run("tab-1", message, CRITERIA, thread))
    done = time.monotonic()
    answers = of(events, FinalAnswer)
    expect(answers and answers[0].text == answer, f"the run did not answer: {describe(events)}")
    expect(env.llm.requests, "the run never asked the model")
    check_request(env.llm.requests[0], present=present, absent=absent)
    return events, done


def refused(call: Callable[[], object], wanted: str) -> str:
    """The clear message ``call`` raised (a SidekickError containing ``wanted``)."""
    try:
        call()
    except SidekickError as exc:
        message = str(exc)
        expect(wanted in message, f"unclear refusal: {message!r} (wanted {wanted!r})")
        expect("Traceback" not in message, "a traceback reached the user")
        return message
    raise ScenarioFailed(f"accepted, though it should have said {wanted!r}")


def _garbage(env: Env, name: str, body: bytes, content_type: str) -> Outcome:
    with FlakyFront(env.llm.base_url) as front, facade(env, name, front.base_url) as sk:
        env.llm.reset()
        env.llm.worker(Reply.tool_call("navigate", {"url": env.site.url("/about")}))
        front.plan.extend([None, (body, content_type)])  # the tool call goes through; the next reply is garbage
        fault = time.monotonic()
        events = wait_finished(sk.start_run("tab-1", "Read the about page", CRITERIA, "t1"))
        errors = of(events, ErrorEvent)
        expect(errors, f"no error event: {describe(events)}")
        expect(of(events, ToolResult), f"the tool step never ran: {describe(events)}")
        done_event = events[-1]
        expect(isinstance(done_event, Finished) and done_event.outcome == "error", describe(events))
        told = errors[0].message
        expect("Traceback" not in told and body.decode()[:10] not in told, f"raw output reached the user: {told!r}")
        expect(sk.runtime.is_running, "the loop thread died")
        _, done = facade_turn(env, sk, "Are you still there?", present=["Read the about page"])
        return Outcome(told, fault, done, {"category": errors[0].category})


async def model_garbage_json(env: Env) -> Outcome:
    """Through the facade: the model server answers 200 with truncated JSON mid-turn."""
    return await asyncio.to_thread(_garbage, env, "model_garbage_json", b'{"choices": [', "application/json")


async def model_garbage_html(env: Env) -> Outcome:
    """Through the facade: the model server answers 200 with an HTML page mid-turn."""
    return await asyncio.to_thread(_garbage, env, "model_garbage_html", b"<html>Bad gateway</html>", "text/html")


def _bad_message(env: Env, name: str, message: str, criteria: str, wanted: str) -> Outcome:
    with facade(env, name) as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        told = refused(lambda: sk.start_run("tab-1", message, criteria, "t1"), wanted)
        absent = [message] if message.strip() else []
        _, done = facade_turn(env, sk, "What is my name?", present=[REMEMBERED], absent=absent)
        first_turn = sk.history("t1")[:2]
        expect(first_turn == [("user", REMEMBERED), ("assistant", "Noted.")], "the conversation lost its first turn")
        return Outcome(told, fault, done)


async def empty_message(env: Env) -> Outcome:
    return await asyncio.to_thread(_bad_message, env, "empty_message", "", CRITERIA, "Type a message")


async def whitespace_message(env: Env) -> Outcome:
    return await asyncio.to_thread(_bad_message, env, "whitespace_message", " \n\t\u00a0 ", CRITERIA, "Type a message")


async def message_100kb(env: Env) -> Outcome:
    text = "lorem ipsum " * (100_000 // 12 + 1)
    return await asyncio.to_thread(_bad_message, env, "message_100kb", text, CRITERIA, "the limit is 20,000")


async def long_criteria(env: Env) -> Outcome:
    return await asyncio.to_thread(
        _bad_message, env, "long_criteria", "Summarise the page", "be thorough; " * 400, "success criteria"
    )


def _control_characters(env: Env) -> Outcome:
    with facade(env, "control_characters") as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        told = refused(lambda: sk.start_run("tab-1", "\x00\x07\x1b\x7f", CRITERIA, "t1"), "Type a message")
        events, done = facade_turn(env, sk, "Wh\x00at is\x1b[31m my\x07 name?\x7f", present=[REMEMBERED])
        started = of(events, RunStarted)[0].message
        expect(started == "What is[31m my name?", f"control characters were not removed: {started!r}")
        sent = [str(m.get("content")) for m in env.llm.requests[0]["messages"] if m.get("role") == "user"]
        expect(not any(c in s for s in sent for c in "\x00\x07\x1b\x7f"), "control characters reached the model")
        return Outcome(f"{told} / sent as {started!r}", fault, done)


async def control_characters(env: Env) -> Outcome:
    return await asyncio.to_thread(_control_characters, env)


BAD_THREAD_IDS = ("../../etc/passwd", "", "x" * 65, "a b", "é", "t1;DROP TABLE")


def _malformed_thread_id(env: Env) -> Outcome:
    with facade(env, "malformed_thread_id") as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        told = ""
        for bad in BAD_THREAD_IDS:
            told = refused(functools.partial(sk.start_run, "tab-1", "hello", CRITERIA, bad), "conversation id")
            expect(sk.history(bad) == [] and not sk.conversation_exists(bad), f"{bad!r} was looked up")
        expect([c.thread_id for c in sk.conversations()] == ["t1"], "a refused thread id reached the store")
        _, done = facade_turn(env, sk, "What is my name?", present=[REMEMBERED])
        return Outcome(told, fault, done)


async def malformed_thread_id(env: Env) -> Outcome:
    return await asyncio.to_thread(_malformed_thread_id, env)


def _unknown_thread_id(env: Env) -> Outcome:
    with facade(env, "unknown_thread_id") as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        unknown = "never-seen-0123"
        expect(sk.history(unknown) == [], "an unknown thread has a history")
        expect(not sk.conversation_exists(unknown), "an unknown thread exists")
        # A link to a thread that is gone starts that conversation afresh; the others are untouched.
        _, done = facade_turn(env, sk, "Hello?", thread=unknown, absent=[REMEMBERED])
        expect(sk.conversation_exists(unknown), "the new conversation was not recorded")
        facade_turn(env, sk, "What is my name?", present=[REMEMBERED], absent=["Hello?"])
        return Outcome("an unknown id opens an empty conversation", fault, done)


async def unknown_thread_id(env: Env) -> Outcome:
    return await asyncio.to_thread(_unknown_thread_id, env)


BAD_SETTINGS = {
    "SIDEKICK_TOOL_TIMEOUT": "soon",
    "SIDEKICK_MODEL_TIMEOUT": "-5",
    "SIDEKICK_TURN_TIMEOUT": "inf",
    "SIDEKICK_MODEL_RETRIES": "2.5",
    "SIDEKICK_RECURSION_LIMIT": "-1",
    "SIDEKICK_HEADLESS": "maybe",
    "SIDEKICK_ALLOW_PRIVATE_NETWORK": "yes please",
    "SIDEKICK_BLOCKED_DOMAINS": "ok.com, not a domain!",
}


def _malformed_env_value(env: Env) -> Outcome:
    good = {
        "SIDEKICK_DATA_DIR": str(env.workdir / "malformed_env_value"),
        "OPENAI_BASE_URL": env.llm.base_url,
        "OPENAI_API_KEY": "test",
        "SIDEKICK_MODEL_RETRIES": "0",
        "SIDEKICK_ALLOW_PRIVATE_NETWORK": "1",
    }
    fault = time.monotonic()
    told = []
    for var, value in BAD_SETTINGS.items():
        try:
            Settings.load({**good, var: value})
        except ConfigError as exc:
            expect(var in str(exc), f"the error does not name {var}: {exc}")
            told.append(str(exc))
            continue
        raise ScenarioFailed(f"{var}={value!r} was accepted")
    settings = Settings.load(good)
    sk = Sidekick(settings).start(warm=False)
    try:
        _, done = facade_turn(env, sk, "Hello?")
    finally:
        sk.close()
    return Outcome(told[0], fault, done, {"messages": told})


async def malformed_env_value(env: Env) -> Outcome:
    return await asyncio.to_thread(_malformed_env_value, env)


Scenario = Callable[[Env], Awaitable[Outcome]]
SCENARIOS: dict[str, Scenario] = {
    "chromium_killed": chromium_killed,
    "page_never_loads": page_never_loads,
    "huge_page": huge_page,
    "model_500": model_500,
    "model_429": model_429,
    "model_hangs": model_hangs,
    "model_garbage_json": model_garbage_json,
    "model_garbage_html": model_garbage_html,
    "tool_bad_arguments": tool_bad_arguments,
    "tool_raises": tool_raises,
    "tool_malformed_arguments": tool_malformed_arguments,
    "empty_message": empty_message,
    "whitespace_message": whitespace_message,
    "message_100kb": message_100kb,
    "control_characters": control_characters,
    "long_criteria": long_criteria,
    "malformed_thread_id": malformed_thread_id,
    "unknown_thread_id": unknown_thread_id,
    "malformed_env_value": malformed_env_value,
}


# -- running and accounting -------------------------------------------------------------------------
def _leftover_pids(env: Env) -> set[int]:
    own: set[int] = set()
    pid = env.pool.browser_pid
    if pid is not None:
        own |= subtree(pid)
    if env.pool_driver is not None:
        own.add(env.pool_driver)
    left = {p.pid for p in browser_processes(memory=False).procs} - own
    for orphan in env.must_exit - own:
        try:
            if psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE:
                left.add(orphan)
        except psutil.Error:
            pass
    return left


async def leftovers(env: Env) -> tuple[int, int]:
    """(processes, contexts) left beyond the live pool's own, waiting up to EXIT_WAIT for exits."""
    env.note_pool()
    contexts = 0
    if env.pool.browser_connected():
        await env.pool.warm()
        contexts = max(0, env.pool.open_contexts - 1)  # beyond the warm spare
    deadline = time.monotonic() + EXIT_WAIT
    left = await asyncio.to_thread(_leftover_pids, env)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        left = await asyncio.to_thread(_leftover_pids, env)
    return len(left), contexts


async def processes_after_close() -> int:
    """Browser and driver processes still descending from this process, up to EXIT_WAIT later."""
    deadline = time.monotonic() + EXIT_WAIT
    left = await asyncio.to_thread(browser_processes, memory=False)
    while left.processes and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        left = await asyncio.to_thread(browser_processes, memory=False)
    return left.processes


async def run_scenario(env: Env, name: str) -> Result:
    """One scenario, timed and accounted; a failure is a result, never an exception."""
    env.llm.reset()
    env.site.reset()
    env.must_exit = set()
    outcome: Outcome | None = None
    failure = ""
    try:
        async with asyncio.timeout(SCENARIO_TIMEOUT):
            outcome = await SCENARIOS[name](env)
    except ScenarioFailed as exc:
        failure = str(exc)
    except TimeoutError:
        failure = f"the scenario did not finish within {SCENARIO_TIMEOUT:g} s"
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    processes, contexts = await leftovers(env)
    if outcome is not None and contexts:
        failure = f"{contexts} browser context{'s' if contexts != 1 else ''} left open"
    if outcome is None or failure:
        return Result(name, False, failure, None, processes, outcome.details if outcome else {})
    return Result(name, True, outcome.message, outcome.recovered_at - outcome.fault_at, processes, outcome.details)


async def run(names: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sidekick-faults-") as tmp, FakeOpenAI() as llm, LocalSite() as site:
        workdir = Path(tmp)
        pool = BrowserPool(Settings(data_dir=workdir, allow_private_network=True))
        try:
            await pool.warm()
            env = Env(llm=llm, site=site, pool=pool, workdir=workdir)
            env.note_pool()
            for name in names:
                if progress:
                    print(f"faults: {name}…", file=sys.stderr)
                results.append(await run_scenario(env, name))
        finally:
            await pool.aclose()
        after_close = await processes_after_close()
    return report(results, after_close)


def report(results: Sequence[Result], after_close: int) -> dict[str, Any]:
    return {
        "scenarios": [r.to_json() for r in results],
        "all_recovered": all(r.recovered for r in results),
        "total_leaked": sum(r.leaked_processes for r in results) + after_close,
    }


def table(data: dict[str, Any], width: int = 100) -> str:
    rows = data["scenarios"]
    name_w = max([len("scenario"), *(len(r["name"]) for r in rows)])
    lines = [
        f"{'scenario':<{name_w}}  {'outcome':<9}  {'recover s':>9}  {'leaked':>6}  message",
    ]
    for r in rows:
        outcome = "recovered" if r["recovered"] else "FAILED"
        seconds = "-" if r["recover_s"] is None else f"{r['recover_s']:.2f}"
        message = " ".join(r["message"].split())
        if r["recovered"] and len(message) > width:  # a failure is shown whole
            message = message[: width - 1] + "…"
        lines.append(f"{r['name']:<{name_w}}  {outcome:<9}  {seconds:>9}  {r['leaked_processes']:>6}  {message}")
    recovered = sum(1 for r in rows if r["recovered"])
    lines += [
        "",
        f"{recovered}/{len(rows)} scenarios recovered; {data['total_leaked']} processes leaked in total "
        "(including any left after the live pool closed).",
        "recover s = from the fault to the end of the next successful run on the same thread.",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.faults", description="Faults and bad input: recovery, messages and leaks."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios, from {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    args.names = names
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The scenarios cause failures on purpose and the table reports how each ended; Sidekick's own
    # log lines about them (tracebacks included) would only bury it.
    logging.getLogger("sidekick").setLevel(logging.CRITICAL)
    data = asyncio.run(run(args.names))
    print(json.dumps(data) if args.json else table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
