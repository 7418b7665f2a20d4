"""The agent-overhead benchmark runs end to end, small, and reports clean, well-formed numbers.

It runs as a subprocess, as a user would run it: its browsers are its own descendants, and stdout
must be exactly one JSON object. Timings are only checked for sense (positive, p95 ≥ median),
never against the targets: this machine's load is not the benchmark's business.
"""

from tests.support.commands import run_json


def test_agent_overhead_reports_steps_and_concurrency_with_no_errors_or_leaks() -> None:
    data = run_json("benchmarks.agent_overhead", "--steps", "2", "--runs", "2", "--sessions", "2", timeout=240)

    keys = "steps runs overhead_ms components_ms steps_ms concurrent leaked_processes leaked_contexts targets"
    assert set(data) == set(keys.split())
    assert data["steps"] == 2 and data["runs"] == 2

    assert set(data["overhead_ms"]) == {"median", "p95"}
    assert 0 < data["overhead_ms"]["median"] <= data["overhead_ms"]["p95"]
    components = data["components_ms"]
    assert set(components) == {"step_median", "model_median", "tool_median"}
    assert all(value > 0 for value in components.values()), components
    # Sense, not speed: a step contains its model call and its tool call.
    assert components["step_median"] > components["tool_median"] > components["model_median"]

    # Two steps: navigate (which returns its page's screenshot) and read_page (whose step ends with
    # one for the record, taken while the run goes on).
    by_step = data["steps_ms"]
    assert set(by_step["median_by_tool"]) == {"navigate", "read_page"}
    assert all(value > 0 for value in by_step["median_by_tool"].values())
    assert by_step["overhead_median_ending_with_screenshot"] is not None
    assert by_step["overhead_median_without"] is not None

    concurrent = data["concurrent"]
    assert set(concurrent) == {"sessions", "errors", "wall_s", "run_s_median", "run_s_p95"}
    assert concurrent["sessions"] == 2 and concurrent["errors"] == 0, concurrent
    assert concurrent["wall_s"] > 0 and concurrent["run_s_median"] > 0
    assert concurrent["run_s_p95"] >= concurrent["run_s_median"]
    assert concurrent["wall_s"] >= concurrent["run_s_median"]

    assert data["leaked_processes"] == 0 and data["leaked_contexts"] == 0
    assert set(data["targets"]) == {"overhead_median<=20ms", "zero_errors"}
    assert all(isinstance(v, bool) for v in data["targets"].values())
    assert data["targets"]["zero_errors"] is True
