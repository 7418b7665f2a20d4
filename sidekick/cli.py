"""``python -m sidekick``: the same sessions, agent and events as the dashboard, in a terminal.

    python -m sidekick [--user NAME] ask "MESSAGE" [--criteria "..."] [--thread ID] [--json] [--screenshots DIR] [--yes]
    python -m sidekick conversations [--json]
    python -m sidekick tools [--json]
    python -m sidekick export THREAD_ID (--html FILE | --json FILE)

Exit codes: 0 answered (or asked a question), 1 the run failed or was stopped (Ctrl-C included),
2 a configuration or usage error. Every exit other than 0 prints one line saying why; never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from sidekick import events as ev
from sidekick.agent.prompts import DEFAULT_CRITERIA
from sidekick.config import Settings
from sidekick.errors import ConfigError, SidekickError
from sidekick.facade import Sidekick, new_thread_id, valid_thread_id
from sidekick.models import NO_MODEL, model_configured
from sidekick.runs import RunHandle

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Past the turn's own budget, the CLI stops waiting: the run gets this long to report its end.
WAIT_MARGIN_SECONDS = 30.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sidekick", description="Sidekick, your co-worker with a browser.")
    p.add_argument(
        "--user",
        help="Act as this local user: whose conversations to use (default: SIDEKICK_USER, else the OS user).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="Give Sidekick a task and print what it does.")
    ask.add_argument("message")
    ask.add_argument("--criteria", default=DEFAULT_CRITERIA, help="Success criteria the answer must meet.")
    ask.add_argument("--thread", help="Continue this conversation (id printed by earlier runs).")
    ask.add_argument("--json", action="store_true", help="One JSON object per event, per line.")
    ask.add_argument("--screenshots", type=Path, help="Save every screenshot into this folder.")
    ask.add_argument("--yes", action="store_true", help="Approve every side-effecting tool call.")
    conv = sub.add_parser("conversations", help="List past conversations.")
    conv.add_argument("--json", action="store_true")
    tools = sub.add_parser("tools", help="List the tools, MCP servers included, and why any are off.")
    tools.add_argument("--json", action="store_true")
    exp = sub.add_parser("export", help="Write a conversation's whole record to one file.")
    exp.add_argument("thread")
    where = exp.add_mutually_exclusive_group(required=True)
    where.add_argument("--html", type=Path, help="A self-contained HTML page (screenshots inlined).")
    where.add_argument("--json", type=Path, help="A JSON document of the same record.")
    return p


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # a usage error exits 2 with argparse's one-line message
    try:
        return _main(args)
    except KeyboardInterrupt:
        return fail("Stopped.", EXIT_FAILED)
    except Exception as exc:  # the last guard: one line, never a traceback
        log.debug("CLI failed", exc_info=True)
        return fail(f"Sidekick failed unexpectedly ({type(exc).__name__}); try again.", EXIT_FAILED)


def _main(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load()
    except ConfigError as exc:
        return fail(str(exc))
    if args.user is not None:
        if not args.user.strip():
            return fail("--user needs a name.")
        settings = dataclasses.replace(settings, user=args.user.strip())
    if args.command == "ask":
        if not model_configured(settings):
            return fail(NO_MODEL)
        if args.thread is not None and not valid_thread_id(args.thread):
            return fail("--thread takes the id of a conversation: letters, digits, '-' and '_' only.")
    try:
        core = Sidekick(settings).start(warm=False)
    except ConfigError as exc:
        return fail(str(exc))
    except SidekickError as exc:
        return fail(str(exc), EXIT_FAILED)
    try:
        if args.command == "conversations":
            return list_conversations(core, as_json=args.json)
        if args.command == "tools":
            return list_tools(core, as_json=args.json)
        if args.command == "export":
            return export(core, args)
        return ask(core, args)
    finally:
        core.close()


def list_conversations(core: Sidekick, *, as_json: bool) -> int:
    for c in core.conversations():
        if as_json:
            print(json.dumps({"thread_id": c.thread_id, "title": c.title, "updated": c.updated}))
        else:
            print(f"{c.thread_id}  {c.title}")
    return 0


def export(core: Sidekick, args: argparse.Namespace) -> int:
    if not valid_thread_id(args.thread):
        return fail("export takes the id of a conversation: letters, digits, '-' and '_' only.")
    target: Path = args.html or args.json
    try:
        text = core.export(args.thread, fmt="html" if args.html else "json")
    except SidekickError as exc:
        return fail(str(exc), EXIT_FAILED)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {target}: {exc.strerror or exc}", EXIT_FAILED)
    print(f"Wrote {target} ({len(text.encode()):,} bytes).")
    return EXIT_OK


def list_tools(core: Sidekick, *, as_json: bool) -> int:
    for name, on, why in core.tools("cli", discover=True):
        if as_json:
            print(json.dumps({"tool": name, "on": on, "why": why}))
        else:
            print(f"{'on ' if on else 'off'}  {name}" + (f"  ({why})" if why else ""))
    return EXIT_OK


def ask(core: Sidekick, args: argparse.Namespace) -> int:
    session = "cli"
    thread = args.thread or new_thread_id()
    if args.screenshots:
        try:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail(f"--screenshots: cannot use {args.screenshots}: {exc.strerror or exc}")
    deadline = time.monotonic() + core.settings.turn_timeout_seconds + WAIT_MARGIN_SECONDS
    outcome = "error"
    shots = 0
    try:
        handle: RunHandle | None = core.start_run(session, args.message, args.criteria, thread)
        while handle is not None:
            current, handle = handle, None
            approved: bool | None = None
            for event in current.iter_events(deadline=deadline):
                if isinstance(event, ev.Screenshot) and args.screenshots:
                    shots += 1
                    (args.screenshots / f"{shots:03d}.png").write_bytes(event.png)
                show(event, sys.stdout, as_json=args.json)
                if isinstance(event, ev.ApprovalNeeded):
                    approved = decide(event, auto=args.yes)
                if isinstance(event, ev.Finished):
                    outcome = event.outcome
            if approved is not None:  # the paused run has ended: go on with the answer
                handle = core.answer_approval(session, thread, approved)
    except TimeoutError:
        core.cancel_run(session)
        return fail("The run did not report its end in time and was stopped.", EXIT_FAILED)
    except KeyboardInterrupt:
        core.cancel_run(session)
        return fail("Stopped.", EXIT_FAILED)
    except SidekickError as exc:
        core.cancel_run(session)
        return fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        core.cancel_run(session)
        return fail(f"--screenshots: could not save a screenshot: {exc.strerror or exc}", EXIT_FAILED)
    if not args.json:
        print(f"\n(conversation {thread}; continue with --thread {thread})")
    return EXIT_OK if outcome in ("answer", "question") else EXIT_FAILED


def decide(event: ev.ApprovalNeeded, *, auto: bool) -> bool:
    if auto:
        return True
    if not sys.stdin.isatty():
        print("Denied (no terminal to ask; use --yes to approve).", file=sys.stderr)
        return False
    try:
        reply = input(f"Allow {event.name}({json.dumps(event.args)[:200]})? [y/N] ")
    except EOFError:  # input ended (Ctrl-D): nobody said yes
        print("\nDenied.", file=sys.stderr)
        return False
    return reply.strip().lower() in ("y", "yes")


# How the terminal shows the events that need only their fields; the others are made in show(), and
# an AnswerDelta shows nothing (the whole answer is printed when it is final).
_LINES: dict[type[ev.Event], str] = {
    ev.RunStarted: "▶ {e.message:.100}",
    ev.Blocked: "    ⛔ blocked {e.url:.100}: {e.reason}",
    ev.ApprovalNeeded: "  ? approval needed for {e.name}",
    ev.FinalAnswer: "\n{e.text}",
    ev.Question: "\nQuestion: {e.text}",
    ev.Cancelled: "{e.reason}",
    ev.Finished: "\n({e.seconds:.1f} s, {e.model_calls} model calls, {e.tokens} tokens)",
}


def show(event: ev.Event, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(event.to_json(), ensure_ascii=False, default=str) + "\n")
        out.flush()
        return
    template = _LINES.get(type(event))
    line = None if template is None else template.format(e=event)
    match event:
        case ev.ToolCall():
            line = f"  → {event.name}({json.dumps(event.args, ensure_ascii=False)[:120]})"
        case ev.ToolResult():
            first = event.output.strip().splitlines()[0][:120] if event.output.strip() else ""
            line = f"    {'✓' if event.ok else '✗'} {first}"
        case ev.Screenshot():
            line = f"    [screenshot] {event.title or '(untitled)'} — {event.url}"
        case ev.Verdict():
            marks = ", ".join(f"{'✓' if c.met else '✗'} {c.criterion}" for c in event.checks)
            line = f"  review {event.round}: {marks}" + ("" if event.success else f" — {event.feedback}")
        case ev.ErrorEvent():
            print(f"error: {event.message}", file=sys.stderr)
    if line is not None:
        out.write(line + "\n")
        out.flush()
