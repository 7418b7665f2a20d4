"""The agent end to end on one loop: real HTTP to the fake model, real Chromium, a real SQLite file.
Fixtures ``llm`` and ``rig`` are in conftest.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidekick.browser.pool import BrowserPool
from sidekick.errors import RunInProgressError, SidekickError
from sidekick.events import (
    ApprovalNeeded,
    Cancelled,
    ErrorEvent,
    FinalAnswer,
    Finished,
    Question,
    RunStarted,
    Screenshot,
    ToolCall,
    ToolResult,
    Verdict,
)
from sidekick.runs import INTERRUPTED
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import Rig, collect, of, open_rig, verdict


async def test_tool_use_then_answer_accepted(rig: Rig, llm: FakeOpenAI, site: LocalSite) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("The secret number is 4217."))
    llm.evaluator(verdict(True))
    events = await rig.run("What is the secret number on the about page?")

    assert isinstance(events[0], RunStarted)
    call = of(events, ToolCall)[0]
    assert call.name == "navigate" and call.args == {"url": site.url("/about")}
    result = of(events, ToolResult)[0]
    assert result.ok and "About" in result.output
    shots = of(events, Screenshot)
    assert shots and shots[-1].png.startswith(b"\x89PNG") and shots[-1].url == site.url("/about")
    v = of(events, Verdict)[0]
    assert v.success and v.checks[0].criterion == "The answer is clear" and v.checks[0].met
    answer = of(events, FinalAnswer)[0]
    assert answer.accepted and answer.text == "The secret number is 4217."
    done = events[-1]
    assert isinstance(done, Finished) and done.outcome == "answer" and done.model_calls == 3 and done.tokens > 0
    # The evaluator saw the evidence: the tool call and its (truncated) result, not only the chat text.
    judged = llm.requests[-1]
    assert judged["response_format"]["type"] == "json_schema"
    evidence = judged["messages"][-1]["content"]
    assert "called navigate" in evidence and "About" in evidence
    # Page text reached the worker inside the untrusted block.
    tool_msg = next(m for m in llm.requests[1]["messages"] if m["role"] == "tool")
    assert "UNTRUSTED CONTENT" in tool_msg["content"]


async def test_rejected_then_retried_then_accepted_with_feedback_in_its_own_field(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.text("Paris."), Reply.text("Paris, the capital of France (source: Wikipedia)."))
    llm.evaluator(verdict([True, False], feedback="Cite a source."), verdict([True, True]))
    events = await rig.run("Capital of France?", "Names the city\nCites a source")
    verdicts = of(events, Verdict)
    assert [v.success for v in verdicts] == [False, True]
    assert [c.criterion for c in verdicts[0].checks] == ["Names the city", "Cites a source"]
    assert of(events, FinalAnswer)[0].text.startswith("Paris, the capital")
    retry = llm.requests[2]["messages"]
    assert retry[-1]["role"] == "system" and "Cite a source." in retry[-1]["content"]
    assert not any(m["role"] == "assistant" and "Cite a source" in (m.get("content") or "") for m in retry)


async def test_a_question_ends_the_turn_and_the_reply_continues_the_thread(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.text("Question: Which city do you mean?"))
    events = await rig.run("What's the weather like?")
    assert of(events, Question)[0].text == "Which city do you mean?"
    assert events[-1].outcome == "question" and not of(events, Verdict)  # type: ignore[attr-defined]

    llm.worker(Reply.text("In Paris it is sunny."))
    llm.evaluator(verdict(True))
    events = await rig.run("Paris")
    assert of(events, FinalAnswer)[0].text == "In Paris it is sunny."
    sent = [m.get("content") for m in llm.requests[1]["messages"]]
    assert "What's the weather like?" in sent and "Question: Which city do you mean?" in sent and "Paris" in sent
    assert await rig.store.history("t1") == [
        ("user", "What's the weather like?"),
        ("assistant", "Question: Which city do you mean?"),
        ("user", "Paris"),
        ("assistant", "In Paris it is sunny."),
    ]


async def test_the_evaluator_asking_for_the_user_becomes_a_question(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.text("It depends on the date."))
    llm.evaluator(verdict(False, feedback="Which date does the user mean?", needs_user=True))
    events = await rig.run("When is the museum open?")
    assert of(events, Question)[0].text == "Which date does the user mean?"


@pytest.mark.parametrize("rig", [{"max_evaluations": 2}], indirect=True)
async def test_evaluator_budget_spent_gives_a_graceful_answer(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.text("Draft one."), Reply.text("Draft two."))
    llm.evaluator(verdict(False, "More detail."), verdict(False, "Still vague."))
    events = await rig.run("Explain.")
    answer = of(events, FinalAnswer)[0]
    assert not answer.accepted
    assert answer.text.startswith("Draft two.") and "did not pass review after 2 round" in answer.text
    assert "Still vague." in answer.text and events[-1].outcome == "answer"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply.error(500), "model server failed (500)"),
        (Reply.error(429), "rate-limiting"),
        (Reply.error(401), "rejected the API key"),
        (Reply.hang(), "did not answer within 5 s"),
    ],
)
async def test_model_failures_are_error_events_and_the_session_stays_usable(
    rig: Rig, llm: FakeOpenAI, reply: Reply, message: str
) -> None:
    llm.worker(reply)
    events = await rig.run("Hello?")
    error = of(events, ErrorEvent)[0]
    assert error.category == "model" and message in error.message
    assert "test" not in error.message  # the API key never shows
    assert events[-1].outcome == "error"  # type: ignore[attr-defined]
    llm.worker(Reply.text("Hi!"))
    llm.evaluator(verdict(True))
    assert of(await rig.run("Hello again?"), FinalAnswer)[0].text == "Hi!"


async def test_a_failing_tool_is_data_the_model_reads(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(
        Reply.tool_calls([("navigate", {"url": "ftp://example.com"}), ("no_such_tool", {})]),
        Reply.text("I could not open that."),
    )
    llm.evaluator(verdict(True))
    events = await rig.run("Open ftp://example.com")
    results = of(events, ToolResult)
    assert [r.ok for r in results] == [False, False]
    tool_msgs = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_msgs[0].startswith("Error:") and "http" in tool_msgs[0]
    assert "no tool named 'no_such_tool'" in tool_msgs[1]


async def test_a_second_run_while_one_runs_is_refused(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.slow(1.0, Reply.text("Done.")))
    llm.evaluator(verdict(True))
    handle = await rig.runner.start("First", "ok", "t1")
    with pytest.raises(RunInProgressError, match="still working"):
        await rig.runner.start("Second", "ok", "t1")
    await collect(handle)


async def test_cancel_mid_model_call_stops_within_a_second_and_the_thread_stays_valid(
    rig: Rig, llm: FakeOpenAI
) -> None:
    llm.worker(Reply.hang())
    handle = await rig.runner.start("Take your time", "ok", "t1")
    async with asyncio.timeout(10):
        while not llm.requests:  # the model call is under way
            await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await rig.runner.cancel()
    events = await collect(handle)
    assert loop.time() - t0 < 1.0
    assert of(events, Cancelled) and events[-1].outcome == "cancelled"  # type: ignore[attr-defined]
    llm.worker(Reply.text("Back."))
    llm.evaluator(verdict(True))
    again = await rig.run("Again")
    assert of(again, FinalAnswer), again
    assert of(again, FinalAnswer)[0].text == "Back."


async def test_cancel_during_a_tool_gives_the_call_a_result(rig: Rig, llm: FakeOpenAI, site: LocalSite) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/hang")}))
    handle = await rig.runner.start("Open the slow page", "ok", "t1")
    async with asyncio.timeout(10):
        while "/hang" not in site.hits:
            await asyncio.sleep(0.05)
    await rig.runner.cancel()
    events = await collect(handle)
    assert events[-1].outcome == "cancelled"  # type: ignore[attr-defined]
    llm.worker(Reply.text("OK."))
    llm.evaluator(verdict(True))
    await rig.run("Never mind")
    sent = llm.requests[-2]["messages"]
    tool_msgs = [m for m in sent if m["role"] == "tool"]
    assert tool_msgs and tool_msgs[0]["content"] == INTERRUPTED


@pytest.mark.parametrize("rig", [{"recursion_limit": 4}], indirect=True)
async def test_running_out_of_steps_is_a_graceful_answer(rig: Rig, llm: FakeOpenAI, site: LocalSite) -> None:
    llm.handler = lambda request: Reply.tool_call("navigate", {"url": site.url("/")})
    events = await rig.run("Loop forever")
    answer = of(events, FinalAnswer)[0]
    assert not answer.accepted and "ran out of steps" in answer.text


@pytest.mark.parametrize("rig", [{"turn_timeout_seconds": 1.0}], indirect=True)
async def test_the_turn_timeout_ends_the_run_with_a_clear_message(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.slow(3, Reply.text("late")))
    events = await rig.run("Slow please")
    error = of(events, ErrorEvent)[0]
    assert error.category == "timeout" and "longer than 1 s" in error.message


async def test_side_effects_wait_for_approval_and_run_only_when_approved(
    rig: Rig, llm: FakeOpenAI, tmp_path: Path
) -> None:
    llm.worker(Reply.tool_call("write_file", {"path": "note.txt", "content": "hello"}), Reply.text("Saved."))
    llm.evaluator(verdict(True))
    events = await rig.run("Save a note")
    request = of(events, ApprovalNeeded)[0]
    assert request.name == "write_file" and events[-1].outcome == "approval"  # type: ignore[attr-defined]
    assert not (rig.session.workspace / "note.txt").exists()
    events = await collect(await rig.runner.resume("t1", True))
    assert of(events, FinalAnswer)[0].text == "Saved."
    assert (rig.session.workspace / "note.txt").read_text() == "hello"


async def test_a_denied_side_effect_never_runs_and_the_model_is_told(rig: Rig, llm: FakeOpenAI, tmp_path: Path) -> None:
    llm.worker(Reply.tool_call("write_file", {"path": "x.txt", "content": "no"}), Reply.text("Not saved."))
    llm.evaluator(verdict(True))
    await rig.run("Save x")
    events = await collect(await rig.runner.resume("t1", False))
    assert of(events, ToolResult)[0].ok is False
    assert not (rig.session.workspace / "x.txt").exists()
    told = [m["content"] for m in llm.requests[-2]["messages"] if m["role"] == "tool"]
    assert "denied" in told[0]


async def test_history_survives_a_restart_with_the_same_sqlite_file(
    rig: Rig, llm: FakeOpenAI, tmp_path: Path, pool: BrowserPool
) -> None:
    llm.worker(Reply.text("Noted: your name is Ada."))
    llm.evaluator(verdict(True))
    await rig.run("My name is Ada.", thread="keep")
    await rig.session.aclose()
    await rig.store.aclose()

    async with open_rig(rig.settings, pool, name="s2") as again:
        history = [("user", "My name is Ada."), ("assistant", "Noted: your name is Ada.")]
        assert await again.store.history("keep") == history
        listed = await again.store.list()
        assert [(c.thread_id, c.title) for c in listed] == [("keep", "My name is Ada.")]
        llm.worker(Reply.text("Your name is Ada."))
        llm.evaluator(verdict(True))
        await again.run("What is my name?", "ok", "keep")
        assert any(m.get("content") == "My name is Ada." for m in llm.requests[-2]["messages"])
        await again.store.delete("keep")
        assert await again.store.list() == [] and await again.store.history("keep") == []


@pytest.mark.parametrize(
    ("message", "error"),
    [("", "Type a message"), ("   \n\t ", "Type a message"), ("x" * 100_000, "the limit is 20,000")],
)
async def test_bad_messages_are_refused_clearly(rig: Rig, message: str, error: str) -> None:
    with pytest.raises(SidekickError, match=error):
        await rig.runner.start(message, "ok", "t1")


async def test_control_characters_are_stripped_and_long_criteria_refused(rig: Rig, llm: FakeOpenAI) -> None:
    with pytest.raises(SidekickError, match="success criteria"):
        await rig.runner.start("hi", "c" * 5000, "t1")
    llm.worker(Reply.text("Hello."))
    llm.evaluator(verdict(True))
    events = await rig.run("he\x00ll\x1bo")
    assert of(events, RunStarted)[0].message == "hello"


@pytest.mark.parametrize("rig", [{"auto_approve": True}], indirect=True)
async def test_auto_approve_runs_side_effects_without_pausing(rig: Rig, llm: FakeOpenAI, tmp_path: Path) -> None:
    llm.worker(Reply.tool_call("write_file", {"path": "auto.txt", "content": "yes"}), Reply.text("Saved."))
    llm.evaluator(verdict(True))
    events = await rig.run("Save it")
    assert not of(events, ApprovalNeeded) and of(events, FinalAnswer)[0].text == "Saved."
    assert (rig.session.workspace / "auto.txt").read_text() == "yes"
