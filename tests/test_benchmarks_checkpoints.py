"""The checkpoint benchmark runs end to end, small, on a real SQLite file and a real throwaway
PostgreSQL cluster, and reports well-formed figures. Its target (PostgreSQL within 2× of SQLite) is
only checked to be reported: timings on a shared machine are not a test's to judge."""

import pytest

from tests.support.commands import run_json
from tests.support.postgres import PostgresUnavailable, server_bin


def test_checkpoint_benchmark_measures_both_stores_in_one_run_and_reports_the_ratio() -> None:
    try:
        server_bin()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    steps, rounds = 6, 2
    data = run_json("benchmarks.checkpoints", "--steps", str(steps), "--rounds", str(rounds), "--kb", "2", timeout=240)

    assert set(data) == {"steps", "page_kb", "rounds", "sqlite", "postgres", "ratios", "targets"}
    assert (data["steps"], data["rounds"], data["page_kb"]) == (steps, rounds, 2)
    for backend in ("sqlite", "postgres"):
        figures = data[backend]
        assert set(figures) == {"samples", "write_ms", "read_ms", "step_ms", "step_p90_ms"}
        # Every superstep of the recorded run (and its input checkpoint), in every round.
        assert figures["samples"] == rounds * (steps + 1)
        assert 0 < figures["write_ms"] < figures["step_ms"] and 0 < figures["read_ms"] < figures["step_ms"]
        assert figures["step_ms"] <= figures["step_p90_ms"]
    ratios = data["ratios"]
    assert set(ratios) == {"step_postgres_over_sqlite", "write_postgres_over_sqlite", "read_postgres_over_sqlite"}
    assert ratios["step_postgres_over_sqlite"] == pytest.approx(
        data["postgres"]["step_ms"] / data["sqlite"]["step_ms"], rel=0.01
    )
    assert set(data["targets"]) == {"postgres/sqlite<=2"}
    assert data["targets"]["postgres/sqlite<=2"] == (ratios["step_postgres_over_sqlite"] <= 2)
