"""The remote-browser benchmark runs both modes end to end (a real run-server) and reports clean numbers.

It runs as a subprocess, as a user would run it: stdout must be exactly one JSON object.
"""

from tests.support.commands import run_json


def test_remote_reports_both_modes_their_ratios_and_no_leaks() -> None:
    data = run_json("benchmarks.remote", "--sessions", "2", "--rounds", "2", timeout=240)

    assert set(data) == {
        "sessions", "modes", "ratios", "server_processes_left", "leaked_processes", "leaked_contexts", "targets"
    }
    assert data["sessions"] == 2 and set(data["modes"]) == {"local", "remote"}
    for mode in data["modes"].values():
        for key in ("ready_ms_median", "browse_ms_median", "free_ms_median", "pss_mb_per_session"):
            assert mode[key] > 0, key
        assert mode["ready_ms_p95"] >= mode["ready_ms_median"]
        assert mode["processes_left"] == 0 and mode["contexts_left"] == 0
    assert set(data["ratios"]) == {"ready_median", "browse_median", "free_median", "pss_per_session"}
    assert all(value > 0 for value in data["ratios"].values())
    assert data["server_processes_left"] == 0
    assert data["leaked_processes"] == 0 and data["leaked_contexts"] == 0
    assert data["targets"] == {"zero_leaks": True}
