"""What one worker request carries: the conversation shaped to fit ``Settings.context_tokens``.

The checkpointed state keeps every message whole (it is the run record); this module only decides
what is *sent*, as pure functions of the messages and a budget. Tokens are estimated with
LangChain's ``count_tokens_approximately`` (about four characters a token, no network).

A *step* is an AIMessage with tool calls and the ToolMessages that answer it. :func:`fit` keeps
whole every HumanMessage (the user's words), every AIMessage without tool calls, the last step (the
model has not read its results yet) and the newest step with a page-sized result (the page the
model is working on). Older steps share :data:`HISTORY_SHARE` of the budget, newest first:

1. each gets its summarised form while the share lasts: the calls stay, every long result becomes
   one line (tool, ok or failed, length, first line outside any page text);
2. with what is left, the newest of those are given back whole, so a large budget sends everything;
3. the steps that did not fit are folded, each run of them into one short note counting its calls.

A call and its results are always sent or left out together, so the thread stays valid for the
model server. Should the request still be over budget: older turns' long texts are shortened and
their steps folded; then whole oldest turns are dropped (``trim_messages`` starting on a human
message); last, only the current turn is sent, every step but the pinned ones folded and its long
results cut to the room left. The user's latest message is never cut.

Images never accumulate: the worker adds the current screenshot to each request and never stores
it, and an older tool result's images go with its summary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import BaseTool

from sidekick.tools.base import UNTRUSTED_CLOSE, UNTRUSTED_OPEN
from sidekick.transcript import text_of

# A tenth of the budget keeps a long run's request nearly flat (at the default 24,000 tokens, about
# seventeen summarised steps of two page reads each) while a large budget keeps older results
# whole; benchmarks/context.py measures the effect.
HISTORY_SHARE = 0.1
PAGE_CHARS = 1_000  # a result this long is page text: the newest one stays whole
KEEP_CHARS = 400  # a result this short costs no more than its summary would: it stays as it is
LINE_CHARS = 160  # of the first line, in a summary
OLD_TEXT_CHARS = 600  # of an older turn's message, when the request does not fit otherwise
MIN_CUT_CHARS = 500  # the least of a page text that is still worth sending
CHARS_PER_TOKEN = 4  # count_tokens_approximately's default, to turn room in tokens into characters
NOTE_TOKENS = 40  # what a cut result's closing marker and note add

_OPEN_HEAD, _OPEN_TAIL = UNTRUSTED_OPEN.split("{source}")
_BLOCK = re.compile(
    re.escape(_OPEN_HEAD) + r"(.*?)" + re.escape(_OPEN_TAIL) + r".*?(?:" + re.escape(UNTRUSTED_CLOSE) + r"|\Z)",
    re.DOTALL,
)

Step = tuple[int, int]
"""A step's ``[start, end)`` in the history: its AIMessage, then its ToolMessages."""


def tokens(messages: Sequence[BaseMessage], tools: Sequence[BaseTool] = ()) -> int:
    """The estimated size of a request with these messages and tool schemas."""
    return count_tokens_approximately(messages, tools=list(tools) or None)


def fit(history: Sequence[BaseMessage], budget: int) -> list[BaseMessage]:
    """``history`` as one request should carry it: at most ``budget`` tokens wherever the user's
    latest message and the page text fit in it at all, and always a thread the API accepts."""
    budget = max(budget, 0)
    allowance = int(budget * HISTORY_SHARE)
    shaped = shape(history, allowance=allowance)
    if tokens(shaped) <= budget:
        return shaped
    latest = max((i for i, m in enumerate(history) if isinstance(m, HumanMessage)), default=0)
    shaped = shape(history, allowance=allowance, compact_before=latest)
    if tokens(shaped) <= budget:
        return shaped
    # Whole oldest turns go; a suffix that starts on a human message never splits a call from its result.
    kept = trim_messages(
        shaped, max_tokens=budget, token_counter=count_tokens_approximately, strategy="last", start_on="human"
    )
    if kept:
        return kept
    current = shape(history[latest:], allowance=0)
    return current if tokens(current) <= budget else cut(current, budget)


def shape(history: Sequence[BaseMessage], *, allowance: int, compact_before: int = 0) -> list[BaseMessage]:
    """Older steps summarised, given back whole or folded within ``allowance`` tokens (see the
    module's docstring). Before ``compact_before`` (the current turn's start), every step is folded
    and long texts are shortened."""
    steps = find_steps(history)
    current = [s for s in steps if s[0] >= compact_before]
    pinned = pinned_steps(history, current)
    older = [s for s in reversed(current) if s not in pinned]  # newest first
    summaries = {s: [history[s[0]], *(summarised(m) for m in history[s[0] + 1 : s[1]])] for s in older}
    kept: list[Step] = []
    room = allowance
    for s in older:
        cost = tokens(summaries[s])
        if cost > room:
            break
        kept.append(s)
        room -= cost
    whole: set[Step] = set(pinned)
    for s in kept:
        extra = tokens(history[s[0] : s[1]]) - tokens(summaries[s])
        if extra > room:
            break
        whole.add(s)
        room -= extra
    folded = set(steps) - whole - set(kept)

    starts = {s[0]: s for s in steps}
    out: list[BaseMessage] = []
    run: list[AIMessage] = []  # the calls of consecutive folded steps, for one note
    i = 0
    while i < len(history):
        step = starts.get(i)
        if step is not None and step in folded:
            message = history[i]
            assert isinstance(message, AIMessage)
            run.append(message)
            i = step[1]
            continue
        if run:
            out.append(fold_note(run))
            run = []
        if step is not None:
            out.extend(history[i : step[1]] if step in whole else summaries[step])
            i = step[1]
            continue
        message = history[i]
        out.append(shortened(message, OLD_TEXT_CHARS) if i < compact_before else message)
        i += 1
    if run:
        out.append(fold_note(run))
    return out


def find_steps(history: Sequence[BaseMessage]) -> list[Step]:
    """Every step, oldest first. The graph writes a call's results right after it (the tools node
    answers every call at once, the runner's repair appends the missing ones), so a step is the
    calling AIMessage and the ToolMessages that follow it."""
    steps: list[Step] = []
    i = 0
    while i < len(history):
        message = history[i]
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            end = i + 1
            while end < len(history) and isinstance(history[end], ToolMessage):
                end += 1
            steps.append((i, end))
            i = end
        else:
            i += 1
    return steps


def pinned_steps(history: Sequence[BaseMessage], steps: Sequence[Step]) -> set[Step]:
    """The steps sent whole whatever the budget: the last one, if the model has not answered it yet,
    and the newest with page text."""
    pinned: set[Step] = set()
    if steps and steps[-1][1] == len(history):
        pinned.add(steps[-1])
    for s in reversed(steps):
        if any(len(text_of(m)) >= PAGE_CHARS for m in history[s[0] + 1 : s[1]]):
            pinned.add(s)
            break
    return pinned


def summarised(message: BaseMessage) -> BaseMessage:
    """A tool result as one line: tool, ok or failed, length and its first line outside any page
    text (page text reached the model inside an untrusted block, and must not leave it)."""
    if not isinstance(message, ToolMessage):
        return message
    text = text_of(message)
    if len(text) <= KEEP_CHARS and isinstance(message.content, str):
        return message
    failed = message.status == "error" or text.startswith("Error")
    outside = _BLOCK.sub(lambda m: f"(page text from {m.group(1)})", text)
    first = next((line.strip() for line in outside.splitlines() if line.strip()), "")
    if len(first) > LINE_CHARS:
        first = first[: LINE_CHARS - 1] + "…"
    line = (
        f"[{message.name or 'tool'} {'failed' if failed else 'ok'}, {len(text):,} characters; "
        f"shortened to save context] {first}"
    )
    return message.model_copy(update={"content": line.rstrip()})


def fold_note(calls: Sequence[AIMessage]) -> AIMessage:
    """One line for a run of left-out steps. It is the assistant's own record of what it did, so
    it speaks as the assistant: a system or user message would lend it authority it has not got."""
    names = Counter(
        str(call.get("name") or "unknown")
        for message in calls
        for call in [*message.tool_calls, *message.invalid_tool_calls]
    )
    count = sum(names.values())
    tally = ", ".join(f"{name} ×{n}" for name, n in names.most_common())
    plural = "s" if count != 1 else ""
    return AIMessage(content=f"[{count} earlier tool call{plural} left out here to save context: {tally}.]")


def shortened(message: BaseMessage, chars: int) -> BaseMessage:
    """An older turn's message, its start kept (tool results have their own summaries)."""
    if not isinstance(message, (HumanMessage, AIMessage)):
        return message
    text = text_of(message)
    if len(text) <= chars and isinstance(message.content, str):
        return message
    more = len(text) - chars
    short = text[:chars] + (f" [… {more:,} more characters left out to save context]" if more > 0 else "")
    return message.model_copy(update={"content": short})


def cut(messages: Sequence[BaseMessage], budget: int) -> list[BaseMessage]:
    """The last resort: the long tool results cut to share the room the rest leaves."""
    long = [i for i, m in enumerate(messages) if isinstance(m, ToolMessage) and len(text_of(m)) > MIN_CUT_CHARS]
    if not long:
        return list(messages)
    rest = tokens([m for i, m in enumerate(messages) if i not in long])
    # Room for each, less what the closing marker and the note take.
    chars = max(MIN_CUT_CHARS, (budget - rest - NOTE_TOKENS * len(long)) * CHARS_PER_TOKEN // len(long))
    out = list(messages)
    for i in long:
        text = text_of(out[i])
        if len(text) <= chars:
            continue
        short = text[:chars]
        if short.count(_OPEN_HEAD) > short.count(UNTRUSTED_CLOSE):
            short += "\n" + UNTRUSTED_CLOSE  # the page text stays inside its block
        short += f"\n[… {len(text) - chars:,} more characters left out to fit the context budget]"
        out[i] = out[i].model_copy(update={"content": short})
    return out
