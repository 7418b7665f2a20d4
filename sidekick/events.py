"""The typed events a run yields, in order, to the dashboard and the CLI alike.

A run is: ``RunStarted``, then any number of ``ToolCall`` / ``ToolResult`` / ``Screenshot`` /
``Blocked`` / ``Verdict`` / ``ApprovalNeeded`` / ``ApprovalAnswered`` events, then exactly one
outcome (``FinalAnswer``, ``Question``, ``ErrorEvent`` or ``Cancelled``), then ``Finished``. Events
are plain frozen data: safe to hand across threads and to keep in ``st.session_state``.
:func:`from_json` reads back what :meth:`Event.to_json` wrote (the run record keeps events so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: str = field(init=False, default="event")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (bytes are summarised, not embedded)."""
        out: dict[str, Any] = {"type": self.kind}
        for f in dataclasses.fields(self):
            if f.name == "kind":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                out[f.name + "_bytes"] = len(value)
            elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                out[f.name] = [dataclasses.asdict(v) for v in value]
            else:
                out[f.name] = value
        return out


def _kind(name: str) -> Any:
    return field(init=False, default=name)


def from_json(data: dict[str, Any], png: bytes = b"") -> Event:
    """The event ``to_json`` described; a screenshot's image comes separately (``png``)."""
    cls = _KINDS.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "kind":
            continue
        if f.name == "png":
            values["png"] = png
        elif f.name == "checks":
            values["checks"] = tuple(CriterionCheck(**c) for c in data.get("checks", []))
        elif f.name in data:
            values[f.name] = data[f.name]
    return cls(**values)


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    kind: str = _kind("run_started")
    run_id: str
    thread_id: str
    message: str
    criteria: str


@dataclass(frozen=True, kw_only=True)
class ToolCall(Event):
    kind: str = _kind("tool_call")
    call_id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ToolResult(Event):
    kind: str = _kind("tool_result")
    call_id: str
    name: str
    output: str
    ok: bool
    seconds: float


@dataclass(frozen=True, kw_only=True)
class Screenshot(Event):
    kind: str = _kind("screenshot")
    png: bytes
    url: str
    title: str
    taken_at: float


@dataclass(frozen=True, kw_only=True)
class Blocked(Event):
    """A request the web policy refused (navigation or any sub-resource)."""

    kind: str = _kind("blocked")
    url: str
    reason: str


@dataclass(frozen=True)
class CriterionCheck:
    criterion: str
    met: bool
    evidence: str


@dataclass(frozen=True, kw_only=True)
class Verdict(Event):
    kind: str = _kind("verdict")
    round: int
    checks: tuple[CriterionCheck, ...]
    success: bool
    needs_user_input: bool
    feedback: str


@dataclass(frozen=True, kw_only=True)
class ApprovalNeeded(Event):
    """A side-effecting tool call waits for the user's Approve / Deny."""

    kind: str = _kind("approval_needed")
    call_id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ApprovalAnswered(Event):
    """The user's answer to an ``ApprovalNeeded``; the resumed run starts with it."""

    kind: str = _kind("approval_answered")
    approved: bool


@dataclass(frozen=True, kw_only=True)
class AnswerDelta(Event):
    """A piece of the worker's reply as the model streams it; the whole reply follows as
    ``FinalAnswer`` or ``Question`` once the evaluator has judged it. Not kept in the run record."""

    kind: str = _kind("answer_delta")
    text: str


@dataclass(frozen=True, kw_only=True)
class FinalAnswer(Event):
    kind: str = _kind("final_answer")
    text: str
    accepted: bool  # False when a budget ran out and the answer is the best effort


@dataclass(frozen=True, kw_only=True)
class Question(Event):
    kind: str = _kind("question")
    text: str


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    kind: str = _kind("error")
    message: str
    category: Literal["model", "config", "browser", "timeout", "internal"] = "internal"


@dataclass(frozen=True, kw_only=True)
class Cancelled(Event):
    kind: str = _kind("cancelled")
    reason: str


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    kind: str = _kind("finished")
    outcome: Literal["answer", "question", "approval", "error", "cancelled"]
    seconds: float
    model_calls: int
    tokens: int


_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        ToolCall,
        ToolResult,
        Screenshot,
        Blocked,
        Verdict,
        ApprovalNeeded,
        ApprovalAnswered,
        AnswerDelta,
        FinalAnswer,
        Question,
        ErrorEvent,
        Cancelled,
        Finished,
    )
}
