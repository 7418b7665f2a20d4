"""The MiniWoB++ smoke subset: real task pages through the real agent loop, scored by the pages.

It runs the benchmark as a subprocess, as a user would: a few task types, one episode each. The
scripted planner decides from the tool results alone, so a task that stops being solved means the
tools stopped telling a model what it needs (or stopped doing what they say).
"""

from tests.support.commands import run_json
from tests.support.miniwob import SMOKE, TASKS


def test_the_smoke_tasks_are_solved_in_no_more_steps_than_a_person_clicks() -> None:
    data = run_json("benchmarks.miniwob", "--tasks", ",".join(SMOKE), timeout=240)

    assert set(data["tasks"]) == set(SMOKE)
    for task, result in data["tasks"].items():
        assert result["solved"] == result["tried"] == 1, (task, result, data["planner_problems"])
        assert result["steps_median"] <= result["person_clicks"] <= TASKS[task], (task, result)
        assert result["seconds_median"] > 0
    assert data["targets"] == {"every_task_type_solved": True, "median_steps<=person": True}
