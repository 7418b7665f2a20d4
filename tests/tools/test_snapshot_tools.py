"""The snapshot and the ref-taking tools on real Chromium: every control, and every failure mode."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from langchain_core.tools import BaseTool

from sidekick.browser.context import SessionBrowser
from sidekick.browser.snapshot import Snapshot
from sidekick.config import Settings
from sidekick.errors import ToolError
from tests.support.fakes.site import LocalSite
from tests.tools.test_browser_tools import (  # noqa: F401  (sb, shared_pool, shots, tools: fixtures)
    assert_one_untrusted_block,
    make_tools,
    sb,
    shared_pool,
    shots,
    tools,
    use,
)

# ruff: noqa: F811  (the fixtures above are parameters below)

CONTROLS = """<html><head><title>Controls</title></head><body>
<p id="instr">Click no to continue. Select a colour.</p>
<button onclick="document.getElementById('out').textContent='said no'">no</button>
<button>Edit</button><button onclick="document.getElementById('out').textContent='second edit'">Edit</button>
<p>Username <input id="user"></p>
<p>Password <input id="pw1" type="password"></p><p>Again <input id="pw2" type="password"></p>
<label><input type="checkbox" id="tos"> I agree</label>
<label><input type="radio" name="size" value="s"> Small</label>
<label><input type="radio" name="size" value="l"> Large</label>
<select id="colour"><option value="r">Red</option><option value="g">Green</option>
<option value="b">Blue</option></select>
<select id="many" multiple><option>One</option><option>Two</option><option>Three</option></select>
<span onclick="document.getElementById('out').textContent='span clicked'">plain words</span>
<div style="height:80px;overflow:auto" id="box"><div style="height:600px">tall content</div></div>
<p id="out"></p>
<button id="later" onclick="setTimeout(() => document.getElementById('out').textContent='arrived', 300)">Later</button>
</body></html>"""


def ref(text: str, needle: str) -> str:
    """The ref on the first snapshot line containing ``needle``."""
    for line in text.splitlines():
        if needle in line and "[ref=" in line:
            return line.split("[ref=", 1)[1].split("]", 1)[0]
    raise AssertionError(f"no line with {needle!r} in:\n{text}")


@pytest.fixture
async def controls(tools: dict[str, BaseTool], site: LocalSite) -> str:
    site.route("/controls", CONTROLS)
    return await use(tools, "navigate", url=site.url("/controls"))


async def out(sb: SessionBrowser) -> str:
    return str(await sb.page.text_content("#out"))


def test_the_parser_reads_roles_names_states_refs_and_quoted_lines() -> None:
    text = """- generic [active] [ref=e1]:
  - 'link "Tab #2" [ref=f5e17] [cursor=pointer]':
    - /url: "#tabs-2"
  - checkbox "R3" [checked] [ref=e18]
  - generic [ref=e8]: "Last reward: -"
  - paragraph [ref=e6]:
    - text: Username
    - textbox [ref=e7]
  - combobox [ref=e9]:
    - option "Red" [selected]
    - option "Blue\""""
    snap = Snapshot.parse(text, 1, 0)
    assert snap.nodes["f5e17"].name == "Tab #2" and snap.nodes["f5e17"].pointer
    assert snap.nodes["e18"].states == {"checked"} and snap.nodes["e8"].own_text == "Last reward: -"
    assert snap.nodes["e7"].parent == "e6" and snap.nodes["e6"].own_text == "Username"
    assert snap.nodes["e9"].options == ["Red", "Blue"]
    assert snap.ancestors("e7") == {"e6", "e1"}
    body, note = snap.render(60)
    assert body.count("\n") < text.count("\n") and "snapshot(from_line=" in note


async def test_snapshot_shows_refs_and_state_wrapped_as_untrusted(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    assert_one_untrusted_block(controls)  # navigate already carries one
    snap = await use(tools, "snapshot")
    assert snap.startswith("Snapshot of Controls — ") and 'button "no" [ref=' in snap
    assert_one_untrusted_block(snap)
    await sb.page.check("#tos")
    assert re.search(r'checkbox "I agree" \[checked\]( \[active\])? \[ref=e\d+\]', await use(tools, "snapshot"))


async def test_text_prefers_the_button_over_the_instruction_and_lists_ties_with_refs(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    clicked = await use(tools, "click", target="no")
    assert clicked.startswith('Clicked button "no" [ref=') and await out(sb) == "said no"
    with pytest.raises(ToolError, match=r'2 elements match \'Edit\': button "Edit" \[ref=(e\d+)\]; button "Edit"'):
        await use(tools, "click", target="Edit")
    snap = await use(tools, "snapshot")
    refs = [line.split("[ref=")[1].split("]")[0] for line in snap.splitlines() if 'button "Edit"' in line]
    assert len(refs) == 2
    await use(tools, "click", ref=refs[1])
    assert await out(sb) == "second edit"


async def test_select_targets_the_select_not_the_word(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    chosen = await use(tools, "select_option", target="select#colour", values="Blue")
    assert chosen.startswith("Selected 'Blue' in combobox") and await sb.page.input_value("#colour") == "b"
    by_value = await use(tools, "select_option", ref=ref(chosen, "combobox"), values=["g"])
    assert "Selected 'Green'" in by_value and await sb.page.input_value("#colour") == "g"
    many = ref(by_value, "listbox")
    await use(tools, "select_option", ref=many, values=["One", "three"])
    selected = await sb.page.eval_on_selector("#many", "s => Array.from(s.selectedOptions, o => o.text)")
    assert selected == ["One", "Three"]
    with pytest.raises(ToolError, match=r"has no option 'Purple'\. Its options: 'Red', 'Green', 'Blue'"):
        await use(tools, "select_option", ref=ref(by_value, "combobox"), values="Purple")


async def test_unlabeled_fields_by_their_words_and_by_ref(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    typed = await use(tools, "type_text", target="Username", text="ada")
    assert typed.startswith("Typed 3 characters into textbox") and await sb.page.input_value("#user") == "ada"
    fields = [line for line in typed.splitlines() if "- textbox" in line]
    second_password = fields[2].split("[ref=")[1].split("]")[0]
    await use(tools, "type_text", ref=second_password, text="s3cret")
    assert await sb.page.input_value("#pw2") == "s3cret"
    await use(tools, "type_text", ref=second_password, text="!", clear=False)
    assert await sb.page.input_value("#pw2") == "s3cret!"


async def test_set_checked_hover_press_and_scroll_an_element(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    checked = await use(tools, "set_checked", target="I agree")
    assert checked.startswith('Checked checkbox "I agree"') and "[checked]" in checked
    await use(tools, "set_checked", target="Large")
    assert await sb.page.is_checked("input[value=l]")
    await use(tools, "set_checked", target="I agree", checked=False)
    assert not await sb.page.is_checked("#tos")
    assert (await use(tools, "hover", target="no")).startswith('Hovered over button "no"')
    field = ref(await use(tools, "snapshot"), "- textbox")
    pressed = await use(tools, "press_key", key="a", ref=field)
    assert pressed.startswith("Pressed 'a' on textbox") and await sb.page.input_value("#user") == "a"
    scrolled = await use(tools, "scroll", target="#box", direction="down")
    assert scrolled.startswith("Scrolled generic") and await sb.page.eval_on_selector("#box", "b => b.scrollTop") > 0


async def test_a_plain_span_with_a_handler_is_reached_by_its_text(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    await use(tools, "click", target="plain words")
    assert await out(sb) == "span clicked"


async def test_wait_for_text_and_its_timeout(
    settings: Settings, tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    await use(tools, "click", target="Later")
    waited = await use(tools, "wait_for", text="arrived")
    assert waited.startswith("'arrived' is on the page") and "arrived" in waited
    hasty = make_tools(settings, browser=sb, tool_timeout=1)
    with pytest.raises(ToolError, match=r"'never here' did not appear within 0\.8 s"):
        await use(hasty, "wait_for", text="never here")


# --- refs that must not be used ---


async def test_a_ref_from_an_earlier_page_or_not_in_the_snapshot_is_refused(
    tools: dict[str, BaseTool], site: LocalSite, controls: str
) -> None:
    old = ref(controls, 'button "no"')
    await use(tools, "navigate", url=site.url("/about"))
    with pytest.raises(ToolError, match=f"Ref {old} is not in the latest snapshot"):
        await use(tools, "click", ref=old)  # the new page's snapshot was taken: it is not there
    with pytest.raises(ToolError, match="Ref e999 is not in the latest snapshot: call snapshot"):
        await use(tools, "click", ref="e999")
    with pytest.raises(ToolError, match="is not a ref"):
        await use(tools, "click", ref="button 3")


async def test_a_ref_whose_element_went_away_is_refused(
    tools: dict[str, BaseTool], sb: SessionBrowser, controls: str
) -> None:
    gone = ref(controls, 'button "no"')
    await sb.page.evaluate("document.querySelector('button').remove()")
    with pytest.raises(ToolError, match=f'Ref {gone} \\(button "no" \\[ref={gone}\\]\\) is no longer on the page'):
        await use(tools, "click", ref=gone)


async def test_a_covered_button_fails_fast_naming_the_cover_and_force_gets_through(
    tools: dict[str, BaseTool], sb: SessionBrowser, site: LocalSite
) -> None:
    site.route(
        "/covered",
        "<div style='position:relative'><button onclick=\"document.title='pressed'\">Pay</button>"
        "<div id='banner' style='position:absolute;inset:0'>Cookie banner</div></div>",
    )
    opened = await use(tools, "navigate", url=site.url("/covered"))
    started = time.monotonic()
    covered = r'button "Pay" \[ref=e\d+\] is covered by another element.*id="banner".*force=true'
    with pytest.raises(ToolError, match=covered):
        await use(tools, "click", ref=ref(opened, 'button "Pay"'))
    assert time.monotonic() - started < 4  # not the whole tool budget
    forced = await use(tools, "click", ref=ref(opened, 'button "Pay"'), force=True)
    assert "sent the click event to it directly" in forced and await sb.page.title() == "pressed"


async def test_a_button_half_covered_is_clicked_where_it_shows(
    tools: dict[str, BaseTool], sb: SessionBrowser, site: LocalSite
) -> None:
    site.route(
        "/half",
        "<div style='position:relative'><button style='width:200px' onclick=\"document.title='pressed'\">Pay</button>"
        "<div style='position:absolute;top:0;left:60px;width:80px;height:40px;background:red'>ad</div></div>",
    )
    opened = await use(tools, "navigate", url=site.url("/half"))
    clicked = await use(tools, "click", ref=ref(opened, 'button "Pay"'))
    assert "at a part that shows (something covers its centre)" in clicked and await sb.page.title() == "pressed"


async def test_a_hidden_element_by_css_is_not_found(tools: dict[str, BaseTool], site: LocalSite) -> None:
    site.route("/hidden", "<button style='display:none' id='h'>Secret</button><p>shown</p>")
    await use(tools, "navigate", url=site.url("/hidden"))
    with pytest.raises(ToolError, match=r"Nothing on this page .* matches '#h'"):
        await use(tools, "click", target="#h")


# --- dialogs, downloads, frames and pages that move ---


async def test_a_dialog_is_reported_answered_and_never_hangs(
    tools: dict[str, BaseTool], sb: SessionBrowser, site: LocalSite, shots: list[Any]
) -> None:
    site.route(
        "/dialogs",
        "<button onclick=\"document.title = prompt('Your name?', 'x') || 'none'\">Ask</button>"
        "<button onclick=\"alert('Saved!')\">Save</button>",
    )
    await use(tools, "navigate", url=site.url("/dialogs"))
    started = time.monotonic()
    asked = await use(tools, "click", target="Ask")
    assert 'It opened a prompt dialog: "Your name?" (default answer "x")' in asked and "handle_dialog" in asked
    assert time.monotonic() - started < 3
    answered = await use(tools, "handle_dialog", accept=True, text="Grace")
    assert answered.startswith("Accepted a prompt dialog") and await sb.page.title() == "Grace"
    saved = await use(tools, "click", target="Save")
    assert 'It opened an alert dialog: "Saved!"' in saved
    # Moving on without answering dismisses it first, and the page works again.
    snap = await use(tools, "snapshot")
    assert snap.startswith('(First dismissed an alert dialog: "Saved!", which was still open.)')
    with pytest.raises(ToolError, match="No dialog is open"):
        await use(tools, "handle_dialog")


async def test_a_refused_download_is_reported(tools: dict[str, BaseTool], site: LocalSite) -> None:
    site.route("/dl", '<a href="data:application/octet-stream,abc" download="report.bin">Get the report</a>')
    await use(tools, "navigate", url=site.url("/dl"))
    clicked = await use(tools, "click", target="Get the report")
    assert "The page tried to download 'report.bin'; downloads are off" in clicked


async def test_refs_inside_an_iframe_work_and_a_detached_frame_is_refused(
    tools: dict[str, BaseTool], sb: SessionBrowser, site: LocalSite
) -> None:
    site.route("/inner", "<button onclick=\"document.title='inner clicked'\">Inside</button>")
    site.route("/framed", f"<h1>Outer</h1><iframe id='f' src='{site.url('/inner')}'></iframe>")
    await use(tools, "navigate", url=site.url("/framed"))
    snap = await use(tools, "snapshot")
    inner = ref(snap, 'button "Inside"')
    assert inner.startswith("f")
    await use(tools, "click", ref=inner)
    assert await sb.page.frames[1].title() == "inner clicked"
    await sb.page.evaluate("document.getElementById('f').remove()")
    with pytest.raises(ToolError, match="no longer on the page"):
        await use(tools, "click", ref=inner)


async def test_a_page_that_navigates_mid_action_is_followed(tools: dict[str, BaseTool], site: LocalSite) -> None:
    site.route("/jump", "<button onclick=\"setTimeout(() => location.href='/about', 50)\">Go soon</button>")
    await use(tools, "navigate", url=site.url("/jump"))
    clicked = await use(tools, "click", target="Go soon")
    # Either the click already saw it leave, or the next call sees the new page; never a wrong element.
    if "Now on: About" not in clicked:
        assert "4217" in await use(tools, "wait_for", text="The secret number")
    stale = ref(await use(tools, "navigate", url=site.url("/jump")), 'button "Go soon"')
    await use(tools, "click", ref=stale)
    await use(tools, "wait_for", text="The secret number")
    with pytest.raises(ToolError, match=r"earlier page|not in the latest snapshot"):
        await use(tools, "click", ref=stale)
