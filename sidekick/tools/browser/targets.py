"""Finding the element an action means: a ref from the latest snapshot, or visible text or CSS.

A ref is checked against the snapshot it came from, the latest one the model had read when it wrote
the call (not one its own earlier calls in the same reply took): the same page, the same document,
listed in that snapshot, and still attached; otherwise the model is told to take a new snapshot (a
ref is never guessed into another element, not even after an earlier call of the reply navigated).
Text is ranked on the latest snapshot first, because it knows what is actionable: an exact match
on an actionable element (a link, a button, a form control, anything the page styled with a pointer
cursor), then a CSS selector, then a partial match on an actionable element, then any visible text
in the page (which still reaches a plain ``<span>`` with a click handler that the snapshot leaves
out). Several equally good matches are an error that lists
them with their refs, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from playwright.async_api import Locator, Page

from sidekick.browser.context import DialogOpenError, SessionBrowser, line_of
from sidekick.browser.snapshot import Node, Snapshot, normalize_ref
from sidekick.errors import BrowserCrashedError, BrowserError, BrowserTimeoutError, ToolError

Kind = Literal["any", "field", "check", "select"]
Call = Callable[[Callable[[Page], Awaitable[Any]], str], Awaitable[Any]]
"""Runs ``fn(page)`` on the session's page, bounded, with Playwright errors made Sidekick errors."""
TakeSnapshot = Callable[[], Awaitable[Snapshot]]

ACTIONABLE = frozenset(
    {
        "button",
        "link",
        "textbox",
        "searchbox",
        "checkbox",
        "radio",
        "combobox",
        "listbox",
        "option",
        "menuitem",
        "menuitemcheckbox",
        "menuitemradio",
        "tab",
        "switch",
        "slider",
        "spinbutton",
        "treeitem",
    }
)
ROLES: dict[Kind, frozenset[str]] = {
    "any": ACTIONABLE,
    "field": frozenset({"textbox", "searchbox", "combobox", "spinbutton"}),
    "check": frozenset({"checkbox", "radio", "switch", "menuitemcheckbox", "menuitemradio"}),
    "select": frozenset({"combobox", "listbox"}),
}
MAX_LISTED = 8
# A CSS selector naming only ``el``: from the nearest ancestor with an id (or the body), tag names
# with :nth-of-type where siblings share one. For matches the snapshot has no ref for.
_CSS_PATH_JS = """el => {
  const parts = [];
  for (let e = el; e && e.parentElement; e = e.parentElement) {
    if (e.id && /^[A-Za-z][\\w-]*$/.test(e.id)) { parts.unshift('#' + e.id); break; }
    const same = Array.from(e.parentElement.children).filter(c => c.tagName === e.tagName);
    const tag = e.tagName.toLowerCase();
    parts.unshift(same.length > 1 ? `${tag}:nth-of-type(${same.indexOf(e) + 1})` : tag);
  }
  return parts.join(' > ');
}"""

# A selector rather than words: it has CSS punctuation, or is one lowercase tag name such as "button".
_CSS_HINT = re.compile(r"[#.\[\]>=:*~]|^[a-z][a-z0-9-]*$")
_DESCRIBE_JS = """el => {
  const tag = el.tagName.toLowerCase();
  const type = (el.getAttribute('type') || '').toLowerCase();
  const inputs = {checkbox: 'checkbox', radio: 'radio', button: 'button', submit: 'button', range: 'slider'};
  const implicit = {a: el.hasAttribute('href') ? 'link' : 'generic', button: 'button', select: 'combobox',
    textarea: 'textbox', img: 'img', h1: 'heading', h2: 'heading', h3: 'heading', li: 'listitem', p: 'paragraph',
    input: inputs[type] || 'textbox'};
  const role = el.getAttribute('role') || implicit[tag] || 'generic';
  const label = el.labels && el.labels.length ? el.labels[0].innerText : '';
  const name = el.getAttribute('aria-label') || label || el.innerText || el.value || el.placeholder
    || el.title || el.alt || '';
  return [role, name.replace(/\\s+/g, ' ').trim().slice(0, 80)];
}"""


@dataclass(frozen=True)
class Found:
    locator: Locator
    label: str  # how a result names it: 'button "Next" [ref=e15]'
    node: Node | None = None  # its snapshot line, when it was found in the snapshot


def describe_node(node: Node) -> str:
    return line(node.describe())


async def by_ref(sb: SessionBrowser, raw: str, call: Call, reply: Hashable = None) -> Found:
    """The element ``raw`` names in the snapshot the model read before ``reply`` (its own calls'
    results it has not read yet), if that snapshot is of the current page and document."""
    ref = normalize_ref(raw)
    if ref is None:
        raise ToolError(f"{quote(raw)} is not a ref: refs look like 'e15' or 'f1e3', as in [ref=e15] in a snapshot.")
    page = sb.page
    latest = sb.snapshot
    snap = latest.read_in(reply) if latest is not None else None
    if snap is None:
        raise ToolError(
            f"Ref {ref} is from no snapshot you had read: there was none of this page before this reply. "
            "Read the snapshot the last result returned (or call snapshot), then use its refs in your next reply."
        )
    if snap.page_id != id(page) or snap.document != sb.document(page):
        since = (
            " (an earlier tool call of this same reply did that)"
            if latest is not None and latest is not snap and latest.reply == reply
            else ""
        )
        raise ToolError(
            f"Ref {ref} is from a snapshot of an earlier page: the tab has navigated, or another tab is current, "
            f"since you read it{since}. Refs hold only on the page they were read from, so nothing was done: "
            "take a new snapshot (or read the one the last action returned) and use its refs."
        )
    node = snap.nodes.get(ref)
    if node is None:
        raise ToolError(f"Ref {ref} is not in the latest snapshot: call snapshot for current refs.")
    locator = page.locator(f"aria-ref={ref}")
    try:
        count = await call(lambda p: locator.count(), f"Finding {ref}")
    except BrowserError as exc:
        if "aria-ref" not in str(exc):
            raise
        count = 0  # its frame is gone ("Invalid frame in aria-ref selector")
    if not count:
        raise ToolError(
            f"Ref {ref} ({describe_node(node)}) is no longer on the page: it changed since the snapshot. "
            "Call snapshot for current refs."
        )
    return Found(locator, describe_node(node), node)


async def find(
    sb: SessionBrowser, ref: str, target: str, kind: Kind, call: Call, snapshot: TakeSnapshot, reply: Hashable = None
) -> Found:
    """The one element ``ref`` or ``target`` names, or a ToolError saying why there is none
    (``reply``: the model reply the call is part of; see :func:`by_ref`)."""
    ref, target = ref.strip(), _unquote(target.strip())
    if ref:
        return await by_ref(sb, ref, call, reply)
    if normalize_ref(target) is not None:
        return await by_ref(sb, target, call, reply)
    if not target:
        raise ToolError(
            "Name the element: ref from the latest snapshot (e.g. 'e15'), or its visible text or a CSS selector."
        )
    page = sb.page
    snap = await snapshot()
    exact, partial = _rank(snap, target, kind)
    if exact:
        return _one(page, exact, target)
    if _CSS_HINT.search(target):
        css = await _visible(page.locator(f"css={target}"), call, lenient=True)
        if css is not None:
            return await _only(css, f"the CSS selector {quote(target)}", call)
    if partial:
        return _one(page, partial, target)
    for locator in _fallbacks(page, target, kind):
        visible = await _visible(locator, call)
        if visible is not None:
            return await _only(visible, quote(target), call)
    what = {"any": "", "field": " field", "check": " checkbox, radio or switch", "select": " select or list box"}
    raise ToolError(
        f"Nothing on this page ({line(page.url)}) matches {quote(target)}: no{what[kind] or ' element'} with that "
        "text or label, and no element for it as a CSS selector. The snapshot lists what is there, with refs."
    )


def _rank(snap: Snapshot, target: str, kind: Kind) -> tuple[list[Node], list[Node]]:
    """Actionable elements whose name or text is ``target`` (exactly, ignoring case), and those
    that only contain it."""
    want = _norm(target)
    roles = ROLES[kind]
    exact: list[Node] = []
    partial: list[Node] = []
    for node in snap.nodes.values():
        if not (node.role in roles or (kind == "any" and node.pointer)):
            continue
        texts = [_norm(node.name), _norm(node.own_text)]
        if not node.name:
            texts.append(_norm(node.text))
        if kind == "field" and node.parent is not None and not node.name:
            # An unlabeled field beside its words ("Username [textbox]"): those words name it.
            parent = snap.nodes.get(node.parent)
            if parent is not None:
                texts.append(_norm(parent.own_text))
        texts = [t for t in texts if t]
        if want in texts:
            exact.append(node)
        elif any(want in t for t in texts):
            partial.append(node)
    return _innermost(snap, exact), _innermost(snap, partial)


def _innermost(snap: Snapshot, nodes: list[Node]) -> list[Node]:
    """Drop matches that only contain another match (a tab around its link, an item around its label)."""
    refs = {n.ref for n in nodes}
    outer: set[str] = set()
    for node in nodes:
        outer |= snap.ancestors(node.ref) & refs
    return [n for n in nodes if n.ref not in outer]


def _one(page: Page, nodes: list[Node], target: str) -> Found:
    if len(nodes) > 1:
        listed = "; ".join(describe_node(n) for n in nodes[:MAX_LISTED])
        more = f" and {len(nodes) - MAX_LISTED} more" if len(nodes) > MAX_LISTED else ""
        raise ToolError(f"{len(nodes)} elements match {quote(target)}: {listed}{more}. Say which one by its ref.")
    # find() took this snapshot a moment ago, so the ref resolves against it.
    return Found(page.locator(f"aria-ref={nodes[0].ref}"), describe_node(nodes[0]), nodes[0])


async def _visible(locator: Locator, call: Call, *, lenient: bool = False) -> Locator | None:
    """``locator``'s visible elements, or None if it has none (or, ``lenient``, is not valid CSS)."""
    visible = locator.filter(visible=True)
    try:
        count = await call(lambda p: visible.count(), "Looking for the element")
    except BrowserError as exc:
        if lenient and not isinstance(exc, BrowserCrashedError | BrowserTimeoutError | DialogOpenError):
            return None  # words that only looked like a CSS selector: no match
        raise
    return visible if count else None


async def _only(locator: Locator, what: str, call: Call) -> Found:
    count = await call(lambda p: locator.count(), "Counting the matches")
    if count > 1:
        script = f"els => els.slice(0, {MAX_LISTED}).map(el => [...({_DESCRIBE_JS})(el), ({_CSS_PATH_JS})(el)])"
        names = await call(lambda p: locator.evaluate_all(script), "Describing the matches")
        listed = "; ".join(f"{_label(role, name)} (CSS {line(css, 300)!r})" for role, name, css in names)
        raise ToolError(
            f"{count} visible elements match {what}: {listed}. Name one by its CSS selector as the target, or take "
            "a snapshot and name it by its ref."
        )
    role, name = await call(lambda p: locator.evaluate(_DESCRIBE_JS), "Describing the element")
    return Found(locator.first, _label(role, name))


def _fallbacks(page: Page, target: str, kind: Kind) -> Iterable[Locator]:
    """Page-wide lookups for what the snapshot did not name."""
    if kind == "any":
        yield page.get_by_text(target, exact=True)
        yield page.get_by_text(target, exact=False)
        return
    yield page.get_by_label(target, exact=False)
    if kind == "field":
        yield page.get_by_placeholder(target, exact=False)
    yield page.locator(f"css=[name={css_string(target)}]")


def _label(role: str, name: str) -> str:
    return line(f'{role} "{name}"' if name else role)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].strip()
    return text


line = line_of
"""Site-chosen text (a title, a URL, an element's name) made safe to show outside an untrusted block."""


def quote(target: str) -> str:
    return repr(line(target, 80))


def css_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\a ")
    return f'"{escaped}"'
