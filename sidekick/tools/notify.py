"""Push notifications to the user's phone through Pushover.

``send_notification`` is built only when both ``PUSHOVER_USER`` and ``PUSHOVER_TOKEN`` are set. It acts
outside the browser, so it is marked as a side effect and waits for the user's approval. Failures
become a plain :class:`~sidekick.errors.ToolError` that never contains the user key or the token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from langchain_core.tools import BaseTool, StructuredTool

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools.base import Availability, ToolContext

PUSHOVER_URL = "https://api.pushover.net/1/messages.json"
# Pushover's own limits; longer text is refused, so it is shortened here instead.
MESSAGE_LIMIT = 1024
TITLE_LIMIT = 250
DEFAULT_TITLE = "Sidekick"


def available(settings: Settings) -> list[Availability]:
    missing = [
        env
        for env, value in (("PUSHOVER_USER", settings.pushover_user), ("PUSHOVER_TOKEN", settings.pushover_token))
        if not value
    ]
    return [("send_notification", not missing, "set " + " and ".join(missing) if missing else "")]


def build(ctx: ToolContext, *, pushover_url: str = PUSHOVER_URL) -> list[BaseTool]:
    """``send_notification`` when Pushover is configured, otherwise nothing."""
    user = ctx.settings.pushover_user
    token = ctx.settings.pushover_token
    if not (user and token):
        return []
    timeout = ctx.settings.tool_timeout_seconds

    async def send_notification(message: str, title: str = DEFAULT_TITLE) -> str:
        message = message.strip()
        if not message:
            raise ToolError("Notification not sent: the message is empty.")
        shortened = len(message) > MESSAGE_LIMIT
        if shortened:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        form = {
            "token": token,
            "user": user,
            "message": message,
            "title": title.strip()[:TITLE_LIMIT] or DEFAULT_TITLE,
        }
        try:
            async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=timeout) as client:
                response = await client.post(pushover_url, data=form)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ToolError(f"Notification not sent: Pushover did not answer within {timeout:g} seconds.") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"Notification not sent: could not reach Pushover ({type(exc).__name__}).") from exc
        body = _json(response)
        if response.status_code != 200 or body.get("status") != 1:
            detail = _errors(body, secrets=(token, user))
            hint = (
                " (check PUSHOVER_USER and PUSHOVER_TOKEN)"
                if response.status_code in (401, 403) or "token" in detail or "user" in detail
                else ""
            )
            raise ToolError(
                f"Notification not sent: Pushover answered {response.status_code}"
                + (f": {detail}" if detail else "")
                + f"{hint}."
            )
        if shortened:
            return f"Notification sent (message shortened to {MESSAGE_LIMIT} characters)."
        return "Notification sent."

    return [
        StructuredTool.from_function(
            coroutine=send_notification,
            name="send_notification",
            description=(
                "Send a push notification to the user's phone. Use it to report a finished task or "
                f"something that needs the user's attention. The message is cut at {MESSAGE_LIMIT} "
                "characters; the title is optional."
            ),
            metadata={"side_effect": True},
        )
    ]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _errors(body: dict[str, Any], *, secrets: tuple[str, ...]) -> str:
    """Pushover's own error list as one line, with the credentials masked in case it quotes them."""
    errors = body.get("errors")
    text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:300]
