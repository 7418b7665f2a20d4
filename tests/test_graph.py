"""The graph's helpers, each on its own: criteria checks, the evaluator's evidence, the turn's
messages, questions, unreadable model replies and tool failures turned into text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool

from sidekick.agent.graph import (
    EVIDENCE_CHARS,
    EVIDENCE_TOTAL,
    CheckModel,
    align_checks,
    is_question,
    read_model,
    render_evidence,
    run_tool,
    turn_messages,
)
from sidekick.config import Settings
from sidekick.errors import ModelError, ToolError
from sidekick.events import CriterionCheck


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, openai_base_url="http://127.0.0.1:1/v1", tool_timeout_seconds=2)


# -- align_checks ----------------------------------------------------------------------------------
def test_align_checks_gives_one_check_per_criterion_in_order() -> None:
    checks = [
        CheckModel(criterion="1", met=True, evidence="  seen  "),
        CheckModel(criterion="2", met=False, evidence="no"),
    ]
    assert align_checks(["names the city", "cites a source"], checks) == (
        CriterionCheck("names the city", True, "seen"),
        CriterionCheck("cites a source", False, "no"),
    )


def test_a_criterion_the_reviewer_skipped_counts_as_not_met() -> None:
    checks = [CheckModel(criterion="1", met=True, evidence="ok")]
    aligned = align_checks(["a", "b", "c"], checks)
    assert [c.criterion for c in aligned] == ["a", "b", "c"]
    assert [c.met for c in aligned] == [True, False, False]
    assert aligned[2].evidence == "The reviewer did not assess this criterion."


def test_extra_checks_beyond_the_criteria_are_dropped() -> None:
    checks = [CheckModel(criterion=str(i), met=False, evidence="x") for i in range(3)]
    assert len(align_checks(["only one"], checks)) == 1
    assert align_checks([], checks) == ()


# -- render_evidence -------------------------------------------------------------------------------
def test_evidence_lists_each_tool_call_and_its_result_on_one_line() -> None:
    messages = [
        AIMessage("", tool_calls=[{"id": "c1", "name": "navigate", "args": {"url": "https://ex.am/ple"}}]),
        ToolMessage("Title: Example\nline two", tool_call_id="c1", name="navigate"),
    ]
    assert render_evidence(messages) == (
        '- called navigate({"url": "https://ex.am/ple"})\n  → Title: Example line two'
    )


def test_evidence_truncates_each_result_and_long_arguments() -> None:
    messages = [
        AIMessage("", tool_calls=[{"id": "c1", "name": "type_text", "args": {"text": "y" * 1000}}]),
        ToolMessage("x" * (EVIDENCE_CHARS + 50), tool_call_id="c1", name="type_text"),
    ]
    call_line, result_line = render_evidence(messages).split("\n")
    assert call_line == "- called type_text(" + ('{"text": "' + "y" * 1000)[:300] + ")"
    assert result_line == "  → " + "x" * EVIDENCE_CHARS + " […]"


def test_evidence_keeps_the_latest_lines_within_the_total_cap() -> None:
    messages = []
    for i in range(60):
        messages.append(AIMessage("", tool_calls=[{"id": f"c{i}", "name": "read_page", "args": {"n": i}}]))
        messages.append(ToolMessage(f"page {i} " + "z" * 500, tool_call_id=f"c{i}", name="read_page"))
    text = render_evidence(messages)
    assert len(text) == EVIDENCE_TOTAL
    assert text.endswith("z" * 50) and "page 59 " in text and "page 0 " not in text  # the newest is kept


def test_evidence_without_tools_says_so_and_ignores_plain_chat() -> None:
    assert render_evidence([]) == "(no tools were used)"
    assert render_evidence([HumanMessage("hi"), AIMessage("hello")]) == "(no tools were used)"


# -- turn_messages and is_question -----------------------------------------------------------------
def test_turn_messages_is_the_latest_request_and_what_came_after() -> None:
    first, answer = HumanMessage("first"), AIMessage("one")
    call = AIMessage("", tool_calls=[{"id": "c", "name": "read_page", "args": {}}])
    result, final = ToolMessage("page", tool_call_id="c"), AIMessage("two")
    request, turn = turn_messages([first, answer, HumanMessage("second"), call, result, final])
    assert request == "second" and turn == [call, result, final]
    assert turn_messages([HumanMessage("only")]) == ("only", [])


def test_turn_messages_without_a_request_is_everything() -> None:
    messages = [SystemMessage("s"), AIMessage("a")]
    assert turn_messages(messages) == ("", messages)


def test_is_question() -> None:
    assert is_question(AIMessage("  Question: which city?"))
    assert is_question(AIMessage(content=[{"type": "text", "text": "Question: "}, {"type": "text", "text": "which?"}]))
    assert not is_question(AIMessage("The answer. Question: none"))
    assert not is_question(HumanMessage("Question: from the user"))
    with_call = AIMessage("Question: x", tool_calls=[{"id": "c", "name": "navigate", "args": {}}])
    assert not is_question(with_call)  # a tool call is work in progress, not a question


# -- read_model ------------------------------------------------------------------------------------
async def _raise(exc: BaseException) -> str:
    raise exc


async def _value() -> str:
    return "reply"


@pytest.mark.parametrize("exc", [ValueError("bad json"), KeyError("choices"), TypeError("NoneType")])
async def test_an_unreadable_reply_is_a_model_error_naming_the_server(settings: Settings, exc: Exception) -> None:
    with pytest.raises(ModelError) as info:
        await read_model(_raise(exc), settings)
    message = str(info.value)
    assert "http://127.0.0.1:1/v1" in message and type(exc).__name__ in message and "OPENAI_BASE_URL" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_read_model_passes_replies_and_other_errors_through(settings: Settings) -> None:
    assert await read_model(_value(), settings) == "reply"
    with pytest.raises(RuntimeError, match="not a parse error"):
        await read_model(_raise(RuntimeError("not a parse error")), settings)


# -- run_tool --------------------------------------------------------------------------------------
def _tool(name: str, fn: object) -> BaseTool:
    return StructuredTool.from_function(coroutine=fn, name=name, description=name)  # type: ignore[arg-type]


async def _double(n: int) -> str:
    return str(2 * n)


async def _fails_plainly(n: int) -> str:
    raise ToolError("The page has no such link.")


async def _times_out(n: int) -> str:
    async with asyncio.timeout(0.01):  # a tool that bounds its own work and runs out of time
        await asyncio.sleep(5)
    return "never"


async def _crashes(n: int) -> str:
    raise RuntimeError("x" * 1000)


TOOLS = {t.name: t for t in (_tool("double", _double), _tool("read_page", _fails_plainly))}


def _call(name: str, **args: object) -> dict[str, object]:
    return {"id": "call_1", "name": name, "args": args}


async def test_a_tool_result_is_its_text(settings: Settings) -> None:
    assert await run_tool(TOOLS["double"], _call("double", n=21), None, settings, TOOLS) == ("42", True)
    assert await run_tool(TOOLS["double"], _call("double", n=1), True, settings, TOOLS) == ("2", True)


async def test_an_unknown_tool_lists_the_tools_there_are(settings: Settings) -> None:
    output, ok = await run_tool(None, _call("delete_everything"), None, settings, TOOLS)
    assert not ok
    assert output == "Error: there is no tool named 'delete_everything'. Available tools: double, read_page."


async def test_a_denied_call_is_not_run(settings: Settings) -> None:
    ran: list[int] = []

    async def record(n: int) -> str:
        ran.append(n)
        return "done"

    output, ok = await run_tool(_tool("record", record), _call("record", n=1), False, settings, TOOLS)
    assert not ok and "denied" in output and ran == []


async def test_a_tool_error_is_its_plain_message(settings: Settings) -> None:
    assert await run_tool(TOOLS["read_page"], _call("read_page", n=1), None, settings, TOOLS) == (
        "Error: The page has no such link.",
        False,
    )


async def test_a_timeout_names_the_tool_and_the_budget(settings: Settings) -> None:
    output, ok = await run_tool(_tool("slow", _times_out), _call("slow", n=1), None, settings, TOOLS)
    assert (output, ok) == ("Error: slow did not finish within 2 s and was stopped.", False)


async def test_bad_arguments_are_explained(settings: Settings) -> None:
    output, ok = await run_tool(TOOLS["double"], _call("double", n="lots"), None, settings, TOOLS)
    assert not ok and output.startswith("Error: invalid arguments for double: ") and "integer" in output


async def test_an_unexpected_exception_is_text_with_its_type_and_a_short_message(settings: Settings) -> None:
    output, ok = await run_tool(_tool("boom", _crashes), _call("boom", n=1), None, settings, TOOLS)
    assert not ok and output == f"Error: boom failed unexpectedly (RuntimeError: {'x' * 300})"
