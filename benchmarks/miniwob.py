"""MiniWoB++ task pages solved through Sidekick's real agent loop.

Run from the project root::

    python -m benchmarks.miniwob                         # every task type, a table
    python -m benchmarks.miniwob --episodes 3 --json     # one JSON object on stdout
    python -m benchmarks.miniwob --tasks click-button,login-user
    OPENAI_BASE_URL=… OPENAI_API_KEY=… python -m benchmarks.miniwob --model gpt-4.1-mini

The task pages come from the ``miniwob`` wheel (dev dependency ``miniwob==1.1.0``), served on
127.0.0.1 (``tests.support.miniwob.MiniWobSite``). Each episode is one agent turn in one session:
real Chromium through a :class:`~sidekick.browser.BrowserPool` with the web policy's guard installed
(private network allowed for the local pages), real HTTP to the model, the real graph and tools.

Without ``--model`` the model is the fake OpenAI server (``tests.support.fakes.openai_server``)
whose handler is ``tests.support.miniwob.Planner``: a scripted planner that decides each step only
from the text the tools returned (navigate, click START, read the instruction in the snapshot, act
by ref). With ``--model NAME`` a real model behind ``OPENAI_BASE_URL`` does the same tasks, and
each page's time limit is raised to ``--episode-seconds`` (a model thinks longer than 10 s).

Success is the page's own reward (``WOB_RAW_REWARD_GLOBAL`` > 0). **steps** counts the tool calls
after START; **person** is the clicks and fields a person needs for that episode's instruction
(``tests.support.miniwob.person_clicks``; for navigate-tree, the folders a person who cannot see
inside closed ones opens, shallowest first, until the name shows, and the click), both as medians.
The exit code is 0 whether or not a target is met: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.churn import sig
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from sidekick.web.guard import Guard
from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.miniwob import TASKS, Episode, MiniWobSite, Planner, run_task
from tests.support.runs import agent_settings, open_rig

EPISODE_TIMEOUT = 60.0  # seconds for one episode with the scripted planner
MODEL_EPISODE_TIMEOUT = 600.0


async def run(tasks: Sequence[str], episodes: int, model: str | None, episode_seconds: float) -> dict[str, Any]:
    results: list[Episode] = []
    planner = Planner()
    with tempfile.TemporaryDirectory(prefix="sidekick-miniwob-") as tmp, FakeOpenAI() as llm:
        llm.handler = planner
        if model is None:
            settings = agent_settings(Path(tmp), llm, allow_private_network=True, tool_timeout_seconds=10)
            timeout = EPISODE_TIMEOUT
        else:
            base_url = os.environ.get("OPENAI_BASE_URL")
            settings = Settings(data_dir=Path(tmp), model=model, allow_private_network=True, openai_base_url=base_url)
            timeout = MODEL_EPISODE_TIMEOUT
        pool = BrowserPool(settings, guard=Guard(settings.url_policy()))
        try:
            with MiniWobSite(episode_seconds=None if model is None else episode_seconds) as site:
                async with open_rig(settings, pool) as rig:
                    for task in tasks:
                        for i in range(episodes):
                            try:
                                episode = await run_task(rig, site, task, f"{task}-{i}", timeout=timeout)
                            except Exception as exc:  # one broken episode is a result, not the end
                                episode = Episode(task, 0.0, 0, 0.0, f"{type(exc).__name__}: {exc}")
                            results.append(episode)
                            print(f"miniwob: {task} #{i + 1}: reward {episode.reward:g}", file=sys.stderr)
        finally:
            await pool.aclose()
    return report(tasks, results, model, planner.problems)


def report(tasks: Sequence[str], results: list[Episode], model: str | None, problems: list[str]) -> dict[str, Any]:
    per_task: dict[str, Any] = {}
    for task in tasks:
        mine = [e for e in results if e.task == task]
        solved = [e for e in mine if e.solved]
        per_task[task] = {
            "solved": len(solved),
            "tried": len(mine),
            "steps_median": sig(statistics.median(e.steps for e in mine)) if mine else None,
            "person_clicks": sig(statistics.median(e.person for e in mine)) if mine else TASKS.get(task),
            "seconds_median": sig(statistics.median(e.seconds for e in mine)) if mine else None,
            "problems": sorted({e.problem for e in mine if e.problem})[:3],
        }
    solved_types = sum(1 for t in per_task.values() if t["solved"] == t["tried"] and t["tried"])
    within = sum(
        1
        for t in per_task.values()
        if t["steps_median"] is not None and t["person_clicks"] is not None and t["steps_median"] <= t["person_clicks"]
    )
    return {
        "model": model or "scripted planner (fake OpenAI server)",
        "tasks": per_task,
        "solved": sum(t["solved"] for t in per_task.values()),
        "tried": sum(t["tried"] for t in per_task.values()),
        "task_types_solved": solved_types,
        "task_types": len(per_task),
        "planner_problems": problems[:10],
        "targets": {
            "every_task_type_solved": solved_types == len(per_task),
            "median_steps<=person": within == len(per_task),
        },
    }


def table(data: dict[str, Any]) -> str:
    lines = [
        f"MiniWoB++ through Sidekick's agent loop — model: {data['model']}",
        "",
        f"{'task':<24}{'solved':>9}{'steps':>8}{'person':>8}{'seconds':>10}",
    ]
    for task, t in data["tasks"].items():
        solved = f"{t['solved']}/{t['tried']}"
        lines.append(f"{task:<24}{solved:>9}{t['steps_median']:>8g}{t['person_clicks']:>8g}{t['seconds_median']:>10g}")
        for problem in t["problems"]:
            lines.append(f"    {problem}")
    lines += [
        "",
        f"solved {data['solved']}/{data['tried']} episodes; "
        f"{data['task_types_solved']}/{data['task_types']} task types solved every time",
        "targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in data["targets"].items()),
        "steps = tool calls after START (median); person = clicks and fields a person needs.",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.miniwob", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names (default: all)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per task")
    parser.add_argument("--model", default=None, help="a real model behind OPENAI_BASE_URL instead of the planner")
    parser.add_argument("--episode-seconds", type=float, default=300.0, help="page time limit with --model")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not args.tasks or args.episodes < 1:
        parser.error("--tasks needs a task and --episodes at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = asyncio.run(run(args.tasks, args.episodes, args.model, args.episode_seconds))
    print(json.dumps(data) if args.json else table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
