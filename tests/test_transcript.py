"""Conversation text from LangGraph messages: what the sidebar, a reloaded tab and the CLI show."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from sidekick.transcript import text_of, transcript


def test_text_of_a_string_message_is_the_string() -> None:
    assert text_of(HumanMessage("plain")) == "plain"


def test_text_of_content_parts_keeps_only_their_text() -> None:
    message = HumanMessage(
        content=[
            {"type": "text", "text": "The browser shows "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            "a page",
        ]
    )
    assert text_of(message) == "The browser shows a page"


def call(call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"id": call_id, "name": "navigate", "args": {"url": "https://x.y"}}])


def test_a_turn_is_the_request_and_its_final_reply_without_tool_steps() -> None:
    messages = [
        SystemMessage("system prompt"),
        HumanMessage("What is the number?"),
        call("c1"),
        ToolMessage("page text", tool_call_id="c1"),
        AIMessage("  It is 4217.  "),
    ]
    assert transcript(messages) == [("user", "What is the number?"), ("assistant", "It is 4217.")]


def test_only_the_last_reply_of_a_turn_counts_and_blank_replies_are_skipped() -> None:
    messages = [
        HumanMessage("Capital of France?"),
        AIMessage("Paris."),  # rejected by the reviewer, then answered again
        AIMessage("Paris, the capital of France."),
        AIMessage("   "),
        HumanMessage("Thanks"),
        AIMessage("You're welcome."),
    ]
    assert transcript(messages) == [
        ("user", "Capital of France?"),
        ("assistant", "Paris, the capital of France."),
        ("user", "Thanks"),
        ("assistant", "You're welcome."),
    ]


def test_a_turn_that_ended_without_a_reply_shows_only_the_request() -> None:
    stopped = [HumanMessage("Do it"), call("c1"), ToolMessage("Not run: stopped", tool_call_id="c1")]
    assert transcript([*stopped, HumanMessage("Again")]) == [("user", "Do it"), ("user", "Again")]
    assert transcript([]) == []
