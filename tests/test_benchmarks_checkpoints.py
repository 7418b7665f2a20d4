"""The checkpoint benchmark runs end to end, small, on real SQLite files and a real throwaway
PostgreSQL cluster, and reports well-formed figures. Its target (PostgreSQL within 2× of SQLite) is
only checked to be reported: timings on a shared machine are not a test's to judge."""

import pytest

from tests.support.commands import run_json
from tests.support.postgres import PostgresUnavailable, server_bin

STORES = ("sqlite", "sqlite_full", "postgres")


def test_checkpoint_benchmark_measures_every_store_in_one_run_and_reports_the_ratios() -> None:
    try:
        server_bin()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    steps, rounds = 6, 2
    data = run_json("benchmarks.checkpoints", "--steps", str(steps), "--rounds", str(rounds), "--kb", "2", timeout=240)

    assert set(data) == {"steps", "page_kb", "rounds", *STORES, "ratios", "load_average", "targets"}
    assert (data["steps"], data["rounds"], data["page_kb"]) == (steps, rounds, 2)
    for store in STORES:
        figures = data[store]
        assert set(figures) == {"samples", "write_ms", "read_ms", "step_ms", "step_p90_ms"}
        # Every superstep of the recorded run (and its input checkpoint), in every measured round.
        assert figures["samples"] == rounds * (steps + 1)
        assert 0 < figures["write_ms"] < figures["step_ms"] and 0 < figures["read_ms"] < figures["step_ms"]
        assert figures["step_ms"] <= figures["step_p90_ms"]
    ratios = data["ratios"]
    for over in ("sqlite", "sqlite_full"):
        for key in ("step", "write", "read"):
            assert ratios[f"{key}_postgres_over_{over}"] == pytest.approx(
                data["postgres"][f"{key}_ms"] / data[over][f"{key}_ms"], rel=0.01
            )
        low, high = ratios[f"step_postgres_over_{over}_rounds"]
        assert 0 < low <= high
    assert len(ratios) == 8
    assert len(data["load_average"]) == 2 and all(x >= 0 for x in data["load_average"])
    assert set(data["targets"]) == {"postgres/sqlite<=2"}
    assert data["targets"]["postgres/sqlite<=2"] == (ratios["step_postgres_over_sqlite"] <= 2)
