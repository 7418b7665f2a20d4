"""The browser tools over the session's current page (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.config import get_config
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from sidekick.browser.context import DialogOpenError, SessionBrowser
from sidekick.browser.snapshot import STATES_JS, Snapshot, with_states
from sidekick.config import Settings
from sidekick.errors import (
    BrowserCrashedError,
    BrowserError,
    BrowserTimeoutError,
    NavigationError,
    SessionClosedError,
    ToolError,
)
from sidekick.events import Screenshot
from sidekick.tools.base import Availability, BrowserGetter, ToolContext, untrusted
from sidekick.tools.browser import targets
from sidekick.tools.browser.targets import Found, Kind, line, quote
from sidekick.tools.browser.watch import LOAD_SECONDS, Watch, wait_landed, wait_quiet
from sidekick.web.urls import normalize_url

log = logging.getLogger(__name__)

PAGE_CHARS = 8000  # read_page
SNAPSHOT_CHARS = 12_000  # the snapshot tool
ACTION_SNAPSHOT_CHARS = 4000  # the snapshot that comes with an action's result
MAX_LINKS = 50
MAX_SCROLL_PAGES = 20
STOP_SECONDS = 2.0
# How long Playwright may wait for an element to become visible, enabled, stable and unobscured
# before we say which of those it is not: fail fast rather than wait out the tool budget.
ACT_SECONDS = 2.0
ACT_MS = ACT_SECONDS * 1000

# Cut in the page: a 10 MB page would otherwise cross the driver whole before we cap it.
_PAGE_TEXT_JS = "(n) => ((document.body || document.documentElement)?.innerText ?? '').slice(0, n)"
RAW_TEXT_CHARS = 100_000
_LINKS_JS = """() => Array.from(document.querySelectorAll('a[href]'), a => [
  a.innerText || a.getAttribute('aria-label') || a.title || a.querySelector('img[alt]')?.alt || '',
  a.href,
])"""
_SCROLL_JS = """([direction, pages]) => {
  const view = window.innerHeight;
  const root = document.scrollingElement || document.documentElement;
  if (direction === 'top') window.scrollTo({top: 0, behavior: 'instant'});
  else if (direction === 'bottom') window.scrollTo({top: root.scrollHeight, behavior: 'instant'});
  else window.scrollBy({top: (direction === 'down' ? 1 : -1) * pages * view, behavior: 'instant'});
  return [window.scrollY, root.scrollHeight, view];
}"""
_SCROLL_ELEMENT_JS = """(el, [direction, pages]) => {
  if (el.scrollHeight <= el.clientHeight + 1) {
    el.scrollIntoView({block: 'center', behavior: 'instant'});
    return null;
  }
  const view = el.clientHeight;
  if (direction === 'top') el.scrollTop = 0;
  else if (direction === 'bottom') el.scrollTop = el.scrollHeight;
  else el.scrollBy({top: (direction === 'down' ? 1 : -1) * pages * view, behavior: 'instant'});
  return [el.scrollTop, el.scrollHeight, view];
}"""
_OPTIONS_JS = "el => el.tagName === 'SELECT' ? Array.from(el.options, o => [o.value, o.label || o.text]) : null"
# force=true: the event goes to the element itself, whatever covers it (a mouse click would land on
# the cover). Playwright's dispatch_event did not finish on an aria-ref locator in our runs.
_DISPATCH_JS = """(el, type) => {
  if (type === 'click') el.click();
  else el.dispatchEvent(new MouseEvent(type, {
    bubbles: true, cancelable: true, view: window, button: type === 'contextmenu' ? 2 : 0,
  }));
}"""
# A point of the element, relative to its box, where a click would reach it (or null).
_VISIBLE_POINT_JS = """el => {
  const r = el.getBoundingClientRect();
  for (const fy of [0.5, 0.25, 0.75, 0.1, 0.9]) for (const fx of [0.5, 0.25, 0.75, 0.1, 0.9]) {
    const hit = document.elementFromPoint(r.left + r.width * fx, r.top + r.height * fy);
    if (hit && (hit === el || el.contains(hit))) return [r.width * fx, r.height * fy];
  }
  return null;
}"""
_COVER_JS = """el => {
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (!hit || hit === el || el.contains(hit)) return null;
  const html = hit.outerHTML;
  return html.length > 120 ? html.slice(0, 119) + '…' : html;
}"""
_INTERCEPT = re.compile(r"- (<.+?>.*?) (?:from .+? subtree )?intercepts pointer events")

ActionOutcome = tuple[str, Screenshot | None]
"""A tool's text for the model, and the screenshot it already took (``None``: take one after)."""


def available(settings: Settings) -> list[Availability]:
    return [("browser", True, "")]


def build(ctx: ToolContext) -> list[BaseTool]:
    """The browser tools over the session's browser (``ctx.get_browser``); none without one."""
    if ctx.get_browser is None:
        return []
    getter: BrowserGetter = ctx.get_browser
    budget = ctx.settings.tool_timeout_seconds
    allow_downloads = ctx.settings.allow_downloads
    # Playwright's own timeouts sit past ours, so the one message about time is ours.
    inner = budget + 1
    inner_ms = inner * 1000

    async def run(
        what: str, action: Callable[[SessionBrowser], Awaitable[ActionOutcome]], *, answers_dialog: bool = False
    ) -> str:
        sb = await _browser(getter)
        note = ""
        if not answers_dialog and sb.dialog is not None:
            # The model moved on without answering: the dialog must not keep the page frozen.
            dismissed = await sb.dismiss_dialog()
            note = f"(First dismissed {dismissed}, which was still open.)\n" if dismissed else ""
        try:
            async with asyncio.timeout(budget):
                text, shot = await action(sb)
        except TimeoutError:
            await sb.stop_loading(STOP_SECONDS)
            raise ToolError(f"{note}{what} did not finish within the {budget:g} s time limit.") from None
        except (BrowserError, SessionClosedError) as exc:
            raise ToolError(f"{note}{exc}") from None
        except ToolError as exc:
            raise ToolError(f"{note}{exc}") from None
        # The live view shows each action as it happens; the record gets one screenshot at the end
        # of the step (``RunContext.step_screenshot``), or this one, which the tool already took.
        if shot is not None:
            ctx.emit(shot)
        return note + text

    async def call(sb: SessionBrowser, fn: Callable[[Page], Awaitable[Any]], what: str) -> Any:
        return await sb.call(fn, timeout=inner, what=what)

    def caller(sb: SessionBrowser) -> targets.Call:
        return lambda fn, what: call(sb, fn, what)

    async def take(sb: SessionBrowser) -> Snapshot:
        page = sb.page
        document = sb.document(page)
        # The states the page shows only in its DOM (a closed folder of a tree) first: with none,
        # the snapshot needs no boxes to put them on.
        try:
            states = await call(sb, lambda p: p.evaluate(STATES_JS), "Reading the page's elements")
        except BrowserError as exc:
            if isinstance(exc, BrowserCrashedError | BrowserTimeoutError | DialogOpenError):
                raise
            states = []  # the page navigated meanwhile: the snapshot (which waits for it) goes without
        text = await call(
            sb,
            lambda p: p.aria_snapshot(mode="ai", boxes=bool(states) or None, timeout=inner_ms),
            "Reading the page's elements",
        )
        text = with_states(str(text), states) if states else str(text)
        snap = Snapshot.parse(text, id(page), document, current_reply()).follow(sb.snapshot)
        sb.snapshot = snap
        return snap

    async def shown(sb: SessionBrowser, limit: int, from_line: int = 0) -> str:
        """A fresh snapshot of the current page, cut to ``limit``, as an untrusted block."""
        page = sb.page
        snap = await take(sb)
        body, cut = snap.render(limit, from_line)
        block = untrusted(body or "(the page shows no elements)", source=line(page.url), limit=limit + 200)
        return f"{block}\n{cut}" if cut else block

    async def find(sb: SessionBrowser, ref: str, target: str, kind: Kind = "any") -> Found:
        return await targets.find(sb, ref, target, kind, caller(sb), lambda: take(sb), current_reply())

    async def where_it_led(sb: SessionBrowser, before: Page, watch: Watch) -> str:
        page = sb.page
        downloads = _downloads(watch, allow_downloads)
        if not watch.navigated:
            return f"The page stayed at {await _where(page)}.{downloads}"
        if page is before and not await wait_landed(watch):
            return f"It is opening {line(watch.requested)}, which has not answered yet."
        if page is before and not watch.committed.is_set() and watch.downloads:
            return f"The page stayed at {await _where(page)}.{downloads}"
        loading = ""
        try:
            await call(sb, lambda p: p.wait_for_load_state("load", timeout=LOAD_SECONDS * 1000), "Loading")
        except BrowserTimeoutError:
            loading = " (still loading)"
        opened = "It opened a new tab" if page is not before else "Now on"
        return f"{opened}: {await _where(page)}{loading}.{downloads}"

    async def after(sb: SessionBrowser, before: Page, watch: Watch, done: str) -> str:
        """``done``, where the action led, and a fresh snapshot of the page it left current."""
        await wait_quiet(watch)
        navigated = watch.navigated
        outcome = await where_it_led(sb, before, watch)
        if outcome.startswith("It is opening"):
            return f"{done} {outcome}"
        try:
            block = await shown(sb, ACTION_SNAPSHOT_CHARS)
            if watch.navigated and not navigated:
                # It started navigating only while we read the page: read the page it went to.
                outcome = await where_it_led(sb, before, watch)
                block = await shown(sb, ACTION_SNAPSHOT_CHARS)
        except DialogOpenError:
            return f"{done} {outcome} Then the page opened {sb.describe_dialog()}. {_ANSWER}"
        return f"{done} {outcome}\n{block}"

    async def perform(
        sb: SessionBrowser, found: Found, done: str | Callable[[], str], what: str, fn: Callable[[], Awaitable[Any]]
    ) -> str:
        """Run ``fn`` (the action on ``found``) watching what it sets off, and report ``done``
        (text, or a function read once the action is over)."""
        page = sb.page
        with Watch(sb, page) as watch:
            try:
                await call(sb, lambda p: _explained(fn, found), what)
            except DialogOpenError:
                return f"{done if isinstance(done, str) else done()} It opened {sb.describe_dialog()}. {_ANSWER}"
            return await after(sb, page, watch, done if isinstance(done, str) else done())

    # -- the tools -----------------------------------------------------------------------------
    async def navigate(url: str) -> str:
        try:
            target = normalize_url(url)
        except NavigationError as exc:
            raise ToolError(str(exc)) from None

        async def act(sb: SessionBrowser) -> ActionOutcome:
            try:
                shot = await sb.goto(target, timeout=inner)
                block = await shown(sb, ACTION_SNAPSHOT_CHARS)
            except DialogOpenError:
                return f"Opening {line(target)}: the page opened {sb.describe_dialog()}. {_ANSWER}", None
            return f"Opened {await _where(sb.page)}.\n{block}", shot

        return await run(f"Opening {line(target)}", act)

    async def back() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            before = page.url
            response = await call(
                sb, lambda p: p.go_back(wait_until="domcontentloaded", timeout=inner_ms), "Going back"
            )
            if response is None and page.url == before:
                raise ToolError("There is no earlier page in this tab to go back to.")
            return f"Went back to {await _where(page)}.\n{await shown(sb, ACTION_SNAPSHOT_CHARS)}", None

        return await run("Going back", act)

    async def snapshot(from_line: int = 0) -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            block = await shown(sb, SNAPSHOT_CHARS, from_line)
            return f"Snapshot of {await _where(sb.page)}:\n{block}", None

        return await run("Taking a snapshot", act)

    async def click(
        ref: str = "", target: str = "", double: bool = False, right: bool = False, force: bool = False
    ) -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            found = await find(sb, ref, target)
            loc = found.locator
            verb = "Double-clicked" if double else "Right-clicked" if right else "Clicked"
            if force:
                event = "dblclick" if double else "contextmenu" if right else "click"
                return await perform(
                    sb,
                    found,
                    f"{verb} {found.label} (sent the {event} event to it directly).",
                    f"Clicking {found.label}",
                    lambda: loc.evaluate(_DISPATCH_JS, event, timeout=ACT_MS),
                ), None
            how: dict[str, Any] = {"button": "right" if right else "left", "click_count": 2 if double else 1}
            where: list[str] = []

            async def press() -> None:
                try:
                    await loc.click(**how, timeout=ACT_MS)
                except PlaywrightTimeoutError:
                    # Where its centre is covered, a person clicks the part that shows; so do we
                    # (Playwright checks again that the click lands on this element there).
                    point = None
                    with contextlib.suppress(PlaywrightError):
                        point = await loc.evaluate(_VISIBLE_POINT_JS, timeout=500)
                    if not point:
                        raise
                    await loc.click(**how, position={"x": point[0], "y": point[1]}, timeout=ACT_MS)
                    where.append(" at a part that shows (something covers its centre)")

            return await perform(
                sb, found, lambda: f"{verb} {found.label}{''.join(where)}.", f"Clicking {found.label}", press
            ), None

        return await run(f"Clicking {_named(ref, target)}", act)

    async def type_text(text: str, ref: str = "", target: str = "", submit: bool = False, clear: bool = True) -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            if ref.strip() or target.strip():
                found = await find(sb, ref, target, "field")
            else:
                focused = sb.page.locator("*:focus")
                if not await call(sb, lambda p: focused.count(), "Finding the focused element"):
                    raise ToolError("Nothing has focus: name the field by ref (from the snapshot), label or CSS.")
                found = Found(focused.first, "the focused element")
            loc = found.locator

            async def fill() -> None:
                if clear:
                    await loc.fill(text, timeout=ACT_MS)
                else:
                    await loc.press("End", timeout=ACT_MS)
                    await loc.page.keyboard.insert_text(text)
                if submit:
                    await loc.press("Enter", timeout=ACT_MS)

            typed = f"Typed {len(text)} characters into {found.label}" + ("" if clear else " (after what was there)")
            done = f"{typed} and pressed Enter." if submit else f"{typed}."
            return await perform(sb, found, done, f"Typing into {found.label}", fill), None

        return await run(f"Typing into {_named(ref, target) or 'the focused element'}", act)

    async def select_option(values: list[str] | str, ref: str = "", target: str = "") -> str:
        wanted = [values] if isinstance(values, str) else list(values)
        if not wanted:
            raise ToolError("select_option needs the option (its visible label or its value) to choose.")

        async def act(sb: SessionBrowser) -> ActionOutcome:
            found = await find(sb, ref, target, "select")
            loc = found.locator
            # The snapshot lists a <select>'s option labels: choosing by those needs no round trip
            # (reading the options in the page costs about 20 ms); values need the page.
            labels = found.node.options if found.node is not None else []
            picked = [_match(labels, want) for want in wanted] if labels else []
            if labels and all(picked):
                by_label = [p for p in picked if p is not None]
                selection: dict[str, Any] = {"label": by_label}
                chosen = ", ".join(quote(label) for label in by_label)
            else:
                options = await call(sb, lambda p: loc.evaluate(_OPTIONS_JS), f"Reading the options of {found.label}")
                if options is None:
                    raise ToolError(
                        f"{found.label} is not a <select>: click the option you want instead (the snapshot lists "
                        "the options with refs; open the list first if they are not shown)."
                    )
                pairs = [_pick(options, want, found.label) for want in wanted]
                selection = {"value": [value for value, _ in pairs]}
                chosen = ", ".join(quote(label) for _, label in pairs)
            return await perform(
                sb, found, f"Selected {chosen} in {found.label}.", f"Selecting in {found.label}",
                lambda: loc.select_option(**selection, timeout=ACT_MS),
            ), None

        return await run(f"Selecting in {_named(ref, target)}", act)

    async def on_element(
        sb: SessionBrowser,
        ref: str,
        target: str,
        kind: Kind,
        phrase: Callable[[str], tuple[str, str]],
        fn: Callable[[Locator], Awaitable[Any]],
    ) -> ActionOutcome:
        """Act with ``fn`` on the element ``ref`` or ``target`` names; ``phrase(its label)`` is
        (what the result says was done, what a failure says was being done)."""
        found = await find(sb, ref, target, kind)
        done, what = phrase(found.label)
        return await perform(sb, found, done, what, lambda: fn(found.locator)), None

    async def set_checked(checked: bool = True, ref: str = "", target: str = "") -> str:
        verb = "Checked" if checked else "Unchecked"
        return await run(
            f"Setting {_named(ref, target)}",
            lambda sb: on_element(
                sb, ref, target, "check", lambda el: (f"{verb} {el}.", f"Setting {el}"),
                lambda loc: loc.set_checked(checked, timeout=ACT_MS),
            ),
        )

    async def hover(ref: str = "", target: str = "") -> str:
        return await run(
            f"Hovering over {_named(ref, target)}",
            lambda sb: on_element(
                sb, ref, target, "any", lambda el: (f"Hovered over {el}.", f"Hovering over {el}"),
                lambda loc: loc.hover(timeout=ACT_MS),
            ),
        )

    async def press_key(key: str, ref: str = "", target: str = "") -> str:
        key = key.strip()
        if not key:
            raise ToolError("press_key needs a key name such as 'Enter', 'Escape', 'Tab' or 'Control+A'.")
        label = quote(key)

        async def act(sb: SessionBrowser) -> ActionOutcome:
            if ref.strip() or target.strip():
                return await on_element(
                    sb, ref, target, "any", lambda el: (f"Pressed {label} on {el}.", f"Pressing {label}"),
                    lambda loc: loc.press(key, timeout=ACT_MS),
                )
            page = sb.page
            return await perform(
                sb,
                Found(page.locator(":root"), "the page"),
                f"Pressed {label}.",
                f"Pressing {label}",
                lambda: page.keyboard.press(key),
            ), None

        return await run(f"Pressing {label}", act)

    async def scroll(direction: str = "down", amount: int = 1, ref: str = "", target: str = "") -> str:
        direction = direction.strip().lower()
        if direction not in ("up", "down", "top", "bottom"):
            raise ToolError("direction must be 'down', 'up', 'top' or 'bottom'.")
        if not 1 <= amount <= MAX_SCROLL_PAGES:
            raise ToolError(f"amount is a number of screens, from 1 to {MAX_SCROLL_PAGES}.")

        async def act(sb: SessionBrowser) -> ActionOutcome:
            what = ""
            if ref.strip() or target.strip():
                found = await find(sb, ref, target)
                loc = found.locator
                result = await call(sb, lambda p: loc.evaluate(_SCROLL_ELEMENT_JS, [direction, amount]), "Scrolling")
                if result is None:
                    return f"Scrolled {found.label} into view (it does not scroll by itself).", None
                what = f" {found.label}"
            else:
                result = await call(sb, lambda p: p.evaluate(_SCROLL_JS, [direction, amount]), "Scrolling")
            y, height, view = result
            if direction in ("top", "bottom"):
                return f"Scrolled{what} to the {direction}.", None
            end = max(height - view, 0)
            if end == 0:
                where = "the whole page fits on one screen" if not what else "it has nothing more to show"
            elif y <= 0:
                where = "now at the top"
            elif y >= end - 1:
                where = "now at the bottom"
            else:
                where = f"now {round(100 * y / end)}% of the way down"
            moved = f"{direction} {amount} screen" + ("s" if amount > 1 else "")
            return f"Scrolled{what} {moved}; {where}.", None

        return await run("Scrolling", act)

    async def drag(from_ref: str, to_ref: str) -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            source = await find(sb, from_ref, "")
            dest = await find(sb, to_ref, "")
            return await perform(
                sb,
                source,
                f"Dragged {source.label} onto {dest.label}.",
                f"Dragging {source.label}",
                lambda: source.locator.drag_to(dest.locator, timeout=ACT_MS),
            ), None

        return await run("Dragging", act)

    async def wait_for(text: str, gone: bool = False, seconds: float | None = None) -> str:
        if not text.strip():
            raise ToolError("wait_for needs the text to wait for.")
        # The wait leaves time within the budget to read the page after it.
        limit = min(seconds if seconds and seconds > 0 else budget, budget * 0.8)
        verb = "disappear" if gone else "appear"

        async def act(sb: SessionBrowser) -> ActionOutcome:
            loc = sb.page.get_by_text(text).first
            try:
                await call(
                    sb,
                    lambda p: loc.wait_for(state="hidden" if gone else "visible", timeout=limit * 1000),
                    f"Waiting for {quote(text)}",
                )
            except BrowserTimeoutError:
                raise ToolError(f"{quote(text)} did not {verb} within {limit:g} s.") from None
            done = f"{quote(text)} is gone" if gone else f"{quote(text)} is on the page"
            return f"{done}: {await _where(sb.page)}.\n{await shown(sb, ACTION_SNAPSHOT_CHARS)}", None

        return await run(f"Waiting for {quote(text)} to {verb}", act)

    async def handle_dialog(accept: bool = True, text: str | None = None) -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            if sb.dialog is None:
                raise ToolError("No dialog is open on the page.")
            page = sb.page
            with Watch(sb, page) as watch:
                what = await sb.answer_dialog(accept, text)
                answer = f" with {quote(text)}" if text is not None and accept else ""
                return await after(sb, page, watch, f"{'Accepted' if accept else 'Dismissed'} {what}{answer}."), None

        return await run("Answering the dialog", act, answers_dialog=True)

    async def read_page() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            text = await call(sb, _page_text, "Reading the page")
            title = await _title(page)
            return untrusted(f"{title}\n\n{text}" if title else text, source=line(page.url), limit=PAGE_CHARS), None

        return await run("Reading the page", act)

    async def list_links() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            pairs = await call(sb, lambda p: p.evaluate(_LINKS_JS), "Listing the links")
            lines: list[str] = []
            seen: set[tuple[str, str]] = set()
            for raw_text, href in pairs:
                text = " ".join(str(raw_text).split())[:100]
                if not href or str(href).lower().startswith("javascript:") or (text, href) in seen:
                    continue
                seen.add((text, href))
                lines.append(f"{text or '(no text)'} — {href}")
            if not lines:
                return f"There are no links on {line(page.url)}.", None
            more = len(lines) - MAX_LINKS
            listed = lines[:MAX_LINKS] + ([f"[… {more} more links]"] if more > 0 else [])
            return untrusted("\n".join(listed), source=line(page.url)), None

        return await run("Listing the links", act)

    async def screenshot() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            shot = await sb.screenshot()
            return f"Screenshot taken of {line(shot.title) or '(untitled)'} — {line(shot.url)}.", shot

        return await run("Taking a screenshot", act)

    element = (
        "ref: the element's ref from the latest snapshot (e.g. 'e15'); or target: its visible text or a CSS selector."
    )
    return [
        _tool(
            navigate,
            (
                "Open a web page (http or https; 'example.com' means https://example.com) in your browser. "
                "Returns its title, final URL and a snapshot of its elements with refs."
            ),
        ),
        _tool(back, "Go back to the previous page in the current browser tab, like the Back button."),
        _tool(
            snapshot,
            (
                "The current page as an accessibility snapshot: one line per element, such as "
                "'- button \"Next\" [ref=e15]' or '- checkbox \"Remember me\" [checked] [ref=e7]', with state "
                "(checked, selected, disabled, expanded; expanded=false for a closed folder, menu or section) and "
                "the refs the other tools act on (a ref holds only on the page it was read from). Actions already "
                f"return a fresh one; call this when a ref is stale or for the rest of a long page (from_line). "
                f"Up to {SNAPSHOT_CHARS} characters."
            ),
        ),
        _tool(
            click,
            (
                f"Click an element. {element} Text prefers links, buttons and controls, and exact matches; "
                "when several match you get their refs. double/right for a double or right click; force=true "
                "sends the click event to the element itself even if something covers it. Returns what changed "
                "(same page, new URL, new tab, a dialog) and a fresh snapshot."
            ),
        ),
        _tool(
            type_text,
            (
                f"Type into a text field, replacing what it holds (clear=false appends). {element} Text also "
                "matches the field's label, placeholder, name or the words beside it; with neither, types into "
                "the focused element. submit=true presses Enter after typing."
            ),
        ),
        _tool(
            select_option,
            (
                f"Choose options of a <select> (a combobox or list box in the snapshot) by their visible label "
                f"or value; several for a multi-select. {element}"
            ),
        ),
        _tool(set_checked, f"Check (checked=true) or uncheck a checkbox, radio button or switch. {element}"),
        _tool(hover, f"Move the mouse over an element (menus and tooltips that open on hover). {element}"),
        _tool(
            press_key,
            (
                "Press a key or a combination ('Enter', 'Escape', 'Tab', 'ArrowDown', 'Control+A'), on the "
                f"element given or else on the focused element. {element}"
            ),
        ),
        _tool(
            scroll,
            (
                f"Scroll the page, or a scrollable element given by ref or target, 'down', 'up' (by `amount` "
                f"screens, 1-{MAX_SCROLL_PAGES}), or to the 'top' or 'bottom'. The snapshot lists elements "
                "off screen too; scroll for pages that load more as you scroll."
            ),
        ),
        _tool(drag, "Drag one element onto another: from_ref and to_ref are refs from the latest snapshot."),
        _tool(
            wait_for,
            (
                "Wait for text to appear on the page (or, gone=true, to disappear), up to `seconds` within the "
                "tool's time limit. Returns a fresh snapshot."
            ),
        ),
        _tool(
            handle_dialog,
            (
                "Answer the JavaScript dialog (alert, confirm, prompt) the page opened: accept=true for OK, false "
                "for Cancel; text is the answer to a prompt. Any other browser tool dismisses an open dialog first."
            ),
        ),
        _tool(
            read_page,
            (
                f"Read the current page: its title and visible text (up to {PAGE_CHARS} characters, the whole "
                "page, not only what is on screen). For long text; the snapshot is for acting."
            ),
        ),
        _tool(list_links, f"List the links of the current page (up to {MAX_LINKS}), as 'text — full URL'."),
        _tool(
            screenshot,
            (
                "Take a screenshot of the current page; the user sees it in the dashboard. Returns the page's "
                "title and URL."
            ),
        ),
    ]


_ANSWER = "The page waits for an answer: call handle_dialog (accept=true or false; text for a prompt)."


def _tool(fn: Callable[..., Awaitable[str]], description: str) -> StructuredTool:
    return StructuredTool.from_function(coroutine=fn, name=fn.__name__, description=description)


def current_reply() -> Hashable:
    """Which model reply the running tool call belongs to: the graph's tools step that runs that
    reply's calls (its thread, task and step), or None outside a graph (every call its own reply)."""
    try:
        config = get_config()
    except RuntimeError:
        return None
    meta = config.get("metadata") or {}
    if meta.get("langgraph_step") is None:
        return None
    thread = (config.get("configurable") or {}).get("thread_id")
    return (str(thread), str(meta.get("langgraph_checkpoint_ns")), int(meta["langgraph_step"]))


def _named(ref: str, target: str) -> str:
    return quote(ref.strip() or target.strip()) if (ref.strip() or target.strip()) else ""


async def _explained(fn: Callable[[], Awaitable[Any]], found: Found) -> Any:
    """``fn()``; if Playwright gave up waiting for the element, say plainly what was in the way."""
    try:
        return await fn()
    except PlaywrightTimeoutError as exc:
        log_text = str(exc)
    cover = ""
    if not _INTERCEPT.search(log_text):
        # Playwright's call log may have elided the line that names the cover: look ourselves.
        with contextlib.suppress(PlaywrightError):
            cover = str(await found.locator.evaluate(_COVER_JS, timeout=500) or "")
    raise ToolError(_stuck(log_text, found.label, cover))


def _stuck(log_text: str, label: str, cover: str = "") -> str:
    covered = _INTERCEPT.findall(log_text) or ([cover] if cover else [])
    if covered:
        return (
            f"{label} is covered by another element, which would get the click instead: {line(covered[-1], 160)}. "
            "Close or move what covers it first (a dialog, a banner, a menu), or repeat with force=true to send "
            "the event to the element itself."
        )
    for needle, why in (
        ("element is not visible", "is hidden (not visible on the page)"),
        ("element is not enabled", "is disabled"),
        ("element is not editable", "is not editable"),
        ("element is not stable", "keeps moving (an animation)"),
        ("not attached", "was removed from the page"),
    ):
        if needle in log_text:
            return f"{label} {why}, so it could not be used within {ACT_SECONDS:g} s. Take a snapshot to see the page."
    return f"{label} could not be used within {ACT_SECONDS:g} s. Take a snapshot to see the page."


def _match(labels: list[str], want: str) -> str | None:
    """The one label ``want`` names: exactly, then ignoring case and spacing."""
    if want in labels:
        return want
    norm = " ".join(want.split()).casefold()
    hits = [label for label in labels if " ".join(label.split()).casefold() == norm]
    return hits[0] if len(hits) == 1 else None


def _pick(options: list[list[str]], want: str, label: str) -> tuple[str, str]:
    """(value, label) of the option ``want`` names: its label or value, exactly, then ignoring case,
    then the one label that contains it."""
    norm = " ".join(want.split()).casefold()
    for test in (
        lambda v, lab: lab == want,
        lambda v, lab: v == want,
        lambda v, lab: " ".join(lab.split()).casefold() == norm,
        lambda v, lab: v.casefold() == norm,
    ):
        hits = [(v, lab) for v, lab in options if test(v, lab)]
        if hits:
            return hits[0][0], hits[0][1]
    partial = [(v, lab) for v, lab in options if norm in lab.casefold()]
    if len(partial) == 1:
        return partial[0][0], partial[0][1]
    listed = ", ".join(quote(lab) for _, lab in options[:30])
    raise ToolError(f"{label} has no option {quote(want)}. Its options: {listed}.")


def _downloads(watch: Watch, allowed: bool) -> str:
    names = ", ".join(quote(d.suggested_filename) for d in watch.downloads)
    if not names:
        return ""
    if allowed:
        return f" A download started: {names}."
    return f" The page tried to download {names}; downloads are off (SIDEKICK_ALLOW_DOWNLOADS=1 allows them)."


async def _browser(get_browser: BrowserGetter) -> SessionBrowser:
    try:
        return await get_browser()
    except (BrowserError, SessionClosedError) as exc:
        raise ToolError(str(exc)) from None


async def _page_text(page: Page) -> str:
    """The page's visible text: one line per line, spaces collapsed, blank lines dropped."""
    raw = await page.evaluate(_PAGE_TEXT_JS, RAW_TEXT_CHARS)
    lines = (" ".join(line.split()) for line in str(raw).splitlines())
    return "\n".join(line for line in lines if line)


async def _title(page: Page) -> str:
    title = ""
    with contextlib.suppress(PlaywrightError, TimeoutError):
        async with asyncio.timeout(2):
            title = await page.title()
    return line(title)


async def _where(page: Page) -> str:
    return f"{await _title(page) or '(untitled)'} — {line(page.url)}"
