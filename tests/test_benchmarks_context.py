"""The bounded-prompts benchmark runs end to end, small, and reports well-formed figures.

It runs as a subprocess, as a user would run it, with fewer steps than the benchmark's own 60, so
its targets (which are about a 60-step run) are only checked to be reported, never to be met.
"""

from tests.support.commands import run_json


def test_context_benchmark_reports_both_runs_and_the_budget_shrinks_what_is_sent() -> None:
    steps = 8
    data = run_json("benchmarks.context", "--steps", str(steps), "--kb", "8", timeout=240)

    assert set(data) == {"steps", "page_kb", "unbounded", "bounded", "ratios", "targets"}
    assert data["steps"] == steps and data["page_kb"] == 8
    unbounded, bounded = data["unbounded"], data["bounded"]
    for run in (unbounded, bounded):
        assert set(run) == {"budget", "finished", "problems", "worker_requests", "tokens", "bytes", "tokens_by_step"}
        assert run["finished"] is True and run["problems"] == 0
        assert run["worker_requests"] == steps + 1  # one per step, then the answer
        for unit in ("tokens", "bytes"):
            assert set(run[unit]) == {"step_5", f"step_{steps}", "max", "total"}
            assert 0 < run[unit]["step_5"] <= run[unit]["max"] <= run[unit]["total"]
        assert len(run["tokens_by_step"]) == steps + 1 and all(t > 0 for t in run["tokens_by_step"])
    assert unbounded["budget"] > bounded["budget"] >= bounded["tokens"]["max"]

    # The same task, the same pages: the budget sends less, and its requests grow more slowly.
    assert bounded["tokens"]["total"] < unbounded["tokens"]["total"]
    assert bounded["bytes"]["total"] < unbounded["bytes"]["total"]
    assert bounded["tokens_by_step"][0] == unbounded["tokens_by_step"][0]  # nothing to shape yet
    ratios = data["ratios"]
    assert 0 < ratios["total_tokens_bounded_over_unbounded"] < 1
    assert 0 < ratios["bounded_step_ratio"] < ratios["unbounded_step_ratio"]

    assert set(data["targets"]) == {
        f"step_{steps}/step_5<=1.5",
        "total<=1/3_of_unbounded",
        "under_budget",
        "finished",
    }
    assert all(isinstance(v, bool) for v in data["targets"].values())
    assert data["targets"]["under_budget"] is True and data["targets"]["finished"] is True
