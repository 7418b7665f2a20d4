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
        for key in ("ready_ms_median", "cold_ready_ms_median", "browse_ms_median", "free_ms_median"):
            assert mode[key] > 0, key
        assert mode["ready_ms_p95"] >= mode["ready_ms_median"]
        assert mode["processes_left"] == 0 and mode["contexts_left"] == 0
    assert set(data["ratios"]) == {
        "ready_median", "cold_ready_median", "browse_median", "free_median", "pss_per_session"
    }
    # The remote PSS includes the server's Node process, whose heap moves by more than a few sessions
    # weigh when only two are open: a number, not necessarily positive, in a smoke run.
    assert data["modes"]["local"]["pss_mb_per_session"] > 0
    assert isinstance(data["modes"]["remote"]["pss_mb_per_session"], float)
    assert all(data["ratios"][key] > 0 for key in ("ready_median", "cold_ready_median", "browse_median", "free_median"))
    assert data["server_processes_left"] == 0
    assert data["leaked_processes"] == 0 and data["leaked_contexts"] == 0
    assert data["targets"] == {"zero_leaks": True}
