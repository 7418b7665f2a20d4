"""The replicas benchmark runs end to end, small: two real ``streamlit run`` replicas on a real
throwaway PostgreSQL behind the real nginx, real Chromium tabs, the fake model over real HTTP. It
must report no errors, no leaked browser process on any replica and clean SIGTERM exits; timings
are only checked for sense (the machine's load is not a test's to judge)."""

import signal

import pytest

from tests.support.commands import run_json
from tests.support.postgres import PostgresUnavailable, server_bin
from tests.support.replicas import nginx_binary

pytestmark = pytest.mark.timeout(300)


def test_replicas_benchmark_runs_sessions_on_both_replicas_with_no_errors_or_leaks() -> None:
    try:
        server_bin()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/ensure_nginx.sh installs it)")
    sessions = 2
    data = run_json("benchmarks.replicas", "--sessions", str(sessions), "--no-baseline", timeout=280)

    assert (data["sessions"], data["replicas"]) == (sessions, 2)
    replicas = list(data["baseline_processes"])
    assert len(replicas) == 2 and all(n > 0 for n in data["baseline_processes"].values())
    figures = data["all_replicas"]
    # Two waves (Reset, tab close) of every session, each placed by nginx on one of the replicas.
    assert figures["samples"] == 2 * sessions and sum(figures["sessions_per_replica"].values()) == 2 * sessions
    assert set(figures["sessions_per_replica"]) <= set(replicas)
    assert 0 < figures["run_s_median"] <= figures["run_s_p95"] and figures["wall_s_median"] > 0
    assert data["one_replica"] is None and set(data["ratios"].values()) == {None}
    assert data["before_sigterm"]["samples"] == sessions

    assert data["errors"] == 0 and data["error_messages"] == [], (data["error_messages"], data["replica_tracebacks"])
    assert data["replica_tracebacks"] == {}
    leaked = data["leaked_processes"]
    assert set(leaked) == {"after_reset", "after_tab_close", "after_sigterm"}
    assert all(phase == {r: 0 for r in replicas} for phase in leaked.values()), leaked
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: the replica ends by the signal.
    assert all(data["sigterm"][r]["exit_code"] in (0, -signal.SIGTERM) for r in replicas), data["sigterm"]
    assert not any(data["sigterm"][r]["killed"] for r in replicas), data["sigterm"]
    assert data["leases_left"] == 0
    assert data["targets"] == {
        "zero_errors": True,
        "zero_leaked_processes": True,
        "clean_sigterm_exits": True,
        "zero_leases_left": True,
    }
