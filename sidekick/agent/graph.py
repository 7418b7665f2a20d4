"""The LangGraph worker → tools → evaluator graph.

    START → worker ─┬─(tool calls)──→ tools → worker
                    ├─(a question)──→ END
                    └─(an answer)───→ evaluator ─┬─(accepted / needs the user / budget spent)→ END
                                                 └─(feedback)→ worker

Improvements on the classic Sidekick: the evaluator sees the turn's evidence (tool calls and their
truncated results), returns one check per success criterion, and its feedback lives in its own state
field; tool failures are results the model reads, never crashes; side-effecting tools pause for the
user's approval (a LangGraph ``interrupt``); every loop is bounded by ``max_evaluations`` here and
by ``recursion_limit`` and the turn timeout in the agent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.messages import ToolCall as ToolCall_
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, Field, ValidationError

from sidekick.agent import prompts, trimming
from sidekick.agent.context import RunContext
from sidekick.agent.state import State, TurnInput
from sidekick.config import Settings
from sidekick.errors import ModelError, SidekickError
from sidekick.events import AnswerDelta, CriterionCheck, Event, ToolCall, ToolResult, Verdict
from sidekick.models import Models
from sidekick.transcript import text_of

T = TypeVar("T")
EVIDENCE_CHARS = 600  # of each tool result, for the evaluator
EVIDENCE_TOTAL = 12_000


class CheckModel(BaseModel):
    criterion: str = Field(description="The criterion, as numbered in the request.")
    met: bool = Field(description="Whether the answer meets it.")
    evidence: str = Field(description="Short evidence from the tool results or the answer.")


class EvaluationModel(BaseModel):
    checks: list[CheckModel] = Field(description="Exactly one check per numbered criterion, in order.")
    success_criteria_met: bool = Field(description="True only if every criterion is met.")
    user_input_needed: bool = Field(description="True if the assistant needs the user to answer or clarify.")
    feedback: str = Field(description="What the assistant should fix, or why it was accepted.")


def is_side_effect(tool: BaseTool) -> bool:
    return bool((tool.metadata or {}).get("side_effect"))


def is_question(message: BaseMessage) -> bool:
    return (
        isinstance(message, AIMessage) and not message.tool_calls and text_of(message).lstrip().startswith("Question:")
    )


def turn_messages(messages: Sequence[AnyMessage]) -> tuple[str, list[AnyMessage]]:
    """The latest user request and every message after it."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return text_of(messages[i]), list(messages[i + 1 :])
    return "", list(messages)


def render_evidence(messages: Sequence[AnyMessage]) -> str:
    lines: list[str] = []
    for m in messages:
        if isinstance(m, AIMessage):
            for call in m.tool_calls:
                lines.append(f"- called {call['name']}({json.dumps(call['args'], ensure_ascii=False)[:300]})")
        elif isinstance(m, ToolMessage):
            result = text_of(m).replace("\n", " ")
            if len(result) > EVIDENCE_CHARS:
                result = result[:EVIDENCE_CHARS] + " […]"
            lines.append(f"  → {result}")
    text = "\n".join(lines) or "(no tools were used)"
    return text[-EVIDENCE_TOTAL:]


def build_graph(
    *,
    settings: Settings,
    models: Models,
    tools: Sequence[BaseTool],
    checkpointer: BaseCheckpointSaver[Any] | None,
) -> CompiledStateGraph[State, RunContext, TurnInput, State]:
    """The compiled graph; each run passes its :class:`RunContext` as ``context=``."""
    by_name = {t.name: t for t in tools}
    worker_llm = models.worker.bind_tools(list(tools)) if tools else models.worker
    evaluator_llm = models.evaluator.with_structured_output(EvaluationModel, include_raw=True)
    schema_tokens = trimming.tokens([], tools)  # the tool schemas go with every worker request

    async def worker(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        criteria = prompts.numbered(prompts.split_criteria(state["criteria"]))
        now = datetime.now().astimezone().strftime("%A %d %B %Y, %H:%M %Z")
        head: list[BaseMessage] = [SystemMessage(prompts.WORKER.format(now=now, criteria=criteria))]
        tail: list[BaseMessage] = []
        if state.get("feedback"):
            tail.append(SystemMessage(prompts.WORKER_FEEDBACK.format(feedback=state["feedback"])))
        shot = runtime.context.screen if settings.vision else None
        if shot is not None:
            # Only the newest screenshot is sent, and never stored: the context holds one image at most.
            data = base64.b64encode(shot.png).decode()
            tail.append(
                HumanMessage(
                    content=[
                        {"type": "text", "text": f"The browser now shows {shot.title} — {shot.url}:"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                    ]
                )
            )
        # The state keeps every message whole (the run record); only what is sent is shaped to fit.
        room = settings.context_tokens - schema_tokens - trimming.tokens([*head, *tail])
        messages = [*head, *trimming.fit(state["messages"], room), *tail]
        response = await read_model(stream_reply(worker_llm, messages, runtime.context.emit), settings)
        runtime.context.stats.add(response)
        update: dict[str, Any] = {"messages": [response]}
        if is_question(response):
            update["outcome"] = "question"
        return update

    def after_worker(state: State) -> Literal["tools", "evaluator", "__end__"]:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and (last.tool_calls or last.invalid_tool_calls):
            return "tools"
        if state.get("outcome") == "question":
            return "__end__"
        return "evaluator"

    async def tools_node(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        emit = runtime.context.emit
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        calls = last.tool_calls
        # Approvals first: the node re-runs from the top on resume, so nothing may run before them.
        approved: dict[str, bool] = {}
        if not settings.auto_approve:
            for call in calls:
                tool = by_name.get(call["name"])
                if tool is not None and is_side_effect(tool):
                    answer = interrupt({"call_id": call["id"], "name": call["name"], "args": call["args"]})
                    ok = answer.get("approved") if isinstance(answer, dict) else answer
                    approved[str(call["id"])] = bool(ok)
        results: list[ToolMessage] = []
        for bad in last.invalid_tool_calls:
            # Arguments that were not JSON: the call still needs a result, or the thread is invalid
            # for the model server from here on.
            call_id, name = str(bad.get("id") or ""), str(bad.get("name") or "unknown")
            output = (
                f"Error: the arguments for {name} were not valid JSON ({bad.get('error') or 'unreadable'}); "
                "call it again with a JSON object."
            )
            emit(ToolCall(call_id=call_id, name=name, args={"raw": str(bad.get("args") or "")[:200]}))
            emit(ToolResult(call_id=call_id, name=name, output=output, ok=False, seconds=0.0))
            results.append(ToolMessage(content=output, tool_call_id=call_id, name=name))
        for call in calls:
            call_id = str(call["id"])
            emit(ToolCall(call_id=call_id, name=call["name"], args=dict(call["args"])))
            started = time.monotonic()
            output, ok = await run_tool(by_name.get(call["name"]), call, approved.get(call_id), settings, by_name)
            emit(
                ToolResult(
                    call_id=call_id,
                    name=call["name"],
                    output=output[:2000],
                    ok=ok,
                    seconds=time.monotonic() - started,
                )
            )
            results.append(ToolMessage(content=output, tool_call_id=call_id, name=call["name"]))
        await runtime.context.step_screenshot(wait=settings.vision)
        return {"messages": results}

    async def evaluator(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        request, turn = turn_messages(state["messages"])
        answer = text_of(state["messages"][-1])
        criteria = prompts.split_criteria(state["criteria"])
        previous = f"\nEarlier feedback this turn: {state['feedback']}\n" if state.get("feedback") else ""
        result = await read_model(
            evaluator_llm.ainvoke(
                [
                    SystemMessage(prompts.EVALUATOR),
                    HumanMessage(
                        prompts.EVALUATOR_INPUT.format(
                            request=request,
                            criteria=prompts.numbered(criteria),
                            evidence=render_evidence(turn[:-1]),
                            answer=answer or "(empty)",
                            previous=previous,
                        )
                    ),
                ]
            ),
            settings,
        )
        runtime.context.stats.add(result.get("raw"))
        parsed: EvaluationModel | None = result.get("parsed")
        round_ = state.get("evaluations", 0) + 1
        if parsed is None:
            checks = tuple(CriterionCheck(c, False, "The reviewer's reply could not be read.") for c in criteria)
            needs_user, feedback = False, "The review failed; answer again, plainly and completely."
        else:
            checks = align_checks(criteria, parsed.checks)
            needs_user, feedback = parsed.user_input_needed, parsed.feedback
        success = all(c.met for c in checks) and not needs_user
        runtime.context.emit(
            Verdict(round=round_, checks=checks, success=success, needs_user_input=needs_user, feedback=feedback)
        )
        outcome = (
            "accepted"
            if success
            else "question"
            if needs_user
            else "gave_up"
            if round_ >= settings.max_evaluations
            else None
        )
        return {"evaluations": round_, "feedback": None if success else feedback, "outcome": outcome}

    def after_evaluator(state: State) -> Literal["worker", "__end__"]:
        return "__end__" if state.get("outcome") else "worker"

    graph = StateGraph(State, context_schema=RunContext, input_schema=TurnInput)
    graph.add_node("worker", worker)
    graph.add_node("tools", tools_node)
    graph.add_node("evaluator", evaluator)
    graph.add_edge(START, "worker")
    graph.add_conditional_edges("worker", after_worker, ["tools", "evaluator", END])
    graph.add_edge("tools", "worker")
    graph.add_conditional_edges("evaluator", after_evaluator, ["worker", END])
    return graph.compile(checkpointer=checkpointer, name="sidekick")


async def stream_reply(
    llm: Runnable[Sequence[BaseMessage], BaseMessage], messages: Sequence[BaseMessage], emit: Callable[[Event], None]
) -> AIMessage:
    """The model's reply, streamed: each piece of text is an ``AnswerDelta`` as it arrives (tool-call
    arguments are not shown); the pieces add up to the same message ``ainvoke`` would return."""
    whole: AIMessageChunk | None = None
    async for piece in llm.astream(messages):
        if not isinstance(piece, AIMessageChunk):
            continue
        whole = piece if whole is None else whole + piece
        if piece.text and not whole.tool_call_chunks:
            emit(AnswerDelta(text=piece.text))
    if whole is None:
        raise ValueError("the model's stream ended without a reply")
    return _strict_tool_calls(whole)


def _strict_tool_calls(whole: AIMessageChunk) -> AIMessage:
    """The streamed reply as a message, its tool calls' arguments read strictly: the chunks' own
    lenient parsing would turn cut-off JSON into a call with half its arguments."""
    calls: list[ToolCall_] = []
    invalid: list[InvalidToolCall] = []
    for chunk in whole.tool_call_chunks:
        name, raw, call_id = chunk.get("name") or "", chunk.get("args") or "", chunk.get("id")
        try:
            args = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            invalid.append(invalid_tool_call(name=name, args=raw, id=call_id, error=f"{type(exc).__name__}: {exc}"))
            continue
        if not isinstance(args, dict):
            invalid.append(invalid_tool_call(name=name, args=raw, id=call_id, error="the arguments are not an object"))
            continue
        calls.append(tool_call(name=name, args=args, id=call_id))
    reply = message_chunk_to_message(whole)
    assert isinstance(reply, AIMessage)
    return reply.model_copy(update={"tool_calls": calls, "invalid_tool_calls": invalid})


async def read_model(call: Awaitable[T], settings: Settings) -> T:
    """Await a model call; a reply the client cannot parse (truncated JSON, an HTML error page with
    status 200) becomes a ModelError that says so, instead of an internal error."""
    try:
        return await call
    except (ValueError, LookupError, TypeError) as exc:
        where = settings.openai_base_url or "OpenAI"
        raise ModelError(
            f"The model server ({where}) sent a reply Sidekick could not read ({type(exc).__name__}). "
            "Check that OPENAI_BASE_URL points at an OpenAI-compatible /v1 endpoint."
        ) from None


def align_checks(criteria: list[str], checks: Sequence[CheckModel]) -> tuple[CriterionCheck, ...]:
    """One check per criterion, in order; a criterion the reviewer skipped counts as not met."""
    out = []
    for i, criterion in enumerate(criteria):
        if i < len(checks):
            out.append(CriterionCheck(criterion, bool(checks[i].met), checks[i].evidence.strip()))
        else:
            out.append(CriterionCheck(criterion, False, "The reviewer did not assess this criterion."))
    return tuple(out)


async def run_tool(
    tool: BaseTool | None,
    call: Any,
    approved: bool | None,
    settings: Settings,
    by_name: dict[str, BaseTool],
) -> tuple[str, bool]:
    """Run one tool call; every failure becomes text the model can read."""
    name = call["name"]
    if tool is None:
        return f"Error: there is no tool named {name!r}. Available tools: {', '.join(sorted(by_name))}.", False
    if approved is False:
        return "The user denied this action, so it was not performed. Do not try it again this turn.", False
    # A tool with a budget of its own (an MCP server's "timeout") is bounded by that instead.
    budget = float((tool.metadata or {}).get("timeout") or settings.tool_timeout_seconds)
    try:
        async with asyncio.timeout(budget + 5):  # tools bound their own work; this is the backstop
            output = await tool.ainvoke(call["args"])
        return str(output), True
    except SidekickError as exc:
        return f"Error: {exc}", False
    except TimeoutError:
        return f"Error: {name} did not finish within {budget:g} s and was stopped.", False
    except ValidationError as exc:
        return f"Error: invalid arguments for {name}: {exc.errors()[0].get('msg', exc)}", False
    except Exception as exc:
        return f"Error: {name} failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]})", False
