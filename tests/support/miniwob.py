"""MiniWoB++ task pages through the real agent loop, for the benchmark and the smoke test alike.

- :class:`MiniWobSite` serves the ``miniwob`` wheel's ``miniwob/html`` folder (the dev dependency
  ``miniwob==1.1.0``) on 127.0.0.1; ``episode_seconds`` lengthens every task's time limit, for a
  real model that thinks for longer than the pages' default 10 s.
- :class:`Planner` is the fake model's handler: a scripted planner that decides every step only
  from the text the tools returned (the snapshot after each action), as a model would. It opens the
  page, clicks START, reads the instruction from the snapshot and acts by ref (or, where a person
  would, by the words beside a field). The evaluator's requests get an accepting verdict.
- :func:`run_task` runs one episode in a session and reads the page's own reward,
  ``WOB_RAW_REWARD_GLOBAL`` (1 solved, -1 wrong or timed out; an episode starts at START).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sidekick.browser.snapshot import Node, Snapshot
from sidekick.events import Finished, ToolResult
from sidekick.tools.base import UNTRUSTED_CLOSE
from tests.support.fakes.openai_server import Reply
from tests.support.fakes.serving import Serving
from tests.support.runs import Rig, collect

# The task types the benchmark runs, each with the clicks and keystroke fields a person needs
# after START (a field typed into counts as one).
TASKS: dict[str, int] = {
    "click-button": 1,
    "click-link": 1,
    "click-button-sequence": 2,
    "click-test": 1,
    "click-test-2": 1,
    "enter-text": 2,
    "enter-text-2": 2,
    "enter-password": 3,
    "login-user": 3,
    "focus-text": 1,
    "focus-text-2": 1,
    "click-checkboxes": 7,  # one per box named (0-6) and Submit: see person_clicks
    "click-option": 2,
    "choose-list": 2,
    "click-scroll-list": 2,
    "click-tab": 1,
    "click-dialog": 1,
    "click-dialog-2": 1,
    "click-collapsible": 2,
    "search-engine": 4,  # 3 when the result is on the first page
    "navigate-tree": 8,  # the folders opened to find the name, then 1 (at most 8 items): see tree_clicks
}
SMOKE = ("click-button", "login-user", "choose-list", "click-checkboxes", "navigate-tree")
TASK_MESSAGE = "Open {url} — a web task page. Click START, then do exactly what the page asks."
DONE = "Done: the task on the page is complete."
_REWARD_JS = "typeof WOB_RAW_REWARD_GLOBAL === 'number' ? WOB_RAW_REWARD_GLOBAL : 0"


def html_root() -> Path:
    """The ``miniwob/html`` folder of the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The MiniWoB++ pages need the dev dependency miniwob==1.1.0 (pip install miniwob==1.1.0).")
    root = Path(next(iter(spec.submodule_search_locations))) / "html"
    if not (root / "miniwob").is_dir():
        raise RuntimeError(f"No MiniWoB++ task pages under {root}.")
    return root


class MiniWobSite:
    """A static server for the task pages: ``with MiniWobSite() as site: site.url("click-button")``."""

    def __init__(self, episode_seconds: float | None = None) -> None:
        self.root = html_root()
        self.episode_seconds = episode_seconds
        self._serving: Serving | None = None

    def __enter__(self) -> MiniWobSite:
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if site.episode_seconds and self.path.startswith("/miniwob/") and self.path.endswith(".html"):
                    self._send_longer_episode()
                else:
                    super().do_GET()

            def _send_longer_episode(self) -> None:
                page = Path(self.translate_path(self.path))
                if not page.is_file():
                    self.send_error(404)
                    return
                # After the task's own scripts, so it wins over a task that sets its own limit.
                limit = f"<script>core.EPISODE_MAX_TIME = {int(site.episode_seconds * 1000)};</script>"
                body = page.read_text(encoding="utf-8").replace("</body>", f"{limit}</body>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        handler = functools.partial(Handler, directory=str(self.root))
        self._serving = Serving(ThreadingHTTPServer(("127.0.0.1", 0), handler))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None

    def url(self, task: str) -> str:
        assert self._serving is not None
        return f"http://127.0.0.1:{self._serving.port}/miniwob/{task}.html"


# -- the scripted planner ---------------------------------------------------------------------
Action = tuple[str, dict[str, Any]]
_ORDINALS = {"1st": 0, "2nd": 1, "3rd": 2, "4th": 3, "5th": 4, "6th": 5, "7th": 6, "8th": 7, "9th": 8, "10th": 9}


@dataclass
class View:
    """What the planner knows: the instruction, the latest snapshot, and its actions since START."""

    instruction: str
    snap: Snapshot
    done: list[Action]
    decided_on: Snapshot | None = None  # the snapshot the last action was chosen on

    def nodes(self, role: str) -> list[Node]:
        return [n for n in self.snap.nodes.values() if n.role == role]

    def named(self, role: str, name: str) -> Node | None:
        """The element of ``role`` called ``name``: in the same case first ("no" beside "No")."""
        nodes = self.nodes(role)
        exact = next((n for n in nodes if n.name == name), None)
        return exact or next((n for n in nodes if n.name.casefold() == name.casefold()), None)

    def count(self, name: str) -> int:
        return sum(1 for tool, _ in self.done if tool == name)


def _click(node: Node | None) -> Action | None:
    return None if node is None else ("click", {"ref": node.ref})


def _steps(view: View, actions: list[Callable[[View], Action | None]]) -> Action | None:
    """The next of a fixed sequence of actions, each chosen on the latest snapshot."""
    step = len(view.done)
    return actions[step](view) if step < len(actions) else None


def _plan(view: View) -> Action | None:
    text = view.instruction
    m = re.search(r'Click on the "(.+)" button', text)
    if m:
        return _steps(view, [lambda v: _click(v.named("button", m.group(1)))])
    m = re.search(r'Click on the link "(.+)"', text)
    if m:
        # These "links" are styled <span>s: no link in the snapshot, so name it by its words.
        return _steps(view, [lambda v: _click(v.named("link", m.group(1))) or ("click", {"target": m.group(1)})])
    if "Click button ONE, then click button TWO" in text:
        return _steps(view, [lambda v: _click(v.named("button", "ONE")), lambda v: _click(v.named("button", "TWO"))])
    m = re.search(r"Click button (\w+)\.", text)
    if m:
        return _steps(view, [lambda v: _click(v.named("button", m.group(1)))])
    if text.strip() == "Click the button.":
        return _steps(view, [lambda v: _click(next(iter(v.nodes("button")), None))])
    m = re.search(r'Enter "(.+)" into the text field and press Submit', text)
    if m:
        typed = m.group(1)
        return _steps(view, [_type_into(0, typed), lambda v: _click(v.named("button", "Submit"))])
    m = re.search(r'Type "(.+)" in all (upper|lower) case letters', text)
    if m:
        typed = m.group(1).upper() if m.group(2) == "upper" else m.group(1).lower()
        return _steps(view, [_type_into(0, typed), lambda v: _click(v.named("button", "Submit"))])
    m = re.search(r'Enter the password "(.+)" into both text fields', text)
    if m:
        pw = m.group(1)
        return _steps(view, [_type_into(0, pw), _type_into(1, pw), lambda v: _click(v.named("button", "Submit"))])
    m = re.search(r'Enter the username "(.+)" and the password "(.+)"', text)
    if m:
        # A person reads the words beside each field; so does type_text's text targeting.
        user, pw = m.group(1), m.group(2)
        return _steps(
            view,
            [
                lambda v: ("type_text", {"target": "Username", "text": user}),
                lambda v: ("type_text", {"target": "Password", "text": pw}),
                lambda v: ("click", {"target": "Login"}),
            ],
        )
    if text.startswith("Focus into the textbox"):
        return _steps(view, [lambda v: _click(next(iter(v.nodes("textbox")), None))])
    m = re.search(r"Focus into the (\w+) input textbox", text)
    if m:
        index = _ORDINALS.get(m.group(1), 0)
        return _steps(view, [lambda v: _click(_nth(v.nodes("textbox"), index))])
    m = re.search(r"Select (.+) from the scroll list and click Submit", text)
    if m:
        items = _items(m.group(1))
        return _steps(
            view,
            [
                lambda v: ("select_option", {"ref": _ref(next(iter(v.nodes("listbox")), None)), "values": items}),
                lambda v: _click(v.named("button", "Submit")),
            ],
        )
    m = re.search(r"Select (.+) from the list and click Submit", text)
    if m:
        item = m.group(1)
        return _steps(
            view,
            [
                lambda v: ("select_option", {"ref": _ref(next(iter(v.nodes("combobox")), None)), "values": [item]}),
                lambda v: _click(v.named("button", "Submit")),
            ],
        )
    m = re.search(r"Select (.+) and click Submit", text)
    if m:
        items = [] if m.group(1) == "nothing" else _items(m.group(1))
        role = "radio" if view.nodes("radio") else "checkbox"
        picks: list[Callable[[View], Action | None]] = [
            functools.partial(lambda item, v: _check(v.named(role, item)), item) for item in items
        ]
        return _steps(view, [*picks, lambda v: _click(v.named("button", "Submit"))])
    m = re.search(r"Click on Tab #(\d+)", text)
    if m:
        return _steps(view, [lambda v: _click(v.named("link", f"Tab #{m.group(1)}"))])
    if "Close the dialog box" in text:
        return _steps(view, [lambda v: _click(v.named("button", "Close"))])
    m = re.search(r'Click the button in the dialog box labeled "(.+)"', text)
    if m:
        label = "Close" if m.group(1) == "x" else m.group(1)
        return _steps(view, [lambda v: _click(v.named("button", label))])
    if "Expand the section below and click submit" in text:
        return _steps(
            view, [lambda v: _click(next(iter(v.nodes("tab")), None)), lambda v: _click(v.named("button", "Submit"))]
        )
    m = re.search(r'enter "(.+)" and press "Search", then find and click the (\w+) search result', text)
    if m:
        return _search(view, m.group(1), _ORDINALS.get(m.group(2), 0))
    m = re.search(r'Find and click on the folder or file named "(.+)"', text)
    if m:
        return _tree(view, m.group(1))
    return None


def _tree(view: View, name: str) -> Action | None:
    """A person reads the names the tree shows and clicks the one asked for; while it is not shown,
    opens the shallowest closed folder (``[expanded=false]`` in the snapshot), top to bottom."""
    if view.done and view.decided_on is not None:
        last = view.decided_on.nodes.get(str(view.done[-1][1].get("ref", "")))
        if last is not None and last.own_text == name:
            return None  # that was the click on it
    items = {n.ref for n in view.nodes("listitem")}
    label = next((n for n in view.snap.nodes.values() if n.parent in items and n.own_text == name), None)
    if label is not None:
        return _click(label)
    closed = [n for n in view.nodes("listitem") if "expanded=false" in n.states]
    if not closed:
        return None
    folder = min(closed, key=lambda n: n.depth)  # the first of the shallowest, in page order
    return _click(next((n for n in view.snap.nodes.values() if n.parent == folder.ref and n.own_text), folder))


def _search(view: View, query: str, index: int) -> Action | None:
    # Results are links, three to a page, above the pager's numbered links.
    page = index // 3 + 1

    def result(v: View) -> Action | None:
        links = [n for n in v.nodes("link") if not re.fullmatch(r"\d+|<|>|Prev|Next|First|Last|«|»", n.name)]
        return _click(_nth(links, index % 3))

    steps: list[Callable[[View], Action | None]] = [
        _type_into(0, query),
        lambda v: _click(v.named("button", "Search")),
    ]
    if page > 1:
        steps.append(lambda v: _click(v.named("link", str(page))))
    return _steps(view, [*steps, result])


def _type_into(index: int, text: str) -> Callable[[View], Action | None]:
    def act(view: View) -> Action | None:
        field = _nth(view.nodes("textbox"), index)
        return None if field is None else ("type_text", {"ref": field.ref, "text": text})

    return act


def _check(node: Node | None) -> Action | None:
    return None if node is None else ("set_checked", {"ref": node.ref, "checked": True})


def _nth(nodes: list[Node], index: int) -> Node | None:
    return nodes[index] if index < len(nodes) else None


def _ref(node: Node | None) -> str:
    return node.ref if node is not None else ""


def _items(text: str) -> list[str]:
    return [item.strip() for item in re.split(r",\s*|\s+and\s+", text) if item.strip()]


def snapshot_in(result: str) -> str:
    """The snapshot inside a tool result (the untrusted block), or ""."""
    start = result.find("\n", result.find("<<<UNTRUSTED CONTENT"))
    end = result.rfind(UNTRUSTED_CLOSE)
    return result[start + 1 : end].rstrip("\n") if start > 0 and end > start else ""


def instruction_of(snap: Snapshot) -> str:
    """The task's instruction: the first text in the page above the reward display."""
    lines = snap.text.splitlines()
    for i, raw in enumerate(lines):
        if ": " not in raw or "[ref=" not in raw:
            continue
        node_line = raw.strip()
        if "START" in node_line or "Last reward" in node_line:
            continue
        # The instruction's own text, then its inline children (bold words) in order.
        words = [node_line.split(": ", 1)[1]]
        indent = len(raw) - len(raw.lstrip())
        for child in lines[i + 1 :]:
            if len(child) - len(child.lstrip()) <= indent:
                break
            if ": " in child:
                words.append(child.split(": ", 1)[1])
        return " ".join(w.strip().strip('"') for w in words)
    return ""


class Planner:
    """The fake model's handler (see the module docstring). It keeps no state between requests:
    everything comes from the conversation the request carries, so runs can share one planner."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, request: dict[str, Any]) -> Reply:
        if request.get("response_format") is not None:
            return Reply.json(
                {
                    "checks": [{"criterion": "c", "met": True, "evidence": "the page's task was done"}],
                    "success_criteria_met": True,
                    "user_input_needed": False,
                    "feedback": "ok",
                }
            )
        messages = request.get("messages", [])
        calls: list[Action] = []
        results: list[str] = []
        for m in messages:
            if m.get("role") == "assistant":
                for call in m.get("tool_calls") or []:
                    calls.append((call["function"]["name"], json.loads(call["function"]["arguments"] or "{}")))
            elif m.get("role") == "tool":
                results.append(str(m.get("content", "")))
        if not calls:
            user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
            url = re.search(r"https?://\S+\.html", str(user.get("content", "")))
            return Reply.tool_call("navigate", {"url": url.group(0) if url else ""})
        last = results[-1] if results else ""
        if last.startswith("Error"):
            tool, args = calls[-1]
            if tool == "click" and not args.get("force") and "repeat with force=true" in last:
                return Reply.tool_call("click", {**args, "force": True})  # as the error suggests
            listed = re.search(r"visible elements match .*?\(CSS '([^']+)'\)", last)
            if tool == "click" and listed:
                return Reply.tool_call("click", {"target": listed.group(1)})  # the first of the matches
            self.problems.append(last[:300])
            return Reply.text(f"I could not finish: {last[:200]}")
        snap = Snapshot.parse(snapshot_in(last), 0, 0)
        if len(calls) == 1:
            start = next((n for n in snap.nodes.values() if n.pointer and n.own_text == "START"), None)
            if start is None:
                self.problems.append("no START button in the snapshot")
                return Reply.text("I could not find the START button.")
            return Reply.tool_call("click", {"ref": start.ref})
        instruction = instruction_of(Snapshot.parse(snapshot_in(results[1]), 0, 0))
        # The actions after START that worked, and the snapshots read before each.
        tried = list(zip(calls, results, strict=False))[2:]
        done = [call for call, result in tried if not result.startswith("Error")]
        read = [results[1], *(result for _, result in tried if not result.startswith("Error"))]
        decided_on = Snapshot.parse(snapshot_in(read[-2]), 0, 0) if len(read) > 1 else None
        view = View(instruction, snap, done, decided_on)
        action = _plan(view)
        if action is None:
            if not view.done:
                self.problems.append(f"no plan for {instruction!r}")
            return Reply.text(DONE)
        return Reply.tool_call(*action)


def person_clicks(task: str, instruction: str, tree: Tree | None = None) -> int:
    """What a person clicks (or types into) after START for this episode's instruction (and, for
    navigate-tree, the page's tree: see :func:`tree_clicks`)."""
    if task == "click-checkboxes":
        named = re.search(r"Select (.+) and click Submit", instruction)
        return 1 + (0 if not named or named.group(1) == "nothing" else len(_items(named.group(1))))
    if task == "search-engine":
        nth = re.search(r"click the (\w+) search result", instruction)
        return 3 + (1 if nth and _ORDINALS.get(nth.group(1), 0) >= 3 else 0)
    named = re.search(r'named "(.+)"', instruction)
    if task == "navigate-tree" and tree is not None and named:
        return tree_clicks(tree, named.group(1))
    return TASKS.get(task, 0)


Tree = list[tuple[str, "Tree | None"]]
"""navigate-tree's tree as the page holds it: (name, the folder's items, or None for a file)."""
_TREE_JS = """() => { const walk = ul => Array.from(ul.children, li => {
  const sub = li.querySelector(':scope > ul');
  return [li.querySelector(':scope > span')?.textContent || '', sub ? walk(sub) : null]; });
  const tree = document.getElementById('tree'); return tree ? walk(tree) : []; }"""


def tree_clicks(tree: Tree, name: str) -> int:
    """A person who cannot see inside closed folders: reads the names shown, and until ``name`` is
    among them opens the shallowest closed folder, top to bottom; then clicks it."""
    shown = [item for item, _ in tree]
    closed = [items for _, items in tree if items is not None]
    opened = 0
    while name not in shown and closed:
        items = closed.pop(0)
        opened += 1
        shown += [item for item, _ in items]
        closed += [sub for _, sub in items if sub is not None]
    return opened + 1


@dataclass
class Episode:
    task: str
    reward: float
    steps: int  # tool calls after START
    seconds: float
    problem: str = ""
    person: int = 0  # what a person clicks for this episode (person_clicks)

    @property
    def solved(self) -> bool:
        return self.reward > 0


async def run_task(rig: Rig, site: MiniWobSite, task: str, thread: str, timeout: float = 60.0) -> Episode:
    """One episode of ``task`` through ``rig``'s agent; the page's reward decides."""
    started = time.monotonic()
    handle = await rig.runner.start(TASK_MESSAGE.format(url=site.url(task)), "The page's task is done", thread)
    events = await collect(handle, timeout=timeout)
    seconds = time.monotonic() - started
    finished = [e for e in events if isinstance(e, Finished)]
    tools = [e for e in events if isinstance(e, ToolResult)]
    sb = await rig.session.browser()
    reward = await sb.call(lambda p: p.evaluate(_REWARD_JS), timeout=5, what="Reading the reward")
    # The harness (not the planner) reads the tree, to count what a person would click.
    tree = None
    if task == "navigate-tree":
        tree = await sb.call(lambda p: p.evaluate(_TREE_JS), timeout=5, what="Reading the tree")
    problem = "; ".join(t.output[:200] for t in tools if not t.ok)
    instruction = instruction_of(Snapshot.parse(snapshot_in(tools[1].output), 0, 0)) if len(tools) > 1 else ""
    if finished and finished[-1].seconds:
        seconds = finished[-1].seconds
    person = person_clicks(task, instruction, tree)
    return Episode(task, float(reward), max(0, len(tools) - 2), seconds, problem, person)
