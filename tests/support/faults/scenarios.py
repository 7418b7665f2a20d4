"""Every fault scenario, and in ``SCENARIOS`` the message each one must end in.

Each scenario injects one fault (Chromium killed mid-navigation, a page that never loads, a 10 MB
page, the model answering 500 / 429 / garbage or not at all, a tool that raises, bad arguments,
bad input to the facade, a malformed setting), checks with ``expect`` how the fault was handled,
then runs a normal turn on the same thread and returns the clear message it ended in. The message
promised for each fault is stated once, as ``says`` in ``SCENARIOS``; the accounting checks it.

Scenarios on an agent use the live pool; those on the facade start a real
:class:`~sidekick.facade.Sidekick` (its own loop thread and its own pool), which blocks, so they run
in a worker thread (:func:`in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from sidekick.config import Settings
from sidekick.errors import ConfigError
from sidekick.events import ErrorEvent, FinalAnswer, Finished, RunStarted, ToolResult
from sidekick.facade import Sidekick
from sidekick.procs import self_memory_bytes
from tests.support.fakes.openai_server import Reply
from tests.support.faults.front import FlakyFront
from tests.support.faults.harness import (
    CRITERIA,
    REMEMBERED,
    Env,
    Fault,
    Outcome,
    Scenario,
    ScenarioFailed,
    agent_rig,
    describe,
    expect,
    facade,
    facade_turn,
    finish,
    recover,
    refused,
    subtree,
    tool_messages,
    turn,
    wait_finished,
)
from tests.support.runs import Rig, of, verdict
from tests.support.waiting import wait_until

TOOL_TIMEOUT = 2.0  # the small SIDEKICK_TOOL_TIMEOUT of the hanging-page scenario
MODEL_TIMEOUT = 2.0  # the small SIDEKICK_MODEL_TIMEOUT of the hanging-model scenario
HUGE_MB = 10
RSS_LIMIT_MB = 64.0  # retained RSS growth allowed by loading and reading the 10 MB page
RSS_AGAIN_MB = 16.0  # further growth allowed by reading it twice more: memory must not pile up
HUGE_TOOL_TIMEOUT = 30.0  # the tool budget for the 10 MB page: we measure its time, not a busy CPU's
HUGE_TOOL_SECONDS = 15.0  # navigate and read_page of the 10 MB page, each
MESSAGE_LIMIT_CHARS = 9_000  # a capped tool result, with its untrusted-block markers


def in_thread(fault: Callable[[Env], Outcome]) -> Fault:
    """A blocking scenario (one on the facade), run off the event loop that the live pool needs."""

    async def run(env: Env) -> Outcome:
        return await asyncio.to_thread(fault, env)

    return run


# -- the browser ------------------------------------------------------------------------------------
async def chromium_killed(env: Env) -> Outcome:
    """Chromium's main process is SIGKILLed while a navigate call waits for a page."""
    async with agent_rig(env) as rig:
        env.llm.worker(
            Reply.tool_call("navigate", {"url": env.site.url("/hang")}),
            Reply.text("The browser stopped, so I could not open that page."),
        )
        env.llm.evaluator(verdict(True))
        handle = await rig.runner.start("Open the slow page", CRITERIA, "t1")
        await wait_until(lambda: "/hang" in env.site.hits, 30, 0.02, what="the browser asking for /hang")
        env.note_pool()
        pid = env.pool.browser_pid
        expect(pid is not None, "the pool does not know its Chromium's process id")
        assert pid is not None
        launches, crashes = env.pool.launches, env.pool.crashes
        env.must_exit |= subtree(pid)
        fault = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        events = await finish(handle)
        results = of(events, ToolResult)
        expect(results, f"the navigate call got no result: {describe(events)}")
        told = results[0].output
        expect(not results[0].ok and "browser stopped" in told.lower(), f"the model was not told: {told!r}")
        expect(of(events, FinalAnswer), f"the run did not finish with the model's answer: {describe(events)}")
        sent = tool_messages(env.llm.requests[-2]) if len(env.llm.requests) >= 2 else []
        expect(sent and "browser stopped" in sent[0].lower(), "the model's next request did not carry the result")
        expect(env.pool.crashes == crashes + 1, f"the pool counted {env.pool.crashes - crashes} crashes, not one")
        done = await recover(env, rig, browse=True)
        expect(
            env.pool.launches == launches + 1,
            f"Chromium was launched {env.pool.launches - launches} times after the kill, not once",
        )
        expect(env.pool.browser_pid not in (None, pid), "the pool did not record the new Chromium")
        return Outcome(told, fault, done)


async def page_never_loads(env: Env) -> Outcome:
    """A page that never answers, with a small tool timeout."""
    async with agent_rig(env, tool_timeout_seconds=TOOL_TIMEOUT) as rig:
        env.llm.worker(
            Reply.tool_call("navigate", {"url": env.site.url("/hang")}),
            Reply.text("That page did not load."),
        )
        env.llm.evaluator(verdict(True))
        fault = time.monotonic()
        events = await turn(rig, "Open the page that never loads")
        results = of(events, ToolResult)
        expect(results, f"the navigate call got no result: {describe(events)}")
        told = results[0].output
        expect(not results[0].ok, f"navigate to a hanging page succeeded: {told!r}")
        # The budget, then stopping the load and a last screenshot, each bounded by a few seconds.
        expect(results[0].seconds < TOOL_TIMEOUT + 10, f"the call took {results[0].seconds:.1f} s")
        expect(of(events, FinalAnswer), f"the run did not finish with the model's answer: {describe(events)}")
        done = await recover(env, rig, browse=True)
        return Outcome(told, fault, done)


def retained_rss_mb() -> float:
    """This process's RSS after a collection and, with glibc, after freed heap is handed back to the
    OS: what the process keeps. (glibc otherwise holds on to freed memory, so plain RSS reports a
    high-water mark that varies by tens of MB from run to run.)"""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return self_memory_bytes() / 2**20


def huge_html(megabytes: int = HUGE_MB) -> str:
    line = "<p>" + "The quick brown fox jumps over the lazy dog. " * 22 + "</p>\n"
    count = megabytes * 2**20 // len(line) + 1
    return "<html><head><title>Huge</title></head><body>" + line * count + "</body></html>"


async def huge_page(env: Env) -> Outcome:
    """A page with 10 MB of text: navigate and read_page return capped text in bounded time, and
    Python's memory grows by a bounded amount once, not again with each read."""
    async with agent_rig(env, tool_timeout_seconds=HUGE_TOOL_TIMEOUT) as rig:
        rss_before = retained_rss_mb()
        env.site.route("/huge", huge_html())
        env.llm.worker(
            Reply.tool_call("navigate", {"url": env.site.url("/huge")}),
            Reply.tool_call("read_page", {}),
            Reply.text("It is a very long page about a fox."),
        )
        env.llm.evaluator(verdict(True))
        fault = time.monotonic()
        first = await turn(rig, "Read the huge page")
        env.site.reset()  # the site lets go of its copy; Chromium has the page
        rss_first = retained_rss_mb()

        env.llm.reset()
        env.llm.worker(Reply.tool_call("read_page", {}), Reply.tool_call("read_page", {}), Reply.text("Same page."))
        env.llm.evaluator(verdict(True))
        again = await turn(rig, "Read it twice more")
        # The last worker request of the second turn carries the thread's four tool results.
        sent = tool_messages(env.llm.requests[-2]) if len(env.llm.requests) >= 2 else []
        growth = rss_first - rss_before, retained_rss_mb() - rss_first

        results = of(first, ToolResult) + of(again, ToolResult)
        expect(len(results) == 4 and all(r.ok for r in results), f"the tools failed: {describe(first + again)}")
        slowest = max(r.seconds for r in results)
        expect(slowest < HUGE_TOOL_SECONDS, f"a tool took {slowest:.1f} s on the huge page")
        expect(len(sent) == 4, f"the model got {len(sent)} of the 4 tool results")
        longest = max(len(s) for s in sent)
        expect(longest < MESSAGE_LIMIT_CHARS, f"a tool result sent to the model was {longest:,} characters")
        # Older results reach the model summarised (bounded prompts); the newest read is whole.
        expect("truncated" in sent[-1], "read_page did not say it truncated the page")
        expect(growth[0] < RSS_LIMIT_MB, f"Python's RSS grew by {growth[0]:.0f} MB with the first load")
        expect(growth[1] < RSS_AGAIN_MB, f"Python's RSS grew by {growth[1]:.0f} MB more with two more reads")
        done = await recover(env, rig, browse=True)
        message = (
            f"results capped at {longest:,} characters; slowest tool {slowest:.1f} s; "
            f"Python RSS +{growth[0]:.0f} MB, then {growth[1]:+.0f} MB for two more reads"
        )
        return Outcome(message, fault, done)


# -- the model --------------------------------------------------------------------------------------
async def _model_fault(env: Env, replies: Sequence[Reply], **overrides: Any) -> Outcome:
    async with agent_rig(env, **overrides) as rig:
        env.llm.worker(*replies)
        fault = time.monotonic()
        events = await turn(rig, "Look at the about page, please.")
        errors = of(events, ErrorEvent)
        expect(errors and errors[0].category == "model", f"no model error: {describe(events)}")
        told = errors[0].message
        expect("test" not in told, "the API key showed in the message")
        last = events[-1]
        expect(isinstance(last, Finished) and last.outcome == "error", describe(events))
        done = await recover(env, rig)
        return Outcome(told, fault, done)


async def model_500(env: Env) -> Outcome:
    """The model server fails with 500 after a tool step (so the thread holds a tool call)."""
    return await _model_fault(env, (Reply.tool_call("navigate", {"url": env.site.url("/about")}), Reply.error(500)))


async def model_429(env: Env) -> Outcome:
    return await _model_fault(env, (Reply.error(429),))


async def model_hangs(env: Env) -> Outcome:
    return await _model_fault(env, (Reply.hang(),), model_timeout_seconds=MODEL_TIMEOUT)


def _garbage(env: Env, body: bytes, content_type: str) -> Outcome:
    with FlakyFront(env.llm.base_url) as front, facade(env, front.base_url) as sk:
        env.llm.reset()
        env.llm.worker(Reply.tool_call("navigate", {"url": env.site.url("/about")}))
        front.plan.extend([None, (body, content_type)])  # the tool call goes through; the next reply is garbage
        fault = time.monotonic()
        events = wait_finished(sk.start_run("tab-1", "Read the about page", CRITERIA, "t1"))
        errors = of(events, ErrorEvent)
        expect(errors, f"no error event: {describe(events)}")
        expect(errors[0].category == "model", f"a {errors[0].category} error, not a model error: {describe(events)}")
        expect(of(events, ToolResult), f"the tool step never ran: {describe(events)}")
        done_event = events[-1]
        expect(isinstance(done_event, Finished) and done_event.outcome == "error", describe(events))
        told = errors[0].message
        expect("Traceback" not in told and body.decode()[:10] not in told, f"raw output reached the user: {told!r}")
        expect(sk.runtime.is_running, "the loop thread died")
        _, done = facade_turn(env, sk, "Are you still there?", present=["Read the about page"])
        return Outcome(told, fault, done)


def model_garbage(body: bytes, content_type: str) -> Fault:
    """The model server answers a mid-turn request with status 200 and ``body``, through the facade."""
    return in_thread(functools.partial(_garbage, body=body, content_type=content_type))


# -- tools ------------------------------------------------------------------------------------------
async def _tool_fault(env: Env, rig: Rig, calls: Reply, message: str, count: int) -> tuple[list[ToolResult], float]:
    env.llm.worker(calls, Reply.text("The tool failed; here is what I know."))
    env.llm.evaluator(verdict(True))
    fault = time.monotonic()
    events = await turn(rig, message)
    results = of(events, ToolResult)
    expect(len(results) == count, f"expected {count} tool results: {describe(events)}")
    expect(not any(r.ok for r in results), f"a broken tool call succeeded: {describe(events)}")
    expect(of(events, FinalAnswer), f"the run did not finish with the model's answer: {describe(events)}")
    return results, fault


async def tool_bad_arguments(env: Env) -> Outcome:
    """navigate with a number for its URL, and with no URL at all."""
    async with agent_rig(env) as rig:
        calls = Reply.tool_calls([("navigate", {"url": 12345}), ("navigate", {})])
        results, fault = await _tool_fault(env, rig, calls, "Open page 12345", 2)
        done = await recover(env, rig, browse=True)
        return Outcome(" / ".join(r.output for r in results), fault, done)


def _exploding_tool() -> BaseTool:
    async def explode(what: str = "") -> str:
        raise RuntimeError(f"boom {what}".strip())

    return StructuredTool.from_function(coroutine=explode, name="explode", description="Always fails.")


async def tool_raises(env: Env) -> Outcome:
    """A tool whose implementation raises RuntimeError.

    The runner builds its graph once, with its own tools plus any it is handed (as a session hands it
    its MCP tools); building it now with one more tool is how that tool reaches the model.
    """
    async with agent_rig(env) as rig:
        rig.runner.graph([_exploding_tool()])
        calls = Reply.tool_call("explode", {"what": "now"})
        results, fault = await _tool_fault(env, rig, calls, "Use the explode tool", 1)
        done = await recover(env, rig, browse=True)
        return Outcome(results[0].output, fault, done)


async def tool_malformed_arguments(env: Env) -> Outcome:
    """The model sends a tool call whose arguments are not valid JSON."""
    async with agent_rig(env) as rig:
        broken = Reply("message", calls=(("navigate", '{"url": "http://127.0.0.1'),))
        env.llm.worker(broken, Reply.text("Sorry, my last call was garbled."))
        env.llm.evaluator(verdict(True), verdict(True))
        fault = time.monotonic()
        events = await turn(rig, "Open the home page")
        expect(isinstance(events[-1], Finished), describe(events))
        # Both problems are worth reporting: a model left untold and a history left invalid.
        problems: list[str] = []
        results = of(events, ToolResult)
        told = results[0].output if results else ""
        try:
            done = await recover(env, rig)
        except ScenarioFailed as exc:
            problems.append(str(exc))
        if not results or results[0].ok:
            problems.append(f"the model was not told its call's arguments were malformed ({describe(events)})")
        if problems:
            raise ScenarioFailed("; ".join(problems))
        return Outcome(told, fault, done)


# -- bad input to the facade ------------------------------------------------------------------------
def _bad_message(env: Env, message: str, criteria: str = CRITERIA) -> Outcome:
    with facade(env) as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        told = refused(lambda: sk.start_run("tab-1", message, criteria, "t1"))
        absent = [message] if message.strip() else []
        _, done = facade_turn(env, sk, "What is my name?", present=[REMEMBERED], absent=absent)
        first_turn = sk.history("t1")[:2]
        expect(first_turn == [("user", REMEMBERED), ("assistant", "Noted.")], "the conversation lost its first turn")
        return Outcome(told, fault, done)


def bad_message(message: str, criteria: str = CRITERIA) -> Fault:
    """A turn refused for its message or criteria; the conversation before it is kept."""
    return in_thread(functools.partial(_bad_message, message=message, criteria=criteria))


@in_thread
def control_characters(env: Env) -> Outcome:
    """Only control characters are refused; mixed into a message, they are removed before sending."""
    with facade(env) as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        told = refused(lambda: sk.start_run("tab-1", "\x00\x07\x1b\x7f", CRITERIA, "t1"))
        events, done = facade_turn(env, sk, "Wh\x00at is\x1b[31m my\x07 name?\x7f", present=[REMEMBERED])
        started = of(events, RunStarted)[0].message
        sent = [str(m.get("content")) for m in env.llm.requests[0]["messages"] if m.get("role") == "user"]
        expect(not any(c in s for s in sent for c in "\x00\x07\x1b\x7f"), "control characters reached the model")
        return Outcome(f"{told} / sent as {started!r}", fault, done)


BAD_THREAD_IDS = ("../../etc/passwd", "", "x" * 65, "a b", "é", "t1;DROP TABLE")


@in_thread
def malformed_thread_id(env: Env) -> Outcome:
    """Thread ids that are paths, empty, too long or odd are refused, and never looked up."""
    with facade(env) as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        told: dict[str, str] = {}
        for bad in BAD_THREAD_IDS:
            told[bad] = refused(functools.partial(sk.start_run, "tab-1", "hello", CRITERIA, bad))
            expect(sk.history(bad) == [] and not sk.conversation_exists(bad), f"{bad!r} was looked up")
        messages = set(told.values())
        expect(len(messages) == 1, f"the refusals differ by id: {told}")
        expect([c.thread_id for c in sk.conversations()] == ["t1"], "a refused thread id reached the store")
        _, done = facade_turn(env, sk, "What is my name?", present=[REMEMBERED])
        return Outcome(messages.pop(), fault, done)


@in_thread
def unknown_thread_id(env: Env) -> Outcome:
    """A link to a thread that is gone starts that conversation afresh; the others are untouched."""
    with facade(env) as sk:
        facade_turn(env, sk, REMEMBERED, answer="Noted.")
        fault = time.monotonic()
        unknown = "never-seen-0123"
        expect(sk.history(unknown) == [], "an unknown thread has a history")
        expect(not sk.conversation_exists(unknown), "an unknown thread exists")
        _, done = facade_turn(env, sk, "Hello?", thread=unknown, absent=[REMEMBERED])
        expect(sk.conversation_exists(unknown), "the new conversation was not recorded")
        facade_turn(env, sk, "What is my name?", present=[REMEMBERED], absent=["Hello?"])
        return Outcome("an unknown id opens an empty conversation", fault, done)


BAD_SETTINGS = {
    "SIDEKICK_TOOL_TIMEOUT": "soon",
    "SIDEKICK_MODEL_TIMEOUT": "-5",
    "SIDEKICK_TURN_TIMEOUT": "inf",
    "SIDEKICK_MODEL_RETRIES": "2.5",
    "SIDEKICK_RECURSION_LIMIT": "-1",
    "SIDEKICK_HEADLESS": "maybe",
    "SIDEKICK_ALLOW_PRIVATE_NETWORK": "yes please",
    "SIDEKICK_BLOCKED_DOMAINS": "ok.com, not a domain!",
}


@in_thread
def malformed_env_value(env: Env) -> Outcome:
    """Each malformed setting is refused by a message that starts with its variable's name; the
    settings without it start a facade that answers."""
    good = {
        "SIDEKICK_DATA_DIR": str(env.workdir / "malformed_env_value"),
        "OPENAI_BASE_URL": env.llm.base_url,
        "OPENAI_API_KEY": "test",
        "SIDEKICK_MODEL_RETRIES": "0",
        "SIDEKICK_ALLOW_PRIVATE_NETWORK": "1",
    }
    fault = time.monotonic()
    told = []
    for var, value in BAD_SETTINGS.items():
        try:
            Settings.load({**good, var: value})
        except ConfigError as exc:
            expect(str(exc).startswith(var), f"the error does not start with {var}: {exc}")
            told.append(str(exc))
            continue
        raise ScenarioFailed(f"{var}={value!r} was accepted")
    sk = Sidekick(Settings.load(good)).start(warm=False)
    try:
        _, done = facade_turn(env, sk, "Hello?")
    finally:
        sk.close()
    return Outcome(told[0], fault, done)


GARBLED = "sent a reply Sidekick could not read", "OPENAI_BASE_URL"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "chromium_killed", chromium_killed,
            ("Error: The browser stopped unexpectedly (crashed or was killed).", "It restarts on your next action."),
        ),
        Scenario(
            "page_never_loads", page_never_loads, (f"did not finish within the {TOOL_TIMEOUT:g} s time limit", "/hang")
        ),
        Scenario("huge_page", huge_page, ("results capped at",)),
        Scenario("model_500", model_500, ("The model server failed (500). Try again in a moment.",)),
        Scenario("model_429", model_429, ("The model server is rate-limiting requests (429).",)),
        Scenario(
            "model_hangs", model_hangs,
            (f"did not answer within {MODEL_TIMEOUT:g} s. Try again, or raise SIDEKICK_MODEL_TIMEOUT.",),
        ),
        Scenario("model_garbage_json", model_garbage(b'{"choices": [', "application/json"), GARBLED),
        Scenario("model_garbage_html", model_garbage(b"<html>Bad gateway</html>", "text/html"), GARBLED),
        Scenario(
            "tool_bad_arguments", tool_bad_arguments,
            ("Error: invalid arguments for navigate: Input should be a valid string"
             " / Error: invalid arguments for navigate: Field required",),
        ),
        Scenario("tool_raises", tool_raises, ("Error: explode failed unexpectedly (RuntimeError: boom now)",)),
        Scenario(
            "tool_malformed_arguments", tool_malformed_arguments,
            ("Error: the arguments for navigate were not valid JSON", "call it again with a JSON object"),
        ),
        Scenario("empty_message", bad_message(""), ("Type a message first.",)),
        Scenario("whitespace_message", bad_message(" \n\t\u00a0 "), ("Type a message first.",)),
        Scenario(
            "message_100kb", bad_message("lorem ipsum " * (100_000 // 12 + 1)),
            ("That message is 100,007 characters; the limit is 20,000.",),
        ),
        Scenario(
            "control_characters", control_characters, ("Type a message first. / sent as 'What is[31m my name?'",)
        ),
        Scenario(
            "long_criteria", bad_message("Summarise the page", "be thorough; " * 400),
            ("The success criteria are 5,199 characters; keep them under 2,000.",),
        ),
        Scenario(
            "malformed_thread_id", malformed_thread_id,
            ("That conversation id is not valid; start a new conversation.",),
        ),
        Scenario("unknown_thread_id", unknown_thread_id, ("an unknown id opens an empty conversation",)),
        Scenario(
            "malformed_env_value", malformed_env_value, ("SIDEKICK_TOOL_TIMEOUT must be a number (got 'soon').",)
        ),
    ]
}
