"""One scenario run: timed, judged against the message it must end in, and its leftovers counted.

- **recover_s**: from the fault to the end of the next successful turn on the same thread.
- **leaked_processes**: after the scenario closed what it opened (and waiting up to EXIT_WAIT for
  exits), Chromium and Playwright-driver processes descending from this process that are not the
  live pool's own (its driver, its Chromium and that Chromium's children), plus any process of a
  Chromium the scenario killed that is still alive anywhere. Browser contexts left open beyond the
  pool's warm spare fail the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import psutil

from sidekick.procs import browser_processes
from tests.support.faults.harness import Env, Outcome, Scenario, ScenarioFailed, subtree
from tests.support.waiting import until_empty

SCENARIO_TIMEOUT = 180.0
EXIT_WAIT = 5.0  # seconds to let processes exit before counting leftovers


@dataclass(frozen=True)
class Result:
    name: str
    recovered: bool
    message: str  # the clear message the fault ended in, or what went wrong
    recover_s: float | None
    leaked_processes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recovered": self.recovered,
            "message": self.message,
            "recover_s": None if self.recover_s is None else round(self.recover_s, 3),
            "leaked_processes": self.leaked_processes,
        }


def _running(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def _leftover_pids(env: Env) -> set[int]:
    own = subtree(env.pool.browser_pid) if env.pool.browser_pid is not None else set()
    if env.pool_driver is not None:
        own.add(env.pool_driver)
    left = {p.pid for p in browser_processes(memory=False).procs} - own
    return left | {pid for pid in env.must_exit - own if _running(pid)}


async def leftovers(env: Env) -> tuple[int, int]:
    """(processes, contexts) left beyond the live pool's own, waiting up to EXIT_WAIT for exits."""
    env.note_pool()
    contexts = 0
    if env.pool.browser_connected():
        await env.pool.warm()
        contexts = max(0, env.pool.open_contexts - 1)  # beyond the warm spare
    left = await asyncio.to_thread(until_empty, lambda: _leftover_pids(env), EXIT_WAIT)
    return len(left), contexts


async def processes_after_close() -> int:
    """Browser and driver processes still descending from this process, up to EXIT_WAIT later."""
    left = await asyncio.to_thread(until_empty, lambda: browser_processes(memory=False).procs, EXIT_WAIT)
    return len(left)


def _judge(scenario: Scenario, outcome: Outcome) -> str:
    """What is wrong with how the fault ended ("" when it ended in the promised message)."""
    missing = [fragment for fragment in scenario.says if fragment not in outcome.message]
    return f"the message does not say {missing[0]!r}: {outcome.message!r}" if missing else ""


async def run_scenario(env: Env, scenario: Scenario) -> Result:
    """One scenario, timed and accounted; a failure is a result, never an exception."""
    env.llm.reset()
    env.site.reset()
    env.must_exit = set()
    outcome: Outcome | None = None
    failure = ""
    budget = asyncio.timeout(SCENARIO_TIMEOUT)
    try:
        async with budget:
            outcome = await scenario.fault(env)
        failure = _judge(scenario, outcome)
    except ScenarioFailed as exc:
        failure = str(exc)
    except Exception as exc:
        failure = (
            f"the scenario did not finish within {SCENARIO_TIMEOUT:g} s"
            if budget.expired()
            else f"{type(exc).__name__}: {exc}"
        )
    processes, contexts = await leftovers(env)
    if outcome is not None and contexts and not failure:
        failure = f"{contexts} browser context{'s' if contexts != 1 else ''} left open"
    if outcome is None or failure:
        return Result(scenario.name, False, failure, None, processes)
    return Result(scenario.name, True, outcome.message, outcome.recovered_at - outcome.fault_at, processes)
