"""The typed events a run yields: their JSON form (what ``--json`` prints) and that they are frozen."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from sidekick import events
from sidekick.events import CriterionCheck, Event

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100

CASES: list[tuple[Event, dict[str, Any]]] = [
    (
        events.RunStarted(run_id="r1", thread_id="t1", message="hi", criteria="clear"),
        {"type": "run_started", "run_id": "r1", "thread_id": "t1", "message": "hi", "criteria": "clear"},
    ),
    (
        events.ToolCall(call_id="c1", name="navigate", args={"url": "https://x.y"}),
        {"type": "tool_call", "call_id": "c1", "name": "navigate", "args": {"url": "https://x.y"}},
    ),
    (
        events.ToolResult(call_id="c1", name="navigate", output="ok", ok=True, seconds=0.5),
        {"type": "tool_result", "call_id": "c1", "name": "navigate", "output": "ok", "ok": True, "seconds": 0.5},
    ),
    (
        events.Screenshot(png=PNG, url="https://x.y/", title="X", taken_at=12.5),
        {"type": "screenshot", "png_bytes": len(PNG), "url": "https://x.y/", "title": "X", "taken_at": 12.5},
    ),
    (
        events.Blocked(url="http://10.0.0.1/", reason="private network"),
        {"type": "blocked", "url": "http://10.0.0.1/", "reason": "private network"},
    ),
    (
        events.Verdict(
            round=2,
            checks=(CriterionCheck("names the city", True, "Paris"), CriterionCheck("cites", False, "none")),
            success=False,
            needs_user_input=False,
            feedback="Cite a source.",
        ),
        {
            "type": "verdict",
            "round": 2,
            "checks": [
                {"criterion": "names the city", "met": True, "evidence": "Paris"},
                {"criterion": "cites", "met": False, "evidence": "none"},
            ],
            "success": False,
            "needs_user_input": False,
            "feedback": "Cite a source.",
        },
    ),
    (
        events.ApprovalNeeded(call_id="c2", name="write_file", args={"path": "a.txt"}),
        {"type": "approval_needed", "call_id": "c2", "name": "write_file", "args": {"path": "a.txt"}},
    ),
    (events.ApprovalAnswered(approved=False), {"type": "approval_answered", "approved": False}),
    (events.AnswerDelta(text="4"), {"type": "answer_delta", "text": "4"}),
    (events.FinalAnswer(text="42", accepted=True), {"type": "final_answer", "text": "42", "accepted": True}),
    (events.Question(text="Which city?"), {"type": "question", "text": "Which city?"}),
    (events.ErrorEvent(message="down"), {"type": "error", "message": "down", "category": "internal"}),
    (
        events.ErrorEvent(message="slow", category="timeout"),
        {"type": "error", "message": "slow", "category": "timeout"},
    ),
    (events.Cancelled(reason="Stopped."), {"type": "cancelled", "reason": "Stopped."}),
    (
        events.Finished(outcome="answer", seconds=1.5, model_calls=2, tokens=30),
        {"type": "finished", "outcome": "answer", "seconds": 1.5, "model_calls": 2, "tokens": 30},
    ),
]


@pytest.mark.parametrize(("event", "expected"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_to_json_is_the_kind_and_every_field(event: Event, expected: dict[str, Any]) -> None:
    out = event.to_json()
    assert out == expected
    assert json.loads(json.dumps(out)) == expected  # JSON-able as it is: no bytes, no dataclasses


@pytest.mark.parametrize(("event", "expected"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_from_json_reads_back_what_to_json_wrote(event: Event, expected: dict[str, Any]) -> None:
    # The run record keeps events as their JSON (a screenshot's PNG beside it) and reads them so.
    png = event.png if isinstance(event, events.Screenshot) else b""
    assert events.from_json(json.loads(json.dumps(expected)), png) == event


def test_a_kind_names_one_event_type_and_an_unknown_one_is_refused() -> None:
    # The CLI's --json, the dashboard and the run record tell events apart by this name alone.
    with pytest.raises(TypeError, match="taken by Question"):

        class Again(Event, kind="question"):
            text: str

    with pytest.raises(ValueError, match="unknown event type 'event'"):
        events.from_json({"type": "event"})


def test_a_screenshot_keeps_its_png_but_json_only_counts_its_bytes() -> None:
    shot = events.Screenshot(png=PNG, url="u", title="t", taken_at=0.0)
    assert shot.png is PNG and "png" not in shot.to_json()
    empty = events.Screenshot(png=b"", url="u", title="t", taken_at=0.0).to_json()
    assert empty["png_bytes"] == 0


def test_events_are_frozen_and_their_kind_is_not_an_argument() -> None:
    event = events.Question(text="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        events.Question(text="x", kind="final_answer")  # type: ignore[call-arg]
