"""Faults and bad input (issue 5, items 6 and 7): each ends in a clear message, the session keeps
working, the thread's history stays valid, and no browser process is left behind.

The scenarios live in ``benchmarks/faults.py``, so the fault table runs the same code. Each one
injects its fault into a real pool (or the real facade), the fake model and the local site, checks
what the user or the model was told, then runs a normal turn on the same thread whose first model
request must carry a valid history. These tests run one scenario each and assert what it reported;
closing the pool afterwards must leave no Chromium or driver process descending from this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from benchmarks.faults import (
    BAD_SETTINGS,
    HUGE_TOOL_SECONDS,
    MESSAGE_LIMIT_CHARS,
    MODEL_TIMEOUT,
    RSS_AGAIN_MB,
    RSS_LIMIT_MB,
    TOOL_TIMEOUT,
    Env,
    Result,
    history_problems,
    processes_after_close,
    run_scenario,
)
from sidekick.browser.pool import BrowserPool
from sidekick.config import Settings
from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.fakes.site import LocalSite

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
async def env(llm: FakeOpenAI, site: LocalSite, tmp_path: Path) -> AsyncIterator[Env]:
    llm.reset()
    pool = BrowserPool(Settings(data_dir=tmp_path / "pool", allow_private_network=True))
    try:
        yield Env(llm=llm, site=site, pool=pool, workdir=tmp_path)
    finally:
        await pool.aclose()
    assert await processes_after_close() == 0, "a browser or driver process outlived the pool"


async def recovered(env: Env, name: str) -> Result:
    result = await run_scenario(env, name)
    assert result.recovered, result.message
    assert result.leaked_processes == 0
    assert result.recover_s is not None and result.recover_s >= 0
    return result


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


# -- the browser ---------------------------------------------------------------------------------------
async def test_chromium_killed_mid_navigation_is_reported_and_relaunched(env: Env) -> None:
    result = await recovered(env, "chromium_killed")
    assert "The browser stopped unexpectedly (crashed or was killed)" in result.message
    assert result.message.startswith("Error:")  # a failed tool result the model read, not a crash
    assert result.details["launches_after"] == result.details["launches_before"] + 1
    killed = result.details["killed_pid"]
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    assert env.pool.crashes == 1


async def test_a_page_that_never_loads_times_out_with_the_time_in_the_message(env: Env) -> None:
    result = await recovered(env, "page_never_loads")
    assert f"did not finish within the {TOOL_TIMEOUT:g} s time limit" in result.message
    assert "/hang" in result.message
    assert result.details["tool_seconds"] < TOOL_TIMEOUT + 10  # then stopping the load and a screenshot


async def test_a_10_mb_page_gives_capped_text_in_bounded_time_and_memory(env: Env) -> None:
    result = await recovered(env, "huge_page")
    assert max(result.details["result_chars"]) < MESSAGE_LIMIT_CHARS
    assert len(result.details["result_chars"]) == 4
    assert max(result.details["tool_seconds"]) < HUGE_TOOL_SECONDS
    assert result.details["rss_growth_mb"] < RSS_LIMIT_MB
    assert result.details["rss_again_mb"] < RSS_AGAIN_MB


# -- the model -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("model_500", "The model server failed (500). Try again in a moment."),
        ("model_429", "The model server is rate-limiting requests (429)."),
        ("model_hangs", f"did not answer within {MODEL_TIMEOUT:g} s. Try again, or raise SIDEKICK_MODEL_TIMEOUT."),
    ],
)
async def test_model_failures_end_in_a_model_error_and_the_next_run_works(env: Env, name: str, message: str) -> None:
    result = await recovered(env, name)
    assert message in result.message


@pytest.mark.parametrize("name", ["model_garbage_json", "model_garbage_html"])
async def test_a_garbage_model_reply_through_the_facade_ends_the_run_and_the_next_works(env: Env, name: str) -> None:
    result = await recovered(env, name)
    assert "sent a reply Sidekick could not read" in result.message and "OPENAI_BASE_URL" in result.message
    assert result.details["category"] == "model"


# -- tools ---------------------------------------------------------------------------------------------
async def test_bad_tool_arguments_are_results_the_model_reads(env: Env) -> None:
    result = await recovered(env, "tool_bad_arguments")
    number, missing = result.message.split(" / ")
    assert number == "Error: invalid arguments for navigate: Input should be a valid string"
    assert missing == "Error: invalid arguments for navigate: Field required"


async def test_a_tool_that_raises_is_a_result_the_model_reads(env: Env) -> None:
    result = await recovered(env, "tool_raises")
    assert result.message == "Error: explode failed unexpectedly (RuntimeError: boom now)"


async def test_a_tool_call_with_malformed_json_arguments_leaves_a_valid_history(env: Env) -> None:
    result = await run_scenario(env, "tool_malformed_arguments")
    assert result.recovered, result.message


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty_message", "Type a message first."),
        ("whitespace_message", "Type a message first."),
        ("message_100kb", "That message is 100,007 characters; the limit is 20,000."),
        ("long_criteria", "The success criteria are 5,199 characters; keep them under 2,000."),
        ("malformed_thread_id", "That conversation id is not valid; start a new conversation."),
    ],
)
async def test_bad_input_is_refused_clearly_and_the_conversation_is_kept(env: Env, name: str, message: str) -> None:
    result = await recovered(env, name)
    assert result.message.startswith(message)


async def test_control_characters_are_removed_and_only_control_characters_refused(env: Env) -> None:
    result = await recovered(env, "control_characters")
    assert result.message == "Type a message first. / sent as 'What is[31m my name?'"


async def test_an_unknown_thread_id_opens_an_empty_conversation(env: Env) -> None:
    await recovered(env, "unknown_thread_id")


async def test_malformed_environment_values_name_the_variable(env: Env) -> None:
    result = await recovered(env, "malformed_env_value")
    told = result.details["messages"]
    assert len(told) == len(BAD_SETTINGS)
    for var, message in zip(BAD_SETTINGS, told, strict=True):
        assert message.startswith(var), message
    assert told[0] == "SIDEKICK_TOOL_TIMEOUT must be a number (got 'soon')."


# -- the report ----------------------------------------------------------------------------------------
def test_the_benchmark_prints_one_json_object() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.faults", "--json", "--only", "model_429,empty_message"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"scenarios", "all_recovered", "total_leaked"}
    assert [s["name"] for s in data["scenarios"]] == ["model_429", "empty_message"]
    for scenario in data["scenarios"]:
        assert set(scenario) == {"name", "recovered", "message", "recover_s", "leaked_processes"}
        assert scenario["recovered"] is True and scenario["recover_s"] >= 0 and scenario["leaked_processes"] == 0
    assert data["all_recovered"] is True and data["total_leaked"] == 0
