"""The typed events a run yields, in order, to the dashboard and the CLI alike.

A run is: ``RunStarted``, then any number of ``ToolCall`` / ``ToolResult`` / ``Screenshot`` /
``Blocked`` / ``Verdict`` / ``ApprovalNeeded`` / ``ApprovalAnswered`` events, then exactly one
outcome (``FinalAnswer``, ``Question``, ``ErrorEvent`` or ``Cancelled``), then ``Finished``. Events
are plain frozen data: safe to hand across threads and to keep in ``st.session_state``.
:func:`from_json` reads back what :meth:`Event.to_json` wrote (the run record keeps events so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, dataclass_transform

_KINDS: dict[str, type[Event]] = {}


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Event:
    """The base of every event. A subclass names its kind (``class Question(Event, kind="question")``)
    and is made a frozen, keyword-only dataclass of the fields it declares; the kind is the
    ``"type"`` of its JSON form and how :func:`from_json` finds the class again."""

    kind: ClassVar[str] = "event"

    def __init_subclass__(cls, *, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(frozen=True, kw_only=True)(cls)
        if kind is None:  # fields that several kinds share, not an event of its own
            return
        if kind in _KINDS:
            raise TypeError(f"event kind {kind!r} is taken by {_KINDS[kind].__name__}")
        cls.kind = kind
        _KINDS[kind] = cls

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (bytes are summarised, not embedded)."""
        out: dict[str, Any] = {"type": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # every subclass is a dataclass
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                out[f.name + "_bytes"] = len(value)
            elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                out[f.name] = [dataclasses.asdict(v) for v in value]
            else:
                out[f.name] = value
        return out


def from_json(data: dict[str, Any], png: bytes = b"") -> Event:
    """The event ``to_json`` described; a screenshot's image comes separately (``png``)."""
    cls = _KINDS.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "png":
            values["png"] = png
        elif f.name == "checks":
            values["checks"] = tuple(CriterionCheck(**c) for c in data.get("checks", []))
        elif f.name in data:
            values[f.name] = data[f.name]
    return cls(**values)


class RunStarted(Event, kind="run_started"):
    run_id: str
    thread_id: str
    message: str
    criteria: str


class _CallFields(Event):
    """The tool call an event is about: the model's id for it, the tool's name, its arguments."""

    call_id: str
    name: str
    args: dict[str, Any]


class ToolCall(_CallFields, kind="tool_call"):
    """The worker calls a tool (its ``ToolResult`` follows, with the same ``call_id``)."""


class ToolResult(Event, kind="tool_result"):
    call_id: str
    name: str
    output: str
    ok: bool
    seconds: float


class Screenshot(Event, kind="screenshot"):
    png: bytes
    url: str
    title: str
    taken_at: float


class Blocked(Event, kind="blocked"):
    """A request the web policy refused (navigation or any sub-resource)."""

    url: str
    reason: str


@dataclass(frozen=True)
class CriterionCheck:
    criterion: str
    met: bool
    evidence: str


class Verdict(Event, kind="verdict"):
    round: int
    checks: tuple[CriterionCheck, ...]
    success: bool
    needs_user_input: bool
    feedback: str


class ApprovalNeeded(_CallFields, kind="approval_needed"):
    """A side-effecting tool call waits for the user's Approve / Deny."""


class ApprovalAnswered(Event, kind="approval_answered"):
    """The user's answer to an ``ApprovalNeeded``; the resumed run starts with it."""

    approved: bool


class AnswerDelta(Event, kind="answer_delta"):
    """A piece of the worker's reply as the model streams it; the whole reply follows as
    ``FinalAnswer`` or ``Question`` once the evaluator has judged it. Not kept in the run record."""

    text: str


class FinalAnswer(Event, kind="final_answer"):
    text: str
    accepted: bool  # False when a budget ran out and the answer is the best effort


class Question(Event, kind="question"):
    text: str


class ErrorEvent(Event, kind="error"):
    message: str
    category: Literal["model", "config", "browser", "timeout", "internal"] = "internal"


class Cancelled(Event, kind="cancelled"):
    reason: str


class Finished(Event, kind="finished"):
    outcome: Literal["answer", "question", "approval", "error", "cancelled"]
    seconds: float
    model_calls: int
    tokens: int
