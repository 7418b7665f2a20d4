"""Agent overhead: what Sidekick's own machinery costs per agent step, alone and under concurrency.

Run from the project root::

    python -m benchmarks.agent_overhead                        # a table
    python -m benchmarks.agent_overhead --json                 # one JSON object on stdout
    python -m benchmarks.agent_overhead --steps 5 --runs 20 --sessions 10

Everything is real except the model: the graph, LangGraph's SQLite checkpointer
(:class:`~sidekick.store.Store`), langchain-openai over real HTTP to the fake model
(``tests.support.fakes.openai_server.FakeOpenAI``, answering at once), one shared
:class:`~sidekick.browser.BrowserPool` with real Chromium, and a local site
(``tests.support.fakes.site.LocalSite``). A task is ``--steps`` tool steps (``navigate``, ``read_page``,
``list_links``, …, one tool call per model reply), then an answer the evaluator accepts.

**Overhead per step** (``--runs`` turns, one after another, in one session; one untimed warm-up
turn first, so the browser launch, the first context and first-use imports are not counted). A step
is the time between two consecutive worker requests reaching the fake model's handler, from which
we subtract

- **model**: the time the handler itself took to choose its reply (timed in the handler), and
- **tool**: the tool call's time, ``ToolResult.seconds`` (the browser action and LangChain's
  tool-invocation wrapper). Tools take no screenshot after acting any more (the dashboard's live
  view shows actions as they happen): ``navigate`` still returns its page's screenshot, and a step
  whose tools took none ends with one for the run record (``RunContext.step_screenshot``), which
  lands in the overhead below. The table splits the steps by tool and shows what that costs.

What is left is Sidekick's own time: checkpoint writes, graph routing, building the prompt, the
OpenAI client and langchain-openai on both ends of the request, **and the HTTP transport to the
fake model and the fake's own request parsing and reply serialising** (it records no timings of its
own, so they cannot be separated; it sends ``Connection: close``, so every request also opens a TCP
connection). The fake model and the site run as threads of this process and share its GIL, which
a remote model server would not. Medians of the components are taken separately, so the median
overhead need not equal step - model - tool of the medians.

**Concurrency**: ``--sessions`` sessions (each its own :class:`~sidekick.sessions.Session`,
:class:`~sidekick.runs.Runner` and browser context, sharing the pool, the store and the models) run
the same task at once on the one loop. An error is an ``ErrorEvent``, an exception, a failed tool
call or a turn that did not end in an accepted answer. Run durations are ``Finished.seconds``.

**Leaks**: after closing everything, the Chromium and Playwright-driver processes still descending
from this process (waiting up to 5 s for them to exit), and the contexts left open in the pool
beyond its warm spare once every session has closed.

The exit code is 0 whether or not a target is met: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import cli
from benchmarks.cli import p95, sig
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.events import ErrorEvent, Event, FinalAnswer, Finished, Screenshot, ToolResult
from sidekick.models import Models
from sidekick.procs import browser_processes
from sidekick.runs import Runner
from sidekick.sessions import Session, SessionDeps
from sidekick.store import Store
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite

TARGET_MS = 20.0
RUN_TIMEOUT = 120.0  # seconds for one turn; a hang is an error, not a data point
EXIT_WAIT = 5.0  # seconds to let processes exit before counting leftovers
POLL = 0.01  # seconds between checks that a turn has finished (durations come from the agent)
CRITERIA = "The answer names the secret number"
ANSWER = "The secret number is 4217."
# One tool call per step, cycled: (tool, path of the local site for navigate).
SCRIPT: tuple[tuple[str, str | None], ...] = (
    ("navigate", "/about"),
    ("read_page", None),
    ("list_links", None),
    ("navigate", "/"),
    ("read_page", None),
)
_TAG = re.compile(r"\[bench ([\w-]+)\]")


# -- the scripted model --------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerCall:
    """One worker request as the fake model's handler saw it."""

    tag: str  # which turn (from the task message)
    step: int  # tool results already in the turn: the step this request's reply starts
    arrived: float  # time.perf_counter() as the handler was entered
    seconds: float  # time spent in the handler


class ScriptedModel:
    """The fake model's ``handler``: ``steps`` tool calls, then the answer; the evaluator accepts.

    Stateless per request (the step is the number of tool results since the user's message), so
    concurrent turns cannot disturb one another. Records every worker request; thread-safe.
    """

    def __init__(self, site: LocalSite, steps: int) -> None:
        self._site = site
        self._steps = steps
        self._lock = threading.Lock()
        self._calls: list[WorkerCall] = []

    def calls(self, tag: str) -> list[WorkerCall]:
        with self._lock:
            return sorted((c for c in self._calls if c.tag == tag), key=lambda c: c.step)

    def __call__(self, request: dict[str, Any]) -> Reply:
        arrived = time.perf_counter()
        if request.get("response_format") is not None:
            return Reply.json(
                {
                    "checks": [{"criterion": CRITERIA, "met": True, "evidence": "4217 is named."}],
                    "success_criteria_met": True,
                    "user_input_needed": False,
                    "feedback": "Accepted.",
                }
            )
        messages: list[dict[str, Any]] = request["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        step = sum(1 for m in messages[last_user + 1 :] if m["role"] == "tool")
        match = _TAG.search(str(messages[last_user]["content"]))
        reply = Reply.text(ANSWER) if step >= self._steps else self._tool_call(step)
        seconds = time.perf_counter() - arrived
        with self._lock:
            self._calls.append(WorkerCall(match.group(1) if match else "?", step, arrived, seconds))
        return reply

    def _tool_call(self, step: int) -> Reply:
        name, path = SCRIPT[step % len(SCRIPT)]
        return Reply.tool_call(name, {"url": self._site.url(path)} if path else {})


# -- running turns -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Turn:
    """One measured task, as it ended: its events and whatever went wrong with it."""

    tag: str
    events: list[Event]
    problems: list[str]

    @property
    def seconds(self) -> float:
        done = [e for e in self.events if isinstance(e, Finished)]
        return done[-1].seconds if done else float("nan")


async def run_turn(agent: Runner, tag: str, steps: int) -> Turn:
    """One task, start to ``Finished``; whatever went wrong is in ``problems``, never raised."""
    try:
        handle = await agent.start(
            f"[bench {tag}] Open the test site and find the secret number.", CRITERIA, f"bench-{tag}"
        )
        async with asyncio.timeout(RUN_TIMEOUT):
            # `done` is a threading.Event (for the UI's thread), set on this loop: polling it is
            # cheap, where a waiting thread per turn would fill the default executor.
            while not handle.done.is_set():
                await asyncio.sleep(POLL)
        events = handle.drain()
    except TimeoutError:
        await agent.cancel()
        return Turn(tag, [], [f"{tag}: did not finish within {RUN_TIMEOUT:g} s"])
    except Exception as exc:
        return Turn(tag, [], [f"{tag}: {type(exc).__name__}: {exc}"])
    problems: list[str] = []
    for event in events:
        if isinstance(event, ErrorEvent):
            problems.append(f"{tag}: error event ({event.category}): {event.message}")
        elif isinstance(event, ToolResult) and not event.ok:
            problems.append(f"{tag}: {event.name} failed: {event.output[:200]}")
    tools = sum(1 for e in events if isinstance(e, ToolResult))
    if tools != steps:
        problems.append(f"{tag}: {tools} tool results, expected {steps}")
    if not any(isinstance(e, FinalAnswer) and e.accepted for e in events):
        problems.append(f"{tag}: no accepted answer")
    return Turn(tag, events, problems)


@dataclass(frozen=True)
class Step:
    total: float  # seconds between consecutive worker requests
    model: float
    tool: float
    name: str = ""  # the step's tool
    end_shot: bool = False  # the step ended with a screenshot for the record (taken after the tool)

    @property
    def overhead(self) -> float:
        return self.total - self.model - self.tool


def steps_of(turn: Turn, calls: list[WorkerCall], steps: int) -> list[Step]:
    results = [e for e in turn.events if isinstance(e, ToolResult)]
    if [c.step for c in calls] != list(range(steps + 1)) or len(results) != steps:
        raise RuntimeError(
            f"turn {turn.tag} did not follow the script: worker requests at steps {[c.step for c in calls]}, "
            f"{len(results)} tool results"
        )
    shot_after: list[bool] = []  # a Screenshot between this step's result and the next step's
    for event in turn.events:
        if isinstance(event, ToolResult):
            shot_after.append(False)
        elif isinstance(event, Screenshot) and shot_after:
            shot_after[-1] = True
    return [
        Step(calls[k + 1].arrived - calls[k].arrived, calls[k].seconds, results[k].seconds, results[k].name,
             shot_after[k])
        for k in range(steps)
    ]  # fmt: skip


# -- the benchmark -------------------------------------------------------------------------------
@dataclass
class Results:
    steps: int
    runs: int
    sessions: int
    samples: list[Step] = field(default_factory=list)
    concurrent: list[Turn] = field(default_factory=list)
    wall_s: float = 0.0
    leaked_processes: int = 0
    leaked_contexts: int = 0


def log(message: str) -> None:
    print(f"agent_overhead: {message}", file=sys.stderr, flush=True)


async def run(steps: int, runs: int, sessions: int) -> Results:
    results = Results(steps, runs, sessions)
    with tempfile.TemporaryDirectory(prefix="sidekick-bench-") as tmp, LocalSite() as site, FakeOpenAI() as llm:
        data = Path(tmp)
        model = ScriptedModel(site, steps)
        llm.handler = model
        settings = Settings(
            data_dir=data,
            openai_base_url=llm.base_url,
            openai_api_key="test",
            model_retries=0,
            recursion_limit=2 * steps + 10,  # worker and tools per step, then the evaluator
            allow_private_network=True,  # the site is on 127.0.0.1
        )
        async with contextlib.AsyncExitStack() as shared:
            pool = BrowserPool(settings)
            shared.push_async_callback(pool.aclose)
            await pool.warm()
            baseline_contexts = pool.open_contexts  # the warm spare
            store = await Store(data / "sidekick.sqlite").open()
            shared.push_async_callback(store.aclose)
            models = Models(settings)
            shared.push_async_callback(models.aclose)

            async with contextlib.AsyncExitStack() as owned:

                deps = SessionDeps(settings=settings, pool=pool, store=store, models=models)

                def new_agent(name: str) -> Runner:
                    session = Session(name, deps)
                    owned.push_async_callback(session.aclose)
                    return session.runner

                log(f"overhead: 1 warm-up turn, then {runs} turns of {steps} steps in one session…")
                agent = new_agent("serial")
                for i in range(-1, runs):
                    turn = await run_turn(agent, "warmup" if i < 0 else f"r{i}", steps)
                    if turn.problems:
                        raise RuntimeError("a measured turn failed: " + "; ".join(turn.problems))
                    if i >= 0:
                        results.samples.extend(steps_of(turn, model.calls(turn.tag), steps))

                log(f"concurrency: {sessions} sessions at once…")
                agents = [new_agent(f"c{i}") for i in range(sessions)]
                started = time.perf_counter()
                results.concurrent = list(
                    await asyncio.gather(*(run_turn(a, f"c{i}", steps) for i, a in enumerate(agents)))
                )
                results.wall_s = time.perf_counter() - started
                for problem in (p for t in results.concurrent for p in t.problems):
                    log(problem)

            await pool.warm()  # every session is closed: only the spare should be open
            results.leaked_contexts = max(0, pool.open_contexts - baseline_contexts)
        results.leaked_processes = await processes_left()
    return results


async def processes_left() -> int:
    """Our descendant browser and driver processes, after up to EXIT_WAIT s to exit."""
    deadline = time.monotonic() + EXIT_WAIT
    while True:
        left = (await asyncio.to_thread(browser_processes, memory=False)).processes
        if left == 0 or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.1)


# -- reporting -----------------------------------------------------------------------------------
def ms(seconds: Sequence[float]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    values = [s * 1000 for s in seconds]
    return sig(statistics.median(values)), sig(p95(values))


def _median_ms(seconds: Sequence[float]) -> float | None:
    return ms(seconds)[0] if seconds else None


def report(results: Results) -> dict[str, Any]:
    """The ``--json`` object."""
    samples = results.samples
    overhead_median, overhead_p95 = ms([s.overhead for s in samples])
    tools = {s.name for s in samples}
    durations = [t.seconds for t in results.concurrent if t.seconds == t.seconds]  # drop NaN (no Finished)
    errors = sum(len(t.problems) for t in results.concurrent)
    return {
        "steps": results.steps,
        "runs": results.runs,
        "overhead_ms": {"median": overhead_median, "p95": overhead_p95},
        "components_ms": {
            "step_median": ms([s.total for s in samples])[0],
            "model_median": ms([s.model for s in samples])[0],
            "tool_median": ms([s.tool for s in samples])[0],
        },
        "steps_ms": {
            "median_by_tool": {n: ms([s.total for s in samples if s.name == n])[0] for n in sorted(tools)},
            "overhead_median_ending_with_screenshot": _median_ms([s.overhead for s in samples if s.end_shot]),
            "overhead_median_without": _median_ms([s.overhead for s in samples if not s.end_shot]),
        },
        "concurrent": {
            "sessions": results.sessions,
            "errors": errors,
            "wall_s": sig(results.wall_s),
            "run_s_median": sig(statistics.median(durations)) if durations else None,
            "run_s_p95": sig(p95(durations)) if durations else None,
        },
        "leaked_processes": results.leaked_processes,
        "leaked_contexts": results.leaked_contexts,
        "targets": {
            "overhead_median<=20ms": overhead_median <= TARGET_MS,
            "zero_errors": errors == 0,
        },
    }


def table(data: dict[str, Any], results: Results) -> str:
    samples = results.samples
    rows = [
        ("framework overhead", [s.overhead for s in samples]),
        ("  step (worker request to next)", [s.total for s in samples]),
        ("  model (fake's handler)", [s.model for s in samples]),
        ("  tool (ToolResult.seconds)", [s.tool for s in samples]),
        *((f"  step with {n}", [s.total for s in samples if s.name == n]) for n in sorted({s.name for s in samples})),
        ("  overhead, steps ending with a screenshot", [s.overhead for s in samples if s.end_shot]),
        ("  overhead, steps without (navigate's own)", [s.overhead for s in samples if not s.end_shot]),
    ]
    conc = data["concurrent"]
    width = max(len(label) for label, _ in rows)
    lines = [
        f"Agent overhead: {data['runs']} turns x {data['steps']} steps "
        f"({len(samples)} steps measured), fake model answering at once, {os.cpu_count()} CPUs",
        "",
        f"{'per step (ms)':<{width}}{'median':>10}{'p95':>10}",
        *(f"{label:<{width}}{ms(values)[0]:>10g}{ms(values)[1]:>10g}" for label, values in rows if values),
        "",
        "overhead = step - model - tool, per step; it includes the HTTP round trip to the fake model",
        "and the fake's own parsing and serialising (it times nothing itself).",
        "",
        f"Concurrency: {conc['sessions']} sessions x {data['steps']} steps at once on one loop",
        f"  errors {conc['errors']}, wall {conc['wall_s']:g} s, "
        f"turn median {conc['run_s_median']} s, p95 {conc['run_s_p95']} s",
        "",
        f"Left after closing: {data['leaked_processes']} browser/driver processes, {data['leaked_contexts']} contexts",
        cli.targets(data["targets"]),
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("agent_overhead", "Sidekick's own time per agent step, and many sessions' turns at once.")
    parser.add_argument("--steps", type=cli.at_least(1), default=5, help="tool steps per task")
    parser.add_argument("--runs", type=cli.at_least(1), default=20, help="turns measured one after another")
    parser.add_argument("--sessions", type=cli.at_least(1), default=10, help="sessions running a task at once")
    return parser


if __name__ == "__main__":
    args = parser().parse_args()
    results = asyncio.run(run(args.steps, args.runs, args.sessions))
    sys.exit(cli.show(report(results), lambda data: table(data, results), args.json))
