"""Which tools a session gets and why any are off: every tool module's rows, and what is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidekick.browser.context import SessionBrowser
from sidekick.config import Settings
from sidekick.tools import browser, files, notify, python, web
from sidekick.tools.base import ToolContext
from sidekick.tools.registry import MODULES, availability, build_tools


async def never_called() -> SessionBrowser:
    raise AssertionError("building tools must not open a browser")


def rows(settings: Settings) -> dict[str, tuple[bool, str]]:
    return {name: (on, why) for name, on, why in availability(settings)}


def test_availability_lists_every_module_in_order_with_a_reason_for_each_tool_that_is_off(tmp_path: Path) -> None:
    assert MODULES == (browser, web, files, python, notify)
    listed = availability(Settings(data_dir=tmp_path))
    assert [name for name, _, _ in listed] == [
        "browser",
        "web_search",
        "wikipedia",
        "files",
        "run_python",
        "send_notification",
    ]
    assert [row for module in MODULES for row in module.available(Settings(data_dir=tmp_path))] == listed
    for name, on, why in listed:
        assert bool(why) != on, f"{name}: an off tool says how to turn it on, an on tool says nothing"
    assert rows(Settings(data_dir=tmp_path))["web_search"] == (False, "set SERPER_API_KEY")
    assert rows(Settings(data_dir=tmp_path))["send_notification"] == (False, "set PUSHOVER_USER and PUSHOVER_TOKEN")


def test_keys_turn_tools_on_and_a_half_configured_one_names_what_is_missing(tmp_path: Path) -> None:
    keyed = rows(Settings(data_dir=tmp_path, serper_api_key="k", pushover_user="u", pushover_token="t"))
    assert keyed["web_search"] == (True, "") and keyed["send_notification"] == (True, "")
    half = rows(Settings(data_dir=tmp_path, pushover_user="u"))
    assert half["send_notification"] == (False, "set PUSHOVER_TOKEN")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({}, "set SIDEKICK_ENABLE_PYTHON=1")],
    ids=["not-enabled"],
)
def test_the_python_row_says_why_it_is_off(tmp_path: Path, overrides: dict[str, bool], reason: str) -> None:
    settings = Settings(data_dir=tmp_path, **overrides)
    assert rows(settings)["run_python"] == (False, reason)
    assert "run_python" not in {t.name for t in build_tools(ToolContext(settings=settings, workspace=tmp_path))}


def test_browser_tools_are_built_only_with_a_browser_getter(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    bare = ToolContext(settings=settings, workspace=tmp_path / "w")
    with_getter = ToolContext(settings=settings, workspace=tmp_path / "w", get_browser=never_called)
    # The browser module's own list, so this test does not pin which browser tools exist.
    browser_tools = {t.name for t in browser.build(with_getter)}
    assert "navigate" in browser_tools and browser.build(bare) == []
    without = {t.name for t in build_tools(bare)}
    assert without == {"wikipedia", "read_file", "write_file", "list_files"}
    names = [t.name for t in build_tools(with_getter)]
    assert set(names) == browser_tools | without and len(names) == len(set(names))
    assert not (tmp_path / "w").exists(), "building touches no disk"


def test_side_effecting_tools_are_marked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, pushover_user="u", pushover_token="t", serper_api_key="k")
    built = build_tools(ToolContext(settings=settings, workspace=tmp_path, get_browser=never_called))
    marked = {t.name for t in built if (t.metadata or {}).get("side_effect")}
    assert marked == {"write_file", "send_notification"}
