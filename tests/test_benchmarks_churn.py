"""The churn benchmark runs both modes end to end and reports clean, well-formed numbers.

It runs as a subprocess, as a user would run it: its browsers are its own descendants, and stdout
must be exactly one JSON object.
"""

from tests.support.commands import run_json

MODE_KEYS = {
    "ready_ms_median",
    "ready_ms_p95",
    "browse_ms_median",
    "free_ms_median",
    "free_ms_p95",
    "pss_mb_per_session",
    "processes_left",
    "contexts_left",
}
TARGETS = {"ready_median_ratio<=0.1", "pss_ratio<=0.33", "zero_leaks", "rss_growth<10%"}


def test_churn_reports_both_modes_with_no_leaks() -> None:
    data = run_json("benchmarks.churn", "--sessions", "3", timeout=180)

    assert set(data) == {
        "sessions", "modes", "ratios", "leaked_processes", "leaked_contexts", "rss_growth_pct", "targets"
    }
    assert data["sessions"] == 3
    assert set(data["modes"]) == {"shared", "per_session_browser"}
    for mode in data["modes"].values():
        assert set(mode) == MODE_KEYS
        for key in ("ready_ms_median", "ready_ms_p95", "browse_ms_median", "free_ms_median", "free_ms_p95"):
            assert mode[key] > 0, key
        assert mode["ready_ms_p95"] >= mode["ready_ms_median"]
        assert mode["free_ms_p95"] >= mode["free_ms_median"]
        assert mode["pss_mb_per_session"] > 0
        assert mode["processes_left"] == 0 and mode["contexts_left"] == 0

    assert data["leaked_processes"] == 0 and data["leaked_contexts"] == 0
    assert data["ratios"]["ready_median"] > 0 and data["ratios"]["pss_per_session"] > 0
    assert isinstance(data["rss_growth_pct"], float)
    assert set(data["targets"]) == TARGETS
    assert all(isinstance(v, bool) for v in data["targets"].values())
    assert data["targets"]["zero_leaks"] is True
