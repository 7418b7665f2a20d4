"""Browser tools: the model drives the session's Chromium page through these.

``navigate``, ``back``, ``click``, ``type_text``, ``press_key``, ``scroll``, ``read_page``,
``list_links`` and ``screenshot`` all act on the session's *current* page (a page the site opens, a
popup or a ``target=_blank`` link, becomes current by itself; see :class:`~sidekick.browser.SessionBrowser`).

The session's browser may be replaced under the tools (after a crash, an idle close or a reset), so
they never hold one: every call asks an async getter for it. A call's action is bounded by
``tool_timeout_seconds`` (getting the browser is not: the pool bounds a launch itself), and afterwards,
on success and on failure alike while the page is usable, a :class:`~sidekick.events.Screenshot` is
emitted through ``ctx.emit``, bounded by at most :data:`SHOT_SECONDS` more. Every failure reaches the
model as a plain :class:`~sidekick.errors.ToolError`. Page text, link text and titles come from the
site, so text goes out wrapped by :func:`~sidekick.tools.base.untrusted` and titles shown outside that
block are flattened to one line with the block's markers defused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Locator, Page, Request

from sidekick.browser.context import SessionBrowser
from sidekick.config import Settings
from sidekick.errors import BrowserError, BrowserTimeoutError, NavigationError, SessionClosedError, ToolError
from sidekick.events import Screenshot
from sidekick.tools.base import Availability, BrowserGetter, ToolContext, untrusted
from sidekick.web.urls import normalize_url

log = logging.getLogger(__name__)

PAGE_CHARS = 8000  # read_page
SUMMARY_CHARS = 1500  # navigate
GLIMPSE_CHARS = 600  # after a click, a submit, a key or back lands on another page
MAX_LINKS = 50
MAX_SCROLL_PAGES = 20
SHOT_SECONDS = 3.0
STOP_SECONDS = 2.0
# How long a click (or key) may take to start a navigation or open a page before we call it done.
NOTICE_SECONDS = 0.5
# How long we then wait for that page to finish loading; it is reported as still loading after.
LOAD_SECONDS = 5.0

# A selector rather than words: it has CSS punctuation, or is one lowercase tag name such as "button".
_CSS_HINT = re.compile(r"[#.\[\]>=:*~]|^[a-z][a-z0-9-]*$")

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
    # Playwright's own timeouts sit past ours, so the one message about time is ours.
    inner = budget + 1
    inner_ms = inner * 1000

    async def run(what: str, action: Callable[[SessionBrowser], Awaitable[ActionOutcome]]) -> str:
        sb = await _browser(getter)
        try:
            async with asyncio.timeout(budget):
                text, shot = await action(sb)
        except TimeoutError:
            await sb.stop_loading(STOP_SECONDS)
            await _emit_screenshot(ctx, sb)
            raise ToolError(f"{what} did not finish within the {budget:g} s time limit.") from None
        except (BrowserError, SessionClosedError) as exc:
            await _emit_screenshot(ctx, sb)
            raise ToolError(str(exc)) from None
        except ToolError:
            await _emit_screenshot(ctx, sb)
            raise
        if shot is not None:
            ctx.emit(shot)
        else:
            await _emit_screenshot(ctx, sb)
        return text

    async def call(sb: SessionBrowser, fn: Callable[[Page], Awaitable[Any]], what: str) -> Any:
        return await sb.call(fn, timeout=inner, what=what)

    async def after(sb: SessionBrowser, before: Page, watch: _Watch, done: str) -> str:
        """``done`` plus where the action led: the same page, another page, or a new tab."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NOTICE_SECONDS):
                await watch.started.wait()
        page = sb.page
        if not watch.started.is_set():
            return f"{done} The page stayed at {await _where(page)}."
        if page is before and not watch.committed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LOAD_SECONDS):
                    await watch.committed.wait()
            if not watch.committed.is_set():
                return f"{done} It is opening {_line(watch.requested)}, which has not answered yet."
        loading = ""
        try:
            await call(sb, lambda p: p.wait_for_load_state("load", timeout=LOAD_SECONDS * 1000), "Loading")
        except BrowserTimeoutError:
            loading = " (still loading)"
        opened = "It opened a new tab" if page is not before else "Now on"
        return f"{done} {opened}: {await _where(page)}{loading}.\n{await glimpse(sb, page)}"

    async def glimpse(sb: SessionBrowser, page: Page) -> str:
        text = await call(sb, _page_text, "Reading the page")
        return untrusted(text, source=_line(page.url), limit=GLIMPSE_CHARS)

    async def navigate(url: str) -> str:
        try:
            target = normalize_url(url)
        except NavigationError as exc:
            raise ToolError(str(exc)) from None

        async def act(sb: SessionBrowser) -> ActionOutcome:
            shot = await sb.goto(target, timeout=inner)
            page = sb.page
            text = await call(sb, _page_text, "Reading the page")
            summary = untrusted(text, source=_line(page.url), limit=SUMMARY_CHARS)
            return f"Opened {await _where(page)}.\n{summary}", shot

        return await run(f"Opening {_line(target)}", act)

    async def back() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            before = page.url
            response = await call(
                sb, lambda p: p.go_back(wait_until="domcontentloaded", timeout=inner_ms), "Going back"
            )
            if response is None and page.url == before:
                raise ToolError("There is no earlier page in this tab to go back to.")
            return f"Went back to {await _where(page)}.\n{await glimpse(sb, page)}", None

        return await run("Going back", act)

    async def click(target: str) -> str:
        target = target.strip()
        if not target:
            raise ToolError("click needs the visible text of a link or button, or a CSS selector.")
        label = _quote(target)

        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            candidates = [
                page.get_by_role("link", name=target),
                page.get_by_role("button", name=target),
                page.get_by_text(target, exact=False),
            ]
            if _CSS_HINT.search(target):
                candidates.append(page.locator(f"css={target}"))
            found = await call(sb, lambda p: _first_visible(p, candidates), f"Looking for {label}")
            if found is None:
                raise ToolError(
                    f"Nothing on this page ({_line(page.url)}) matches {label}: no link, button or text "
                    "with those words, and no element for it as a CSS selector. "
                    "read_page or list_links show what is there."
                )
            with _Watch(sb, page) as watch:
                await call(sb, lambda p: found.click(timeout=inner_ms), f"Clicking {label}")
                return await after(sb, page, watch, f"Clicked {label}."), None

        return await run(f"Clicking {label}", act)

    async def type_text(target: str, text: str, submit: bool = False) -> str:
        target = target.strip()
        if not target:
            raise ToolError("type_text needs the field's label, placeholder, name or a CSS selector.")
        label = _quote(target)

        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            candidates = [
                page.get_by_label(target, exact=False),
                page.get_by_placeholder(target, exact=False),
                page.get_by_role("textbox", name=target),
                page.locator(f"css=[name={_css_string(target)}]"),
            ]
            if _CSS_HINT.search(target):
                candidates.append(page.locator(f"css={target}"))
            field = await call(sb, lambda p: _first_visible(p, candidates), f"Looking for the field {label}")
            if field is None:
                raise ToolError(
                    f"No field on this page ({_line(page.url)}) matches {label} by label, placeholder, "
                    "name or CSS selector. read_page shows what is there."
                )
            await call(sb, lambda p: field.fill(text, timeout=inner_ms), f"Typing into {label}")
            typed = f"Typed {len(text)} characters into {label}"
            if not submit:
                return f"{typed}.", None
            with _Watch(sb, page) as watch:
                await call(sb, lambda p: field.press("Enter", timeout=inner_ms), f"Submitting {label}")
                return await after(sb, page, watch, f"{typed} and pressed Enter."), None

        return await run(f"Typing into {label}", act)

    async def press_key(key: str) -> str:
        key = key.strip()
        if not key:
            raise ToolError("press_key needs a key name such as 'Enter', 'Escape', 'Tab' or 'Control+A'.")
        label = _quote(key)

        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            with _Watch(sb, page) as watch:
                await call(sb, lambda p: p.keyboard.press(key), f"Pressing {label}")
                return await after(sb, page, watch, f"Pressed {label}."), None

        return await run(f"Pressing {label}", act)

    async def scroll(direction: str = "down", amount: int = 1) -> str:
        direction = direction.strip().lower()
        if direction not in ("up", "down", "top", "bottom"):
            raise ToolError("direction must be 'down', 'up', 'top' or 'bottom'.")
        if not 1 <= amount <= MAX_SCROLL_PAGES:
            raise ToolError(f"amount is a number of screens, from 1 to {MAX_SCROLL_PAGES}.")

        async def act(sb: SessionBrowser) -> ActionOutcome:
            y, height, view = await call(sb, lambda p: p.evaluate(_SCROLL_JS, [direction, amount]), "Scrolling")
            if direction in ("top", "bottom"):
                return f"Scrolled to the {direction}.", None
            end = max(height - view, 0)
            if end == 0:
                where = "the whole page fits on one screen"
            elif y <= 0:
                where = "now at the top"
            elif y >= end - 1:
                where = "now at the bottom"
            else:
                where = f"now {round(100 * y / end)}% of the way down"
            moved = f"{direction} {amount} screen" + ("s" if amount > 1 else "")
            return f"Scrolled {moved}; {where}.", None

        return await run("Scrolling", act)

    async def read_page() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            page = sb.page
            text = await call(sb, _page_text, "Reading the page")
            title = await _title(page)
            return untrusted(f"{title}\n\n{text}" if title else text, source=_line(page.url), limit=PAGE_CHARS), None

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
                return f"There are no links on {_line(page.url)}.", None
            more = len(lines) - MAX_LINKS
            shown = lines[:MAX_LINKS] + ([f"[… {more} more links]"] if more > 0 else [])
            return untrusted("\n".join(shown), source=_line(page.url)), None

        return await run("Listing the links", act)

    async def screenshot() -> str:
        async def act(sb: SessionBrowser) -> ActionOutcome:
            shot = await sb.screenshot()
            return f"Screenshot taken of {_line(shot.title) or '(untitled)'} — {_line(shot.url)}.", shot

        return await run("Taking a screenshot", act)

    return [
        StructuredTool.from_function(
            coroutine=navigate,
            name="navigate",
            description=(
                "Open a web page (http or https; 'example.com' means https://example.com) in your browser. "
                "Returns its title, final URL and the start of its text."
            ),
        ),
        StructuredTool.from_function(
            coroutine=back,
            name="back",
            description="Go back to the previous page in the current browser tab, like the Back button.",
        ),
        StructuredTool.from_function(
            coroutine=click,
            name="click",
            description=(
                "Click a link, button or other element on the current page. `target` is its visible text "
                "(e.g. 'Sign in') or a CSS selector (e.g. '#submit', 'a[href=\"/about\"]'). Returns where "
                "that led: the same page, another page, or a new tab (which becomes the current page)."
            ),
        ),
        StructuredTool.from_function(
            coroutine=type_text,
            name="type_text",
            description=(
                "Type `text` into a field of the current page, replacing what it held. `target` is the "
                "field's label, placeholder, name attribute or a CSS selector. With submit=true, press "
                "Enter afterwards (submits most forms) and report where that led."
            ),
        ),
        StructuredTool.from_function(
            coroutine=press_key,
            name="press_key",
            description=(
                "Press a key on the current page, e.g. 'Enter', 'Escape', 'Tab', 'ArrowDown', 'PageDown' "
                "or a combination such as 'Control+A'."
            ),
        ),
        StructuredTool.from_function(
            coroutine=scroll,
            name="scroll",
            description=(
                "Scroll the current page. `direction` is 'down', 'up', 'top' or 'bottom'; `amount` is a "
                f"number of screens (1 to {MAX_SCROLL_PAGES}). Returns how far down the page you are."
            ),
        ),
        StructuredTool.from_function(
            coroutine=read_page,
            name="read_page",
            description=(
                f"Read the current page: its title and visible text (up to {PAGE_CHARS} characters, the "
                "whole page, not only what is on screen)."
            ),
        ),
        StructuredTool.from_function(
            coroutine=list_links,
            name="list_links",
            description=f"List the links of the current page (up to {MAX_LINKS}), as 'text — full URL'.",
        ),
        StructuredTool.from_function(
            coroutine=screenshot,
            name="screenshot",
            description=(
                "Take a screenshot of the current page; the user sees it in the dashboard. Returns the "
                "page's title and URL."
            ),
        ),
    ]


async def _browser(get_browser: BrowserGetter) -> SessionBrowser:
    try:
        return await get_browser()
    except (BrowserError, SessionClosedError) as exc:
        raise ToolError(str(exc)) from None


async def _emit_screenshot(ctx: ToolContext, sb: SessionBrowser) -> None:
    """Show the user the page as the action left it; a failure here never hides the result."""
    if not sb.alive:
        return
    try:
        async with asyncio.timeout(min(SHOT_SECONDS, ctx.settings.tool_timeout_seconds)):
            shot = await sb.screenshot()
    except (TimeoutError, BrowserError, SessionClosedError) as exc:
        log.info("No screenshot after the browser action: %s", str(exc) or "timed out")
        return
    ctx.emit(shot)


class _Watch:
    """What an action set off, seen from the page it acted on: a navigation of that page (started,
    then committed; a reload or a POST to the same URL counts, which comparing URLs would miss), or
    a new page opened by the site. Listens only inside its ``with`` block."""

    def __init__(self, sb: SessionBrowser, page: Page) -> None:
        self._page = page
        self._context = sb.context
        self.started = asyncio.Event()
        self.committed = asyncio.Event()
        self.requested = ""

    def __enter__(self) -> _Watch:
        self._page.on("request", self._on_request)
        self._page.on("framenavigated", self._on_navigated)
        self._context.on("page", self._on_page)
        return self

    def __exit__(self, *exc: object) -> None:
        self._page.remove_listener("request", self._on_request)
        self._page.remove_listener("framenavigated", self._on_navigated)
        self._context.remove_listener("page", self._on_page)

    def _on_request(self, request: Request) -> None:
        if request.is_navigation_request() and request.frame == self._page.main_frame:
            self.requested = request.url
            self.started.set()

    def _on_navigated(self, frame: Frame) -> None:
        if frame.parent_frame is None:
            self.started.set()
            self.committed.set()

    def _on_page(self, _page: Page) -> None:
        self.started.set()


async def _first_visible(page: Page, candidates: list[Locator]) -> Locator | None:
    """The first visible element of the first locator that has one."""
    for locator in candidates:
        visible = locator.filter(visible=True)
        try:
            if await visible.count():
                return visible.first
        except PlaywrightError:
            if page.is_closed():
                raise
            # Words that only looked like a CSS selector: no match.
    return None


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
    return _line(title)


async def _where(page: Page) -> str:
    return f"{await _title(page) or '(untitled)'} — {_line(page.url)}"


def _line(text: str, limit: int = 200) -> str:
    """Site-chosen text (a title, a URL) made safe to show outside an untrusted block."""
    flat = " ".join(text.split()).replace("<<<", "‹‹‹").replace(">>>", "›››")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _quote(target: str) -> str:
    return repr(_line(target, 80))


def _css_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\a ")
    return f'"{escaped}"'
