"""The graph's state: the conversation plus this turn's criteria, feedback and budget counters."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

TurnOutcome = Literal["accepted", "question", "gave_up"]


class TurnInput(TypedDict):
    """The graph's input schema: what the runner passes to start a turn. Feedback, the evaluation
    count and the outcome start afresh each turn."""

    messages: Annotated[list[AnyMessage], add_messages]
    criteria: str
    feedback: str | None
    evaluations: int
    outcome: TurnOutcome | None


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    criteria: str
    # The evaluator's feedback for the worker; kept out of `messages` so the worker never mistakes
    # the reviewer's words for its own.
    feedback: str | None
    evaluations: int
    outcome: TurnOutcome | None
