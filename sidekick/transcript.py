"""Conversation text from LangGraph messages: what the sidebar, a reloaded tab and the CLI show.

Kept apart from the graph so that reading a past conversation needs the store only: no session,
runner, tools or model.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage


def text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)


Transcript = list[tuple[str, str]]
"""A conversation as (role, text) pairs; role is "user" or "assistant"."""


def transcript(messages: Sequence[BaseMessage]) -> Transcript:
    """The conversation: each user message and the turn's final reply."""
    out: Transcript = []
    reply: str | None = None
    for m in messages:
        if isinstance(m, HumanMessage):
            if reply:
                out.append(("assistant", reply))
            reply = None
            out.append(("user", text_of(m)))
        elif isinstance(m, AIMessage) and not m.tool_calls and text_of(m).strip():
            reply = text_of(m).strip()
    if reply:
        out.append(("assistant", reply))
    return out
