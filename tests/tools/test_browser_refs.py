"""Refs across navigation, through the real agent loop: one model reply with two tool calls, the
first of which leaves the page. The second call's ref was read before the reply, from the page that
is gone, so it is refused with a plain error, and the element of the new page that carries the same
number is never touched. Real Chromium, real HTTP to the fake model, the real graph and tools.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sidekick.events import ToolResult
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import Rig, of, verdict

# Two pages of the same shape, so their elements get the same ref numbers.
TWO = (
    "<html><head><title>Two</title></head><body><button>First</button>"
    "<button onclick=\"document.title = 'touched ' + (window.n = (window.n || 0) + 1)\">Second</button></body></html>"
)
ONE = {
    "same tab": "<button onclick=\"location.href='/two'\">Go</button>",
    "new tab": '<a href="/two" target="_blank">Go</a>',
}


def ref_of(result: str, name: str) -> str:
    match = re.search(rf'"{name}" \[ref=(\w+)\]', result)
    assert match, f"no {name!r} in:\n{result}"
    return match.group(1)


def number(ref: str) -> str:
    return ref.rsplit("e", 1)[1]


class Model:
    """Reply 1 opens the page; reply 2 clicks Go and then, in the same reply, Stay by the ref read
    before it; reply 3 clicks Second by the ref the Go click returned (read now); then it answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.replies = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        results = [str(m["content"]) for m in request["messages"] if m.get("role") == "tool"]
        self.replies += 1
        if not results:
            return Reply.tool_call("navigate", {"url": self.url})
        if len(results) == 1:
            go, stay = ref_of(results[0], "Go"), ref_of(results[0], "Stay")
            return Reply.tool_calls([("click", {"ref": go}), ("click", {"ref": stay})])
        if len(results) == 3:
            return Reply.tool_call("click", {"ref": ref_of(results[1], "Second")})
        return Reply.text("Done.")


@pytest.mark.parametrize("how", sorted(ONE))
async def test_a_ref_read_before_a_navigation_in_the_same_reply_is_refused(
    how: str, rig: Rig, llm: FakeOpenAI, site: LocalSite
) -> None:
    site.route("/two", TWO)
    site.route(
        "/one",
        f"<html><head><title>One</title></head><body>{ONE[how]}"
        "<button onclick=\"document.title = 'stayed'\">Stay</button></body></html>",
    )
    llm.handler = Model(site.url("/one"))
    llm.evaluator(verdict(True))

    events = await rig.run("Open the page and press the buttons.")

    opened, went, stale, fresh = of(events, ToolResult)
    assert opened.ok and went.ok and fresh.ok, (opened, went, stale, fresh)
    assert ("It opened a new tab" if how == "new tab" else "Now on: Two") in went.output
    old, new = ref_of(opened.output, "Stay"), ref_of(went.output, "Second")
    # The new page has an element with the old ref's number (Playwright prefixes a later
    # document's refs, e3 then f1e3, but the refusal must not rest on that).
    assert number(old) == number(new)
    assert not stale.ok
    assert f"Ref {old} is from a snapshot of an earlier page" in stale.output
    assert "an earlier tool call of this same reply did that" in stale.output
    assert "take a new snapshot" in stale.output
    sb = await rig.session.browser()
    # The refused call touched nothing; the next reply's ref, read from the new page, worked once.
    assert await sb.page.title() == "touched 1"
    if how == "new tab":
        assert [await p.title() for p in sb.context.pages] == ["One", "touched 1"]
    worker = [r for r in llm.requests if r.get("response_format") is None][-1]
    replies = [m for m in worker["messages"] if m.get("role") == "assistant" and m.get("tool_calls")]
    calls = [json.loads(c["function"]["arguments"]) for c in replies[1]["tool_calls"]]
    assert calls == [{"ref": ref_of(opened.output, "Go")}, {"ref": old}]  # both in one reply
