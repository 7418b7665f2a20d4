"""The actions benchmark runs end to end, small, and reports well-formed numbers for every action.

Timings are checked for sense only (positive, the floor contains the bare action), never against
the target: this machine's load is not the benchmark's business.
"""

from benchmarks.actions import ACTIONS
from tests.support.commands import run_json


def test_every_action_is_timed_against_its_raw_playwright_floor() -> None:
    data = run_json("benchmarks.actions", "--reps", "2", timeout=240)

    assert set(data["actions"]) == set(ACTIONS)
    assert data["web_policy"].startswith("on")
    for action, row in data["actions"].items():
        assert 0 < row["bare_ms_median"] <= row["floor_ms_median"], (action, row)
        assert row["tool_ms_median"] > 0 and row["ratio"] > 0, (action, row)
        assert isinstance(row["target_met"], bool)
