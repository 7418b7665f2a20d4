"""A conversation's run record as one file: a self-contained HTML page, or a JSON document.

The HTML inlines every screenshot as a ``data:`` URI and carries a Content-Security-Policy that
allows nothing but inline styles and ``data:`` images, so it opens anywhere with no network and no
script can run in it (page text from the web is escaped, never markup). The JSON holds the same
record: every event as ``Event.to_json`` writes it, with each screenshot's PNG in base64.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from typing import Any

from sidekick import events as ev
from sidekick.store import RecordedRun

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2.5rem; border-top: 1px solid #ddd; padding-top: 1rem; }
.meta { color: #666; font-size: .85rem; } .step { margin: .4rem 0; } .ok { color: #176a2c; } .bad { color: #a32020; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .5rem; border-radius: 4px; font-size: .8rem; }
figure { margin: .5rem 0; } img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: .8rem; color: #555; }
.answer { background: #eef6ff; padding: .75rem; border-radius: 6px; white-space: pre-wrap; }
"""


def to_json(thread_id: str, title: str, runs: Sequence[RecordedRun]) -> dict[str, Any]:
    """The record as one JSON-able document (screenshots as base64 PNG)."""
    out_runs = []
    for run in runs:
        events = []
        for at, event in zip(run.times, run.events, strict=True):
            data = {"at": at, **event.to_json()}
            if isinstance(event, ev.Screenshot) and event.png:
                data["png_base64"] = base64.b64encode(event.png).decode()
            events.append(data)
        out_runs.append({"run_id": run.run_id, "events": events})
    return {"thread_id": thread_id, "title": title, "exported_at": time.time(), "runs": out_runs}


def to_json_text(thread_id: str, title: str, runs: Sequence[RecordedRun]) -> str:
    return json.dumps(to_json(thread_id, title, runs), ensure_ascii=False, indent=1)


def to_html(thread_id: str, title: str, runs: Sequence[RecordedRun]) -> str:
    """One self-contained page: each turn's request, steps, checks, screenshots, timings and answer."""
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        f"<title>{e(title)} — Sidekick</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1><p class='meta'>Conversation {e(thread_id)} · exported "
        f"{e(time.strftime('%Y-%m-%d %H:%M', time.localtime()))} from Sidekick</p>",
    ]
    for run in runs:
        parts.append(_run_html(run))
    parts.append("</body></html>")
    return "".join(parts)


def _run_html(run: RecordedRun) -> str:
    e = html.escape
    out: list[str] = []
    start = run.times[0] if run.times else 0.0
    results = {r.call_id: r for r in run.events if isinstance(r, ev.ToolResult)}
    for at, event in zip(run.times, run.events, strict=True):
        when = f"<span class='meta'>+{at - start:.1f} s</span>"
        match event:
            case ev.RunStarted() if event.message:
                out.append(f"<h2>{e(event.message)}</h2>")
                out.append(f"<p class='meta'>Success criteria: {e(event.criteria)} · "
                           f"{e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at)))}</p>")
            case ev.RunStarted():
                out.append("<p class='meta'>(continued after an approval)</p>")
            case ev.ToolCall():
                result = results.get(event.call_id)
                mark = "⏳" if result is None else ("✅" if result.ok else "⚠️")
                seconds = f" · {result.seconds:.2f} s" if result is not None else ""
                args = json.dumps(event.args, ensure_ascii=False)
                out.append(f"<div class='step'>{mark} <b>{e(event.name)}</b> <code>{e(args[:300])}</code>"
                           f"{seconds} {when}</div>")
                if result is not None:
                    out.append(f"<pre>{e(result.output[:2000])}</pre>")
            case ev.Screenshot():
                if event.png:
                    data = base64.b64encode(event.png).decode()
                    caption = f"{e(event.title or 'Untitled')} — {e(event.url)} {when}"
                    out.append(f"<figure><img alt='screenshot' src='data:image/png;base64,{data}'>"
                               f"<figcaption>{caption}</figcaption></figure>")
                else:
                    out.append(f"<p class='meta'>(screenshot of {e(event.url)} no longer kept)</p>")
            case ev.Blocked():
                url = e(event.url[:200])
                out.append(f"<div class='step bad'>⛔ blocked <code>{url}</code> — {e(event.reason)}</div>")
            case ev.Verdict():
                out.append(f"<div class='step'><b>Review {event.round}: "
                           f"{'passed' if event.success else 'sent back'}</b> {when}<ul>")
                for check in event.checks:
                    cls, mark = ("ok", "✅") if check.met else ("bad", "❌")
                    out.append(f"<li class='{cls}'>{mark} {e(check.criterion)} — {e(check.evidence)}</li>")
                out.append("</ul>")
                if not event.success and event.feedback:
                    out.append(f"<p class='meta'>Feedback: {e(event.feedback)}</p>")
                out.append("</div>")
            case ev.ApprovalNeeded():
                out.append(f"<div class='step'>✋ approval asked for <b>{e(event.name)}</b></div>")
            case ev.ApprovalAnswered():
                out.append(f"<div class='step'>{'👍 approved' if event.approved else '🚫 denied'}</div>")
            case ev.FinalAnswer():
                note = "" if event.accepted else "<p class='meta'>Best effort: did not pass every check.</p>"
                out.append(f"<div class='answer'>{e(event.text)}</div>{note}")
            case ev.Question():
                out.append(f"<div class='answer'>❓ {e(event.text)}</div>")
            case ev.ErrorEvent():
                out.append(f"<p class='bad'>⚠️ {e(event.message)}</p>")
            case ev.Cancelled():
                out.append(f"<p class='meta'>⏹️ {e(event.reason)}</p>")
            case ev.Finished():
                out.append(f"<p class='meta'>{event.seconds:.1f} s · {event.model_calls} model calls · "
                           f"{event.tokens:,} tokens</p>")
            case ev.Event():
                pass
    return "".join(out)
