"""Bounded prompts: how a long run's worker requests grow, with and without the context budget.

Run from the project root::

    python -m benchmarks.context               # a table
    python -m benchmarks.context --json        # one JSON object on stdout
    python -m benchmarks.context --steps 20 --kb 16

The agent loop is real: the graph, LangGraph's SQLite checkpointer, langchain-openai over real HTTP
to the fake model (``tests.support.fakes.openai_server.FakeOpenAI``), real Chromium through a
:class:`~sidekick.browser.BrowserPool`, and the local site's chapters
(``tests.support.fakes.site``, ``/chapter/<n>?kb=K``: at least K KB of text each, its code word
first). The scripted model is asked to read chapters 1 to ``--steps`` and name the last one's code
word. Each step is one reply with two calls, ``navigate`` to the next chapter and ``read_page``; like
a real model, it learns where it is from the newest page text in the request it gets, and finally
answers with the code word it reads there. The evaluator accepts only the right code word, so a
request that lost the newest page fails the task.

The same task runs twice in this process, on the same pool, site and fake model:

- **unbounded**: ``context_tokens`` so large that nothing is shaped, i.e. the prompts as they were
  before the budget (every tool result whole, for ever);
- **bounded**: the configured budget (``SIDEKICK_CONTEXT_TOKENS``, default 24,000).

Each worker request is measured as the fake model received it: estimated tokens
(``count_tokens_approximately`` over its messages and tool schemas, the estimate the agent budgets
with) and bytes of its JSON body. "Step k" is the request after k steps. Reported: the request at
step ``--steps`` over the one at step 5, the tokens of every worker request added up (bounded over
unbounded), the largest request against the budget, and whether each run's answer was accepted.

The exit code is 0 whether or not a target is met: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages.utils import count_tokens_approximately

from benchmarks import cli
from benchmarks.cli import ratio
from sidekick.browser.pool import BrowserPool
from sidekick.events import ErrorEvent, Event, FinalAnswer, ToolResult
from sidekick.runs import Runner
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite, chapter_code
from tests.support.runs import agent_settings, collect, open_rig

UNBOUNDED = 10**9  # tokens: a budget nothing reaches, so nothing is shaped
REFERENCE_STEP = 5
STEP_RATIO_TARGET = 1.5
TOTAL_RATIO_TARGET = 1 / 3
RUN_TIMEOUT = 600.0  # seconds for one run; a hang is an error, not a data point
CRITERIA = "The answer gives the code word of the last chapter"
_CODE = re.compile(r"The code word of chapter (\d+) is ([\w-]+)\.")


# -- the scripted model --------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One worker request as the fake model received it."""

    step: int  # steps already taken: chapters read
    tokens: int
    bytes: int


class ScriptedReader:
    """The fake model's ``handler``: navigate to and read chapter after chapter, then answer.

    It knows where it is only from the request, as a real model would: the newest code word in the
    tool results says which chapter it read last. Thread-safe; records every worker request.
    """

    def __init__(self, site: LocalSite, steps: int, kb: float) -> None:
        self._site = site
        self._steps = steps
        self._kb = kb
        self._lock = threading.Lock()
        self.requests: list[Request] = []

    def __call__(self, request: dict[str, Any]) -> Reply:
        if request.get("response_format") is not None:
            return self._verdict(request)
        messages: list[dict[str, Any]] = request["messages"]
        tools = [t["function"] for t in request.get("tools", [])]
        size = Request(
            step=self._chapter_read(messages),
            tokens=count_tokens_approximately(messages, tools=tools),
            bytes=len(json.dumps(request).encode()),
        )
        with self._lock:
            self.requests.append(size)
        if size.step >= self._steps:
            last = self._newest_code(messages)
            return Reply.text(f"The code word of chapter {self._steps} is {last}." if last else "I lost my place.")
        url = self._site.url(f"/chapter/{size.step + 1}?kb={self._kb:g}")
        return Reply.tool_calls([("navigate", {"url": url}), ("read_page", {})])

    def _chapter_read(self, messages: list[dict[str, Any]]) -> int:
        for m in reversed(messages):
            if m["role"] == "tool" and (found := _CODE.search(str(m["content"]))):
                return int(found.group(1))
        return 0

    def _newest_code(self, messages: list[dict[str, Any]]) -> str | None:
        for m in reversed(messages):
            if m["role"] == "tool" and (found := _CODE.search(str(m["content"]))):
                return found.group(2) if int(found.group(1)) == self._steps else None
        return None

    def _verdict(self, request: dict[str, Any]) -> Reply:
        answer = str(request["messages"][-1]["content"]).split("The assistant's final answer:", 1)[-1]
        met = chapter_code(self._steps) in answer
        evidence = "The code word is right." if met else "That is not the last chapter's code word."
        return Reply.json(
            {
                "checks": [{"criterion": CRITERIA, "met": met, "evidence": evidence}],
                "success_criteria_met": met,
                "user_input_needed": False,
                "feedback": "Accepted." if met else "Read the last chapter and give its code word.",
            }
        )


# -- running the task ----------------------------------------------------------------------------
@dataclass
class RunResult:
    name: str
    budget: int
    requests: list[Request] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def at(self, step: int) -> Request | None:
        """The first worker request after ``step`` steps."""
        return next((r for r in self.requests if r.step == step), None)

    @property
    def finished(self) -> bool:
        return any(isinstance(e, FinalAnswer) and e.accepted for e in self.events)


log = cli.logger("context")


async def run_task(agent: Runner, site: LocalSite, steps: int, kb: float) -> tuple[list[Event], list[str]]:
    """One task, start to ``Finished``; whatever went wrong is in the problems, never raised."""
    message = f"Read chapters 1 to {steps} at {site.url(f'/chapter/1?kb={kb:g}')} and tell me the last one's code word."
    try:
        events = await collect(await agent.start(message, CRITERIA, "long-run"), timeout=RUN_TIMEOUT)
    except TimeoutError:
        await agent.cancel()
        return [], [f"did not finish within {RUN_TIMEOUT:g} s"]
    problems = [f"error event ({e.category}): {e.message}" for e in events if isinstance(e, ErrorEvent)]
    problems += [f"{e.name} failed: {e.output[:200]}" for e in events if isinstance(e, ToolResult) and not e.ok]
    return events, problems


async def run(steps: int, kb: float) -> list[RunResult]:
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="sidekick-bench-") as tmp, LocalSite() as site, FakeOpenAI() as llm:
        common: dict[str, Any] = {
            "model_timeout_seconds": 60,
            "tool_timeout_seconds": 30,
            "turn_timeout_seconds": RUN_TIMEOUT,
            "recursion_limit": 2 * steps + 10,  # worker and tools per step, then the evaluator
            "allow_private_network": True,  # the site is on 127.0.0.1
        }
        runs = {
            "unbounded": agent_settings(Path(tmp) / "unbounded", llm, context_tokens=UNBOUNDED, **common),
            "bounded": agent_settings(Path(tmp) / "bounded", llm, **common),
        }
        async with contextlib.AsyncExitStack() as shared:
            pool = BrowserPool(runs["bounded"])
            shared.push_async_callback(pool.aclose)
            await pool.warm()
            for name, settings in runs.items():
                log(f"{name} (budget {settings.context_tokens:,} tokens): {steps} steps over {kb:g} KB pages…")
                model = ScriptedReader(site, steps, kb)
                llm.handler = model
                async with open_rig(settings, pool, name) as rig:
                    events, problems = await run_task(rig.runner, site, steps, kb)
                result = RunResult(name, settings.context_tokens, model.requests, events, problems)
                if not result.finished:
                    result.problems.append("no accepted answer")
                for problem in result.problems:
                    log(f"{name}: {problem}")
                results.append(result)
    return results


# -- reporting -----------------------------------------------------------------------------------
def summary(result: RunResult, steps: int) -> dict[str, Any]:
    first, last = result.at(REFERENCE_STEP), result.at(steps)
    return {
        "budget": result.budget,
        "finished": result.finished,
        "problems": len(result.problems),
        "worker_requests": len(result.requests),
        "tokens": {
            f"step_{REFERENCE_STEP}": first.tokens if first else None,
            f"step_{steps}": last.tokens if last else None,
            "max": max((r.tokens for r in result.requests), default=0),
            "total": sum(r.tokens for r in result.requests),
        },
        "bytes": {
            f"step_{REFERENCE_STEP}": first.bytes if first else None,
            f"step_{steps}": last.bytes if last else None,
            "max": max((r.bytes for r in result.requests), default=0),
            "total": sum(r.bytes for r in result.requests),
        },
        "tokens_by_step": [r.tokens if (r := result.at(k)) else None for k in range(steps + 1)],
    }


def report(results: list[RunResult], steps: int, kb: float) -> dict[str, Any]:
    """The ``--json`` object."""
    runs = {r.name: summary(r, steps) for r in results}
    ref, end = f"step_{REFERENCE_STEP}", f"step_{steps}"
    unbounded, bounded = runs["unbounded"], runs["bounded"]
    ratios = {
        "bounded_step_ratio": ratio(bounded["tokens"][end], bounded["tokens"][ref]),
        "unbounded_step_ratio": ratio(unbounded["tokens"][end], unbounded["tokens"][ref]),
        "total_tokens_bounded_over_unbounded": ratio(bounded["tokens"]["total"], unbounded["tokens"]["total"]),
        "total_bytes_bounded_over_unbounded": ratio(bounded["bytes"]["total"], unbounded["bytes"]["total"]),
    }
    step_ratio, total_ratio = ratios["bounded_step_ratio"], ratios["total_tokens_bounded_over_unbounded"]
    return {
        "steps": steps,
        "page_kb": kb,
        "unbounded": unbounded,
        "bounded": bounded,
        "ratios": ratios,
        "targets": {
            f"step_{steps}/step_{REFERENCE_STEP}<={STEP_RATIO_TARGET:g}": step_ratio is not None
            and step_ratio <= STEP_RATIO_TARGET,
            "total<=1/3_of_unbounded": total_ratio is not None and total_ratio <= TOTAL_RATIO_TARGET,
            "under_budget": bounded["tokens"]["max"] <= bounded["budget"],
            "finished": bool(bounded["finished"]),
        },
    }


def table(data: dict[str, Any]) -> str:
    steps = data["steps"]
    runs = {name: data[name] for name in ("unbounded", "bounded")}
    marks = sorted({0, REFERENCE_STEP, *range(10, steps, 10), steps})
    width = 22
    lines = [
        f"Worker request size over a {steps}-step run ({data['page_kb']:g} KB pages; tokens estimated, "
        "tool schemas included)",
        "",
        f"{'step':<{width}}" + "".join(f"{name:>14}" for name in runs),
        *(
            f"{mark:<{width}}" + "".join(f"{run['tokens_by_step'][mark] or '-':>14}" for run in runs.values())
            for mark in marks
        ),
        "",
        f"{'budget':<{width}}" + "".join(f"{run['budget']:>14,}" for run in runs.values()),
        f"{'largest request':<{width}}" + "".join(f"{run['tokens']['max']:>14,}" for run in runs.values()),
        f"{'total tokens sent':<{width}}" + "".join(f"{run['tokens']['total']:>14,}" for run in runs.values()),
        f"{'total bytes sent':<{width}}" + "".join(f"{run['bytes']['total']:>14,}" for run in runs.values()),
        f"{'answer accepted':<{width}}" + "".join(f"{'yes' if run['finished'] else 'NO':>14}" for run in runs.values()),
        "",
        f"step {steps} / step {REFERENCE_STEP}: bounded {data['ratios']['bounded_step_ratio']}, "
        f"unbounded {data['ratios']['unbounded_step_ratio']}",
        f"total tokens, bounded / unbounded: {data['ratios']['total_tokens_bounded_over_unbounded']} "
        f"(bytes {data['ratios']['total_bytes_bounded_over_unbounded']})",
        cli.targets(data["targets"]),
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("context", "Worker request size over a long run, with the context budget and without.")
    parser.add_argument(
        "--steps",
        type=cli.at_least(REFERENCE_STEP + 1),
        default=60,
        help=f"chapters read, one step each (more than {REFERENCE_STEP}, the step it is compared with)",
    )
    parser.add_argument("--kb", type=cli.positive, default=8.0, help="KB of text on each chapter page")
    return parser


def measure(args: argparse.Namespace) -> dict[str, Any]:
    return report(asyncio.run(run(args.steps, args.kb)), args.steps, args.kb)


if __name__ == "__main__":
    sys.exit(cli.main(parser(), measure, table))
