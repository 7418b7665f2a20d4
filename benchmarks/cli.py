"""What every benchmark's command line shares: its flags, its output and how its figures are written.

A benchmark builds its flags on :func:`parser` (which adds ``--json``), checks them with the
argparse types here (:func:`at_least`, :func:`positive`; :func:`add_choice` for a comma-separated
choice of names): a bad value is a one-line usage error, exit 2. Its ``__main__`` is then one call,
``sys.exit(cli.main(parser, measure, table))``: ``measure`` takes the parsed flags and returns the
report (the ``--json`` object), ``table`` makes the text shown without ``--json``.

Output is a table for people or, with ``--json``, exactly one JSON object on stdout (what the
smoke tests in ``tests/test_benchmarks_*.py`` parse); progress goes to stderr (:func:`logger`).
The exit code is 0 whatever the figures: a benchmark reports, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Data = dict[str, Any]  # the --json object


def parser(name: str, description: str, **counts: tuple[int, str]) -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks.<name>``, with ``--json`` already on it.

    Each keyword is a count flag, a whole number of at least 1: ``runs=(30, "timed runs per mode")``
    is ``--runs``, 30 by default."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    for flag, (default, help) in counts.items():
        parser.add_argument(f"--{flag}", type=at_least(1), default=default, help=help)
    return parser


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value: 'x'"
    return parse


def positive(text: str) -> float:
    """An argparse type: a number above zero."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_choice(parser: argparse.ArgumentParser, flag: str, choices: Sequence[str]) -> None:
    """Add ``flag``: a comma-separated list of distinct names from ``choices``; all of them by default."""

    def parse(text: str) -> list[str]:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in choices]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise argparse.ArgumentTypeError(f"takes distinct names from {', '.join(choices)}, not {text!r}")
        return chosen

    parse.__name__ = "list"
    parser.add_argument(flag, type=parse, default=",".join(choices), help=f"comma-separated, from {', '.join(choices)}")


def show(data: Data, table: Callable[[Data], str], as_json: bool) -> int:
    """Print the report (one JSON object, or the table made from it); the exit code, 0."""
    print(json.dumps(data) if as_json else table(data))
    return 0


def main(
    parser: argparse.ArgumentParser,
    measure: Callable[[argparse.Namespace], Data],
    table: Callable[[Data], str],
    argv: Sequence[str] | None = None,
) -> int:
    """Read the flags, measure, print: a benchmark's whole ``__main__``."""
    args = parser.parse_args(argv)
    return show(measure(args), table, args.json)


def text(title: str, header: str, rows: Iterable[str], notes: Iterable[str] = ()) -> str:
    """A table as the benchmarks print it: the title, a blank line, the header and rows, then any notes."""
    below = list(notes)
    return "\n".join([title, "", header, *rows, *(["", *below] if below else [])])


def logger(name: str) -> Callable[[str], None]:
    """A progress line on stderr, prefixed with the benchmark's name (stdout is the report's)."""

    def log(message: str) -> None:
        print(f"{name}: {message}", file=sys.stderr, flush=True)

    return log


# -- figures ---------------------------------------------------------------------------------------
def sig(value: float) -> float:
    """Three significant digits: enough for timings that span 0.05 ms to seconds."""
    return float(f"{value:.3g}")


def p95(samples: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (with few samples, the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` to three digits, or None when either is missing or ``b`` is zero."""
    return sig(a / b) if a is not None and b else None


def verdict(met: bool | None) -> str:
    """How a target reads in a table: met, MISSED, or n/a when it could not be judged."""
    return "n/a" if met is None else ("met" if met else "MISSED")


def targets(judged: Mapping[str, bool | None]) -> str:
    """The table's last line: ``targets: <name> met, <name> MISSED, …``."""
    return "targets: " + ", ".join(f"{name} {verdict(met)}" for name, met in judged.items())
