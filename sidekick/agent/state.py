"""The graph's state: the conversation plus this turn's criteria, feedback and budget counters."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

Outcome = Literal["accepted", "question", "gave_up"]


class TurnInput(TypedDict):
    """What the caller passes for one turn (narrower than the state)."""

    messages: list[AnyMessage]
    criteria: str
    feedback: str | None
    evaluations: int
    outcome: Outcome | None


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    criteria: str
    # The evaluator's feedback for the worker; kept out of `messages` so the worker never mistakes
    # the reviewer's words for its own.
    feedback: str | None
    evaluations: int
    outcome: Outcome | None
