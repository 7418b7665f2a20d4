"""The MiniWoB++ smoke subset: real task pages through the real agent loop, scored by the pages.

It runs the benchmark as a subprocess, as a user would: a few task types, one episode each. The
scripted planner decides from the tool results alone, so a task that stops being solved means the
tools stopped telling a model what it needs (or stopped doing what they say).
"""

import json

from tests.support.commands import run_json, run_module
from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.miniwob import SMOKE, TASKS, Planner


def test_the_smoke_tasks_are_solved_in_no_more_steps_than_a_person_clicks() -> None:
    data = run_json("benchmarks.miniwob", "--tasks", ",".join(SMOKE), timeout=240)

    assert set(data["tasks"]) == set(SMOKE)
    for task, result in data["tasks"].items():
        assert result["solved"] == result["tried"] == 1, (task, result, data["planner_problems"])
        assert result["steps_median"] <= result["person_clicks"] <= TASKS[task], (task, result)
        assert result["seconds_median"] > 0
    assert data["targets"] == {"every_task_type_solved": True, "median_steps<=person": True}


def test_model_sends_the_tasks_to_the_model_behind_openai_base_url(llm: FakeOpenAI) -> None:
    """``--model NAME`` as a user with a model runs it; the endpoint here is the fake server driven
    by the same scripted planner, standing in for that model."""
    llm.handler = Planner()
    env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test"}
    args = ("--tasks", "click-button", "--model", "stand-in", "--episode-seconds", "60", "--json")
    done = run_module("benchmarks.miniwob", *args, timeout=120, env=env)

    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    why = f"{json.dumps(data['tasks'])}\n{done.stderr[-2000:]}"
    assert data["model"] == "stand-in" and data["tasks"]["click-button"]["solved"] == 1, why
    assert llm.requests and {r.get("model") for r in llm.requests} == {"stand-in"}
