"""The benchmarks' shared command line: checked flags are one-line usage errors, the output is a
table or exactly one JSON object, and the figures are written alike."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from benchmarks import cli


def parser() -> argparse.ArgumentParser:
    made = cli.parser("demo", "A demo.", reps=(20, "repetitions"))
    cli.add_choice(made, "--modes", ("shared", "per-session"))
    made.add_argument("--kb", type=cli.positive, default=8.0)
    return made


def test_defaults_are_every_choice_and_the_given_counts() -> None:
    args = parser().parse_args([])
    assert (args.json, args.reps, args.modes, args.kb) == (False, 20, ["shared", "per-session"], 8.0)
    args = parser().parse_args(["--json", "--reps", "3", "--modes", " per-session ", "--kb", "0.5"])
    assert (args.json, args.reps, args.modes, args.kb) == (True, 3, ["per-session"], 0.5)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--reps", "0"], "argument --reps: must be at least 1, not 0"),
        (["--reps", "x"], "argument --reps: invalid integer value: 'x'"),
        (["--modes", "shared,shared"], "argument --modes: takes distinct names from shared, per-session"),
        (["--modes", "nope"], "not 'nope'"),
        (["--modes", ","], "argument --modes: takes distinct names"),
        (["--kb", "0"], "argument --kb: must be positive, not 0"),
    ],
)
def test_a_bad_flag_is_a_one_line_usage_error(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m benchmarks.demo: error: ") and says in last


def test_main_prints_one_json_object_or_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    def measure(args: argparse.Namespace) -> dict[str, Any]:
        return {"reps": args.reps, "targets": {"fast": True, "small": False, "judged": None}}

    def table(data: dict[str, Any]) -> str:
        return cli.text("Demo", "header", ["row 1", "row 2"], [cli.targets(data["targets"])])

    assert cli.main(parser(), measure, table, ["--json", "--reps", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"reps": 2, "targets": {"fast": True, "small": False, "judged": None}}
    assert cli.main(parser(), measure, table, []) == 0
    assert capsys.readouterr().out == "Demo\n\nheader\nrow 1\nrow 2\n\ntargets: fast met, small MISSED, judged n/a\n"


def test_figures() -> None:
    assert cli.sig(0.0123456) == 0.0123 and cli.sig(12345.0) == 12300.0
    assert cli.p95([5.0, 1.0, 3.0]) == 5.0 and cli.p95([float(i) for i in range(1, 101)]) == 95.0
    assert cli.ratio(1.0, 3.0) == 0.333 and cli.ratio(None, 1.0) is None and cli.ratio(1.0, 0.0) is None
