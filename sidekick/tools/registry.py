"""Which tools a session gets, and why any are off: the one place that decides.

Each tool module exports ``available(settings)`` and ``build(ctx)``. The set is fixed when a
session's runner is built: neither the model nor a page can add to it.
"""

from __future__ import annotations

from langchain_core.tools import BaseTool

from sidekick.config import Settings
from sidekick.tools import browser, files, notify, python, web
from sidekick.tools.base import Availability, ToolContext

MODULES = (browser, web, files, python, notify)


def build_tools(ctx: ToolContext) -> list[BaseTool]:
    return [tool for module in MODULES for tool in module.build(ctx)]


def availability(settings: Settings) -> list[Availability]:
    """(tool, on, how to turn it on) for the dashboard, the CLI and the README."""
    return [row for module in MODULES for row in module.available(settings)]
