"""Success criteria as the user types them, split into the numbered list both prompts use."""

from __future__ import annotations

import pytest

from sidekick.agent.prompts import DEFAULT_CRITERIA, numbered, split_criteria


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Names the city\nCites a source", ["Names the city", "Cites a source"]),
        ("- dash\n* star\n• bullet\n1. one\n2) two", ["dash", "star", "bullet", "one", "two"]),
        ("\n  first  \n\n   \nsecond\n", ["first", "second"]),
        ("Names the city. Cites a source.", ["Names the city", "Cites a source"]),
        ("short; plain; list", ["short", "plain", "list"]),
        ("The answer is clear.", ["The answer is clear"]),
        # A full stop before a lower-case word is not the end of a criterion.
        ("Uses e.g. metric units", ["Uses e.g. metric units"]),
        ("- Cites a source. Names it.", ["Cites a source", "Names it"]),
    ],
)
def test_split_criteria(text: str, expected: list[str]) -> None:
    assert split_criteria(text) == expected


@pytest.mark.parametrize("blank", ["", "   ", "\n\t\n", "-\n*"])
def test_no_criteria_means_the_default(blank: str) -> None:
    assert split_criteria(blank) == [DEFAULT_CRITERIA]


def test_the_default_is_one_criterion_and_splits_to_itself() -> None:
    assert DEFAULT_CRITERIA == "The answer is clear and accurate"
    assert split_criteria(DEFAULT_CRITERIA) == [DEFAULT_CRITERIA]


def test_numbered() -> None:
    assert numbered(["a", "b"]) == "1. a\n2. b"
    assert numbered([]) == ""
