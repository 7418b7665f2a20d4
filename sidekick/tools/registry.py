"""Which tools a session gets, and why any are off. The set is fixed when the session's agent is built:
neither the model nor a page can add to it."""

from __future__ import annotations

from langchain_core.tools import BaseTool

from sidekick.config import Settings
from sidekick.tools import browser, files, notify, python, web
from sidekick.tools.base import ToolContext


def build_tools(ctx: ToolContext, get_browser: browser.BrowserGetter | None) -> list[BaseTool]:
    return [
        *browser.build(ctx, get_browser),
        *web.build(ctx),
        *files.build(ctx),
        *python.build(ctx),
        *notify.build(ctx),
    ]


def availability(settings: Settings) -> list[tuple[str, bool, str]]:
    """(tool, on, why it is off) for the dashboard and the README."""
    return [
        ("browser", True, ""),
        *web.availability(settings),
        ("files", True, ""),
        ("run_python", settings.enable_python, "" if settings.enable_python else "set SIDEKICK_ENABLE_PYTHON=1"),
        *notify.availability(settings),
    ]
