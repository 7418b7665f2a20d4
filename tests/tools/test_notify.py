from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from langchain_core.tools import BaseTool

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools import notify
from sidekick.tools.base import ToolContext
from tests.support.fakes.http import HANG, FakeHTTP, Seen

USER = "user-secret-abc"
TOKEN = "token-secret-xyz"
OK = (200, {"status": 1, "request": "r-1"})


def tools(fake: FakeHTTP, **settings: Any) -> list[BaseTool]:
    ctx = ToolContext(settings=Settings(**settings), workspace=Path("."))
    return notify.build(ctx, pushover_url=f"{fake.url}/1/messages.json")


def send(fake: FakeHTTP, **settings: Any) -> BaseTool:
    [tool] = tools(fake, pushover_user=USER, pushover_token=TOKEN, **settings)
    return tool


def form(seen: Seen) -> dict[str, list[str]]:
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qs(seen.body.decode())


@pytest.mark.parametrize(
    ("configured", "reason"),
    [
        ({}, "set PUSHOVER_USER and PUSHOVER_TOKEN"),
        ({"pushover_user": USER}, "set PUSHOVER_TOKEN"),
        ({"pushover_token": TOKEN}, "set PUSHOVER_USER"),
    ],
)
def test_notification_tool_needs_user_and_token(fake: FakeHTTP, configured: dict[str, Any], reason: str) -> None:
    assert tools(fake, **configured) == []
    assert notify.available(Settings(**configured)) == [("send_notification", False, reason)]


def test_notification_tool_is_a_side_effect(fake: FakeHTTP) -> None:
    tool = send(fake)
    assert tool.name == "send_notification"
    assert tool.metadata == {"side_effect": True}
    assert notify.available(Settings(pushover_user=USER, pushover_token=TOKEN)) == [("send_notification", True, "")]


async def test_send_notification_posts_the_form_fields(fake: FakeHTTP) -> None:
    fake.routes["/1/messages.json"] = lambda seen: OK
    result = await send(fake).ainvoke({"message": " Done: report saved. ", "title": "Report"})
    assert result == "Notification sent."
    [seen] = fake.seen
    assert seen.method == "POST"
    assert form(seen) == {
        "token": [TOKEN],
        "user": [USER],
        "message": ["Done: report saved."],
        "title": ["Report"],
    }


async def test_send_notification_has_a_default_title(fake: FakeHTTP) -> None:
    fake.routes["/1/messages.json"] = lambda seen: OK
    await send(fake).ainvoke({"message": "hello"})
    assert form(fake.seen[0])["title"] == ["Sidekick"]


async def test_send_notification_caps_the_message(fake: FakeHTTP) -> None:
    fake.routes["/1/messages.json"] = lambda seen: OK
    result = await send(fake).ainvoke({"message": "é" * 2000, "title": "t" * 400})
    assert result == "Notification sent (message shortened to 1024 characters)."
    sent = form(fake.seen[0])
    assert sent["message"] == ["é" * 1023 + "…"]
    assert sent["title"] == ["t" * notify.TITLE_LIMIT]


async def test_send_notification_refuses_an_empty_message(fake: FakeHTTP) -> None:
    with pytest.raises(ToolError, match="the message is empty"):
        await send(fake).ainvoke({"message": "   "})
    assert fake.seen == []


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (
            400,
            {"token": "invalid", "errors": ["application token is invalid"], "status": 0},
            "Notification not sent: Pushover answered 400: application token is invalid "
            "(check PUSHOVER_USER and PUSHOVER_TOKEN).",
        ),
        (
            400,
            {"errors": [f"user key {USER} is invalid for token {TOKEN}"], "status": 0},
            "Notification not sent: Pushover answered 400: user key *** is invalid for token *** "
            "(check PUSHOVER_USER and PUSHOVER_TOKEN).",
        ),
        (500, b"<html>down</html>", "Notification not sent: Pushover answered 500."),
        (
            200,
            {"status": 0, "errors": ["message cannot be blank"]},
            "Notification not sent: Pushover answered 200: message",
        ),
    ],
)
async def test_send_notification_failures_are_plain_and_keep_the_keys_secret(
    fake: FakeHTTP, status: int, payload: Any, expected: str
) -> None:
    fake.routes["/1/messages.json"] = lambda seen: (status, payload)
    with pytest.raises(ToolError) as caught:
        await send(fake).ainvoke({"message": "hi"})
    assert str(caught.value).startswith(expected)
    assert USER not in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_send_notification_times_out(fake: FakeHTTP) -> None:
    fake.routes["/1/messages.json"] = lambda seen: HANG
    with pytest.raises(ToolError, match=r"^Notification not sent: Pushover did not answer within 0\.2 seconds\.$"):
        await send(fake, tool_timeout_seconds=0.2).ainvoke({"message": "hi"})
