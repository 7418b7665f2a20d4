"""Text that names several elements the snapshot has no refs for (inline ``<span>`` links folded into
their paragraph's text, as on MiniWoB++'s click-link): the error lists each with a CSS selector that
names only it, and that selector reaches it. Real Chromium.
"""

from __future__ import annotations

import re

import pytest
from langchain_core.tools import BaseTool

from sidekick.browser.context import SessionBrowser
from sidekick.errors import ToolError
from tests.support.fakes.site import LocalSite
from tests.tools.test_browser_tools import sb, shared_pool, shots, tools, use  # noqa: F401  (fixtures)

# ruff: noqa: F811  (the fixtures above are parameters below)

WORDS = (
    "<p id='area'>Lorem <span style='cursor:pointer' onclick=\"document.title='first'\">vitae</span> ipsum "
    "<span style='cursor:pointer' onclick=\"document.title='second'\">vitae</span> dolor.</p>"
)


async def test_twin_matches_without_refs_are_listed_with_css_that_reaches_each(
    tools: dict[str, BaseTool], sb: SessionBrowser, site: LocalSite
) -> None:
    site.route("/words", WORDS)
    opened = await use(tools, "navigate", url=site.url("/words"))
    assert "Lorem vitae ipsum vitae dolor." in opened  # folded into the text: no ref to name them by
    with pytest.raises(ToolError, match="2 visible elements match 'vitae'") as refused:
        await use(tools, "click", target="vitae")
    selectors = re.findall(r"\(CSS '([^']+)'\)", str(refused.value))
    assert selectors == ["#area > span:nth-of-type(1)", "#area > span:nth-of-type(2)"]
    await use(tools, "click", target=selectors[1])
    assert await sb.page.title() == "second"
