"""Faults and bad input (issue 5, items 6 and 7): each ends in a clear message, the session keeps
working, the thread's history stays valid, and no browser process is left behind.

The scenarios live in ``tests/support/faults/``, so the fault table (``benchmarks/faults.py``) runs
the same code and judges it the same way. Each one injects its fault into the live pool (or the
real facade), the fake model and the local site, checks how it was handled, then runs a normal turn
on the same thread whose first model request must carry a valid history. One test per scenario, all
on one live pool: each asserts its scenario recovered, ended in the message the scenario promises
and left no process behind; closing the pool at the end must leave nothing descending from this
process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.commands import run_json
from tests.support.faults.accounting import processes_after_close, run_scenario
from tests.support.faults.harness import Env, Scenario, history_problems, open_env
from tests.support.faults.scenarios import SCENARIOS

REPORTED = ["model_429", "empty_message"]  # the small subset the subprocess report runs


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with open_env() as opened:
        yield opened
    assert await processes_after_close() == 0, "a browser or driver process outlived the live pool"


# -- the checker the scenarios rely on ---------------------------------------------------------------
def call(call_id: str, name: str = "navigate") -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def test_the_history_check_finds_what_openai_would_reject() -> None:
    user = {"role": "user", "content": "hi"}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b", "read_page")]}
    answered = [{"role": "tool", "tool_call_id": "a", "content": "ok"}, {"role": "tool", "tool_call_id": "b"}]
    assert history_problems([user, assistant, *answered, {"role": "assistant", "content": "done"}, user]) == []
    assert history_problems([user, assistant, answered[0], user]) == [
        "assistant tool call b (read_page) has no tool result"
    ]
    assert history_problems([user, assistant]) == [
        "assistant tool call a (navigate) has no tool result",
        "assistant tool call b (read_page) has no tool result",
    ]
    assert history_problems([user, {"role": "tool", "tool_call_id": "x"}]) == [
        "tool result x answers no assistant tool call"
    ]


# -- every scenario ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
async def test_the_fault_ends_in_its_clear_message_and_the_next_turn_works(env: Env, scenario: Scenario) -> None:
    result = await run_scenario(env, scenario)
    assert result.recovered, result.message
    assert scenario.says, "a scenario must say which message it ends in"
    for fragment in scenario.says:
        assert fragment in result.message
    assert result.leaked_processes == 0
    assert result.recover_s is not None and result.recover_s >= 0


async def test_a_message_other_than_the_promised_one_fails_the_scenario(env: Env) -> None:
    promised = SCENARIOS["model_429"]
    wrong = Scenario(promised.name, promised.fault, ("The model server is fine.",))
    result = await run_scenario(env, wrong)
    assert not result.recovered and result.recover_s is None
    assert result.message.startswith("the message does not say 'The model server is fine.'")
    assert "rate-limiting requests (429)" in result.message
    assert result.leaked_processes == 0


# -- the report ----------------------------------------------------------------------------------------
def test_the_benchmark_prints_one_json_object() -> None:
    data = run_json("benchmarks.faults", "--only", ",".join(REPORTED), timeout=180)
    assert set(data) == {"scenarios", "all_recovered", "total_leaked"}
    assert [s["name"] for s in data["scenarios"]] == REPORTED
    for scenario in data["scenarios"]:
        assert set(scenario) == {"name", "recovered", "message", "recover_s", "leaked_processes"}
        assert scenario["recovered"] is True and scenario["recover_s"] >= 0 and scenario["leaked_processes"] == 0
        assert all(fragment in scenario["message"] for fragment in SCENARIOS[scenario["name"]].says)
    assert data["all_recovered"] is True and data["total_leaked"] == 0
