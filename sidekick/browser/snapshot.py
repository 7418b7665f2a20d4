"""The page as the model reads it: Playwright's AI-mode accessibility snapshot, parsed for its refs.

``page.aria_snapshot(mode="ai")`` renders the page as YAML-like lines that carry element refs::

    - generic [active] [ref=e1]:
      - button "Next" [ref=e15]
      - textbox [ref=e13]
      - 'link "Tab #2" [ref=f5e17] [cursor=pointer]':
      - checkbox "R3" [checked] [ref=f9e18]

We keep Playwright's lines as they are (so the model sees the format Playwright documents) and parse
them only to know which refs the latest snapshot holds, each element's role, name, state and text,
and which element contains which: that is what text targeting ranks and what an action names.

A ref resolves (``page.locator("aria-ref=e15")``) against the latest snapshot Playwright took in
that element's frame, and ref numbers start again in every new document, so a ref is only
meaningful with the page and the document it was read from: :class:`Snapshot` records both, and
the model reply whose tool calls took it (:meth:`Snapshot.read_in` says which snapshot the refs
written in a reply come from: the model wrote them before it read anything its own calls returned).

Playwright shows state only where the page declares it in ARIA, and never a collapsed state
(``aria-expanded="false"`` renders nothing). A file tree built of ``<li>``/``<span>`` (jQuery
treeview, MiniWoB's navigate-tree) then shows folders and files alike. :data:`STATES_JS` reads, in
the page, what a person sees instead: a list item whose nested list is hidden is
``[expanded=false]`` (a closed folder or submenu), one whose nested list shows in a tree is
``[expanded]``; ``aria-expanded="false"`` and a closed ``<details>`` are ``[expanded=false]``.
:func:`with_states` puts those states on the lines of a snapshot taken with boxes
(``aria_snapshot(boxes=True)``), matching each element by its box, and drops the boxes.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

_REF = re.compile(r"\[ref=([A-Za-z0-9]+)\]")
_KEY = re.compile(r'^(?P<role>[a-z][\w-]*)(?: "(?P<name>(?:[^"\\]|\\.)*)")?(?P<attrs>(?: \[[^\]]*\])*)$')
_ATTR = re.compile(r"\[([^\]=]+)(?:=([^\]]*))?\]")
# What a model may write for a ref: "e15", "f1e3", "ref=e15", "[ref=e15]".
_REF_ARG = re.compile(r"^\[?(?:ref=)?(f\d+e\d+|e\d+)\]?$")
_BOX = re.compile(r" \[box=(-?\d+),(-?\d+),(-?\d+),(-?\d+)\]")
_STATES = frozenset({"expanded", "expanded=false"})
_LINE_ROLE = re.compile(r"^\s*- '?([a-z][\w-]*)")

# [x, y, width, height, role, state] of each element of the main frame whose state the page shows
# only in its DOM. Boxes are rounded as Playwright rounds them for [box=...].
STATES_JS = """() => { try {
  const found = [];
  const add = (el, role, state) => {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0)
      found.push([Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height), role, state]);
  };
  const shows = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  for (const el of document.querySelectorAll('[aria-expanded="false"]'))
    add(el, el.getAttribute('role') || '', 'expanded=false');
  for (const el of document.querySelectorAll('details:not([open])')) add(el, 'group', 'expanded=false');
  const trees = new Map();
  const isTree = list => {
    if (!trees.has(list)) trees.set(list, list.matches('[role=tree], [class*=tree]')
      || Array.from(list.querySelectorAll('li > ul, li > ol')).some(sub => !shows(sub)));
    return trees.get(list);
  };
  for (const li of document.querySelectorAll('li:not([aria-expanded])')) {
    const sub = Array.from(li.children).find(c => c.matches('ul, ol, [role=group]'));
    if (!sub || !shows(li)) continue;
    let root = li.parentElement;  // the outermost list of the tree
    for (let up = root?.parentElement?.closest('li'); up; up = up.parentElement?.closest('li')) root = up.parentElement;
    const role = li.getAttribute('role') || 'listitem';
    if (!shows(sub)) add(li, role, 'expanded=false');
    else if (root && isTree(root)) add(li, role, 'expanded');
  }
  return found;
} catch (e) { return []; } }"""


@dataclass
class Node:
    """One element line of a snapshot that carries a ref."""

    ref: str
    role: str
    name: str
    states: frozenset[str]
    pointer: bool  # [cursor=pointer]: the page styled it as clickable
    own_text: str  # the text after the colon, and the element's direct ``- text:`` children
    parent: str | None
    depth: int
    children_text: list[str] = field(default_factory=list)  # every descendant's text, in order
    options: list[str] = field(default_factory=list)  # a select's option labels (option lines carry no ref)

    def describe(self, limit: int = 80) -> str:
        """``button "Next" [ref=e15]``: how an action names what it acted on."""
        name = " ".join(self.name.split())
        if len(name) > limit:
            name = name[: limit - 1] + "…"
        shown = f'{self.role} "{name}"' if name else self.role
        if not name and self.own_text:
            text = " ".join(self.own_text.split())
            shown += f": {text[: limit - 1] + '…' if len(text) > limit else text}"
        states = "".join(f" [{s}]" for s in sorted(self.states))
        return f"{shown}{states} [ref={self.ref}]"

    @property
    def text(self) -> str:
        """All the text this element shows (its own and its descendants')."""
        return " ".join(t for t in (self.own_text, *self.children_text) if t)


@dataclass
class Snapshot:
    """One snapshot: its text, its ref-bearing lines, and where it was taken."""

    text: str
    nodes: dict[str, Node]
    page_id: int  # id() of the Page it was taken on
    document: int  # that page's document number when it was taken (see SessionBrowser.document)
    reply: Hashable = None  # the model reply whose tool call took it (None: not known)
    before: Snapshot | None = None  # the latest snapshot taken in an earlier reply than ``reply``

    def read_in(self, reply: Hashable) -> Snapshot | None:
        """The snapshot that refs written in ``reply`` come from, if this is the latest snapshot:
        this one if it was taken in an earlier reply (the model has read it), else the one the model
        had read when ``reply`` began. Without a known reply, every call counts as its own."""
        if reply is None or reply != self.reply:
            return self
        return self.before

    def follow(self, previous: Snapshot | None) -> Snapshot:
        """This snapshot, taken after ``previous``, knowing what the model had read before its reply."""
        before = previous.read_in(self.reply) if previous is not None else None
        self.before = replace(before, before=None) if before is not None else None  # one link, not a chain
        return self

    @classmethod
    def parse(cls, text: str, page_id: int, document: int, reply: Hashable = None) -> Snapshot:
        nodes: dict[str, Node] = {}
        stack: list[tuple[int, Node | None]] = []  # (indent, node) of the open ancestors
        for raw in text.splitlines():
            stripped = raw.lstrip(" ")
            if not stripped.startswith("- "):
                continue
            indent = len(raw) - len(stripped)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key, value = _split(stripped[2:])
            parent = next((n for _, n in reversed(stack) if n is not None), None)
            match = _KEY.match(key)
            if match is None or key == "text" or key.startswith("/"):
                # "- text: words" belongs to its parent; "/url: ..." is a link's address.
                if key == "text" and value:
                    _add_text(parent, stack, value, own=True)
                stack.append((indent, None))
                continue
            attrs = dict((m.group(1).strip(), m.group(2)) for m in _ATTR.finditer(match.group("attrs") or ""))
            ref = attrs.pop("ref", None)
            if ref is None:
                if match.group("role") == "option" and parent is not None:
                    parent.options.append(_unescape(match.group("name") or value))
                if value:
                    _add_text(parent, stack, value, own=False)
                stack.append((indent, None))
                continue
            pointer = attrs.pop("cursor", None) == "pointer"
            states = frozenset(k if v is None else f"{k}={v}" for k, v in attrs.items())
            node = Node(
                ref=ref,
                role=match.group("role"),
                name=_unescape(match.group("name") or ""),
                states=states,
                pointer=pointer,
                own_text=value,
                parent=parent.ref if parent else None,
                depth=len(stack),
            )
            nodes[ref] = node
            if value:
                _add_text(parent, stack, value, own=False)
            stack.append((indent, node))
        return cls(text=text, nodes=nodes, page_id=page_id, document=document, reply=reply)

    def ancestors(self, ref: str) -> set[str]:
        seen: set[str] = set()
        node = self.nodes.get(ref)
        while node is not None and node.parent is not None and node.parent not in seen:
            seen.add(node.parent)
            node = self.nodes.get(node.parent)
        return seen

    def render(self, limit: int, from_line: int = 0) -> tuple[str, str]:
        """(lines ``from_line`` onward, cut at a line end within ``limit`` characters; a plain note
        saying what was left out and how to see it, or "")."""
        lines = self.text.splitlines()
        start = min(max(from_line, 0), len(lines))
        shown: list[str] = []
        size = 0
        for line in lines[start:]:
            if size + len(line) + 1 > limit and shown:
                break
            shown.append(line[:limit])
            size += len(line) + 1
        end = start + len(shown)
        notes = []
        if start:
            notes.append(f"lines 1–{start} are not shown")
        if end < len(lines):
            notes.append(
                f"cut after line {end} of {len(lines)} to stay within {limit} characters; "
                f"snapshot(from_line={end}) shows the rest"
            )
        note = f"(Snapshot {'; '.join(notes)}.)" if notes else ""
        return "\n".join(shown), note


def with_states(text: str, states: Sequence[Sequence[Any]]) -> str:
    """``text``, a snapshot taken with boxes, without them, and with each of ``states`` (from
    :data:`STATES_JS`) on the line of the element with its box: the first line of its role there,
    else the first line there; a state the line already shows is not repeated."""
    by_box: dict[tuple[int, ...], list[tuple[str, str]]] = {}
    for entry in states if isinstance(states, list) else []:
        # The page ran the script, so check what came back.
        if isinstance(entry, list) and len(entry) == 6 and str(entry[5]) in _STATES:
            x, y, w, h, role, state = entry
            if all(isinstance(v, int | float) for v in (x, y, w, h)):
                by_box.setdefault((int(x), int(y), int(w), int(h)), []).append((str(role), str(state)))
    lines = text.splitlines()
    first = _REF.search(text)
    main = first.group(1).rsplit("e", 1)[0] if first else ""  # the main frame's refs: e1, or f3e1 after it navigated
    at_box: dict[tuple[int, ...], list[int]] = {}
    for i, raw in enumerate(lines):
        match = _BOX.search(raw)
        if match is not None:
            box = tuple(int(v) for v in match.groups())
            ref = _REF.search(raw)
            if box in by_box and ref is not None and ref.group(1).rsplit("e", 1)[0] == main:
                at_box.setdefault(box, []).append(i)
            lines[i] = raw[: match.start()] + raw[match.end() :]
    for box, wanted in by_box.items():
        for role, state in wanted:
            spots = at_box.get(box, [])
            same_role = [i for i in spots if (m := _LINE_ROLE.match(lines[i])) is not None and m.group(1) == role]
            for i in (same_role or spots)[:1]:
                kind = state.split("=")[0]
                if f"[{kind}]" in lines[i] or f"[{kind}=" in lines[i]:
                    continue
                lines[i] = lines[i].replace(" [ref=", f" [{state}] [ref=", 1)
    return "\n".join(lines)


def normalize_ref(value: str) -> str | None:
    """``"e15"`` from what a model may write for a ref, or ``None`` if it is not one."""
    match = _REF_ARG.match(value.strip())
    return match.group(1) if match else None


def _split(body: str) -> tuple[str, str]:
    """A line's key (``role "name" [attrs]``) and its text value, YAML quoting undone."""
    if body.startswith("'"):
        i, out = 1, []
        while i < len(body):
            if body[i] == "'":
                if body[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(body[i])
            i += 1
        key, rest = "".join(out), body[i + 1 :]
    else:
        # The key ends at the first ": " (or a final ":") outside a quoted name.
        in_quote, escaped, cut = False, False, len(body)
        for i, ch in enumerate(body):
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = not in_quote
            elif ch == ":" and not in_quote and (i + 1 == len(body) or body[i + 1] == " "):
                cut = i
                break
        key, rest = body[:cut], body[cut:]
    value = rest[1:].strip() if rest.startswith(":") else ""
    return key.strip(), _unquote(value)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _unescape(value[1:-1])
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def _add_text(parent: Node | None, stack: list[tuple[int, Node | None]], text: str, *, own: bool) -> None:
    if parent is not None and own:
        parent.own_text = f"{parent.own_text} {text}".strip()
    for _, node in stack:
        if node is not None and not (own and node is parent):
            node.children_text.append(text)
