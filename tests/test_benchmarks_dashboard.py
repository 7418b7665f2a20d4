"""The dashboard benchmark drives the real app in a real browser and reports well-formed, sane numbers.

It runs as a subprocess, as a user would run it: the dashboard server and both browsers are its own
descendants, and stdout must be exactly one JSON object. Small: 3 screens, 2 repetitions; the load
mode with 2 tabs of 2 pages.
"""

import pytest

from tests.support.commands import run_json

SCREENS = 3

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def test_dashboard_benchmark_reports_positive_timings() -> None:
    data = run_json("benchmarks.dashboard", "--screens", str(SCREENS), "--repeats", "2", timeout=400)

    assert set(data) == {"page_usable_s", "frame_visible_ms", "still_page_cpu_pct", "reset_free_s", "targets", "method"}

    usable = data["page_usable_s"]
    assert set(usable) == {"median", "p95"}
    assert 0 < usable["median"] <= usable["p95"] < 60

    visible = data["frame_visible_ms"]
    assert set(visible) == {"median", "p95", "n"}
    assert 1 <= visible["n"] <= SCREENS
    assert 0 < visible["median"] <= visible["p95"] < 60_000

    still = data["still_page_cpu_pct"]
    assert set(still) == {"watched", "unwatched", "stream_bytes_received"}
    assert still["watched"] >= 0 and still["unwatched"] >= 0 and still["stream_bytes_received"] >= 0

    assert set(data["reset_free_s"]) == {"median"}
    assert 0 < data["reset_free_s"]["median"] < 15

    assert len(data["targets"]) == 4
    assert all(isinstance(v, bool) for v in data["targets"].values())
    assert {"page_usable_s", "frame_visible_ms", "still_page_cpu", "reset_free_s"} <= set(data["method"])
    assert all(isinstance(v, str) and v for v in data["method"].values())


def test_dashboard_load_mode_reports_errors_leaks_and_frame_delay() -> None:
    data = run_json("benchmarks.dashboard", "--tabs", "2", "--screens", "2", timeout=400)

    assert data["tabs"] == 2 and data["screens"] == 2
    assert data["errors"] == 0, data["error_list"]
    assert data["leaked_processes"] == 0 and data["live_views_after"] == 0
    visible = data["frame_visible_ms"]
    assert 1 <= visible["n"] <= 4
    assert 0 < visible["median"] <= visible["p95"] < 60_000
    assert set(data["targets"]) == {"zero_errors", "zero_leaks", "frame_visible_p95<=1000ms"}
