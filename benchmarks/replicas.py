"""Many sessions at once across dashboard replicas: the team deployment under load.

Run from the project root::

    python -m benchmarks.replicas                    # a table
    python -m benchmarks.replicas --json             # one JSON object on stdout
    python -m benchmarks.replicas --sessions 10 --replicas 2
    python -m benchmarks.replicas --no-baseline      # skip the one-replica comparison

The deployment is the README's recipe, started as ``tests/e2e/test_replicas.py`` starts it: a
throwaway PostgreSQL cluster (``tests.support.postgres``), ``--replicas`` real ``streamlit run``
processes sharing its database (``tests.support.dashboard``), and the real nginx in front
(``tests.support.replicas.Balancer``, rendered from ``deploy/nginx.conf``: websockets upgraded,
sticky by a cookie that nginx sets on a tab's first request). The model is the fake OpenAI-compatible
server (``tests.support.fakes``, answering at once); the pages are a local site. This process's own
Chromium plays the people: one browser context (one person, one cookie) per session.

A session opens the dashboard through nginx, which picks its replica, and asks for the code on a
local page of its own; the model navigates there and answers with the code it read in the tool
result. Its *run time* is Enter → that answer on screen with the chat box enabled again (the run and
its review are over). A session has an *error* when anything differs: a wait times out, the page
shows an error box, a tool result is an error, the answer is not the page's code.

Every wave runs all sessions at once (``wall`` is the wave's first tab opened → last task finished):

1. tasks, then every tab clicks Reset: *leaked after Reset*;
2. tasks again (new conversations), then every tab is closed: *leaked after tab close*.

Both waves run through the balancer of all replicas, and, as the baseline in the same run, through
a balancer whose only upstream is replica 0 (the same sessions on one replica); the ratios are all
replicas ÷ one. Last, on all replicas:

3. tasks once more, tabs left open, then every replica gets SIGTERM: *leaked after SIGTERM*.

Leaked browser processes are counted per replica, only among the Chromium and Playwright-driver
processes that descend from that replica's PID (``sidekick.procs``): after Reset or tab close, how
many it has above its count with no session once the count stops falling (within 30 s; one renderer
above it is not counted: Chromium keeps a spare renderer of its own for the next page, which comes
and goes with no session open, while every session's context has renderers of its own); after
SIGTERM, how many of the replica's browser processes are still alive 5 s after it exited. The count
with no session is read after a warm-up session on each replica (a task, then Reset: Chromium, its
driver and a refilled warm spare), once it has not changed for 2 s; a process left by one wave
counts there, not again in later ones.

The exit code is 0 whatever the figures: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect

from benchmarks import cli
from benchmarks.cli import p95, ratio, sig
from tests.support.child import is_alive
from tests.support.dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ERROR,
    DashboardServer,
    open_app,
    rerun,
    sidekick_server,
    stable_process_count,
)
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.postgres import postgres_cluster
from tests.support.replicas import Balancer, cookie_for, nginx_binary
from tests.support.runs import verdict

CHAT_INPUT = "[data-testid='stChatInputTextArea']"
VIEWPORT = ViewportSize(width=1280, height=900)
STEP_TIMEOUT = 120.0  # seconds for any one wait of a session; a hang is an error, not a data point
FREED_TIMEOUT = 30.0  # seconds for a replica's browser processes to fall back after Reset / tab close
SIGTERM_TIMEOUT = 20.0  # seconds a replica may take to exit on SIGTERM before it is killed
EXITED_TIMEOUT = 5.0  # seconds its browser processes may outlive it
URL = re.compile(r"http://127\.0\.0\.1:\d+/task/[\w-]+")
CODE = re.compile(r"\bcode-[0-9a-f]{8}\b")
TASK_PAGE = """<html><head><title>Task {name}</title></head>
<body><h1>Task {name}</h1><p>The code of this page is {code}.</p></body></html>"""

log = cli.logger("replicas")


# -- the model: one stateless planner for every session at once -----------------------------------
class Planner:
    """The fake model's ``handler``: navigate to the URL in the user's message, then answer with the
    code the tool result shows; the evaluator accepts. It decides from the request alone, so any
    number of sessions may ask at once. Tool results that are errors are kept (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[str] = []

    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def __call__(self, request: dict[str, Any]) -> Reply:
        if request.get("response_format") is not None:
            return verdict(True)
        messages: list[dict[str, Any]] = request["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        asked = URL.search(str(messages[last_user].get("content")))
        results = [str(m.get("content")) for m in messages[last_user + 1 :] if m["role"] == "tool"]
        if asked is None:
            return Reply.text("There is no page to read in your message.")
        if not results:
            return Reply.tool_call("navigate", {"url": asked.group()})
        if results[-1].startswith("Error"):
            with self._lock:
                self._errors.append(f"{asked.group()}: {results[-1][:300]}")
        found = CODE.search(results[-1])
        return Reply.text(f"The code is {found.group()}." if found else "I could not read the code.")


# -- results ----------------------------------------------------------------------------------------
@dataclass
class Session:
    """One person's tab: where nginx sent it, and how its task went."""

    context: BrowserContext
    page: Page | None = None
    replica: str = ""  # host:port of the replica nginx chose
    run_s: float | None = None
    error: str | None = None


@dataclass
class Wave:
    sessions: list[Session]
    wall_s: float
    leaked: dict[str, int] = field(default_factory=dict)  # replica → processes above its baseline

    @property
    def errors(self) -> list[str]:
        return [f"{s.replica or '?'}: {s.error}" for s in self.sessions if s.error is not None]


@dataclass
class Stopped:
    """One replica's SIGTERM: its exit code, whether it had to be killed, its browsers still alive."""

    code: int | None
    killed: bool
    leaked: int


@dataclass
class Results:
    sessions: int
    replicas: list[str]  # host:port of each replica, replica 0 first
    baseline: dict[str, Count] = field(default_factory=dict)  # replica → browser processes, no session
    spread: list[Wave] = field(default_factory=list)  # waves on every replica
    single: list[Wave] = field(default_factory=list)  # the same waves on replica 0 alone
    last: Wave | None = None  # the wave before SIGTERM
    stopped: dict[str, Stopped] = field(default_factory=dict)
    leases_left: int | None = None
    model_errors: list[str] = field(default_factory=list)
    tracebacks: dict[str, str] = field(default_factory=dict)  # replica → the last one in its log


# -- one session ------------------------------------------------------------------------------------
async def run_task(session: Session, url: str, site: LocalSite, balancer: Balancer) -> None:
    """Open the dashboard through ``balancer`` in the session's context and run one task there."""
    try:
        name = secrets.token_hex(4)
        code = f"code-{secrets.token_hex(4)}"
        site.route(f"/task/{name}", TASK_PAGE.format(name=name, code=code))
        session.page = page = await open_app(session.context, url, timeout=STEP_TIMEOUT)
        cookies = await session.context.cookies(url)
        route = next(c["value"] for c in cookies if c.get("name") == "sidekick_replica")
        session.replica = await asyncio.to_thread(balancer.replica_of, route)
        box = page.locator(CHAT_INPUT)
        await expect(box).to_be_enabled(timeout=STEP_TIMEOUT * 1000)
        await box.fill(f"Open {site.url(f'/task/{name}')} and tell me the code it shows.")
        started = time.perf_counter()
        await box.press("Enter")
        await expect(page.get_by_text(f"The code is {code}.", exact=True)).to_be_visible(timeout=STEP_TIMEOUT * 1000)
        await expect(box).to_be_enabled(timeout=STEP_TIMEOUT * 1000)
        session.run_s = time.perf_counter() - started
        if await page.locator(ERROR).count():
            session.error = "error box: " + (await page.locator(ERROR).first.inner_text())[:300]
    except Exception as exc:  # any failure is this session's error, reported with the figures
        session.error = describe(exc)


def describe(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"


async def wave(
    browser: Browser, stack: contextlib.AsyncExitStack, balancer: Balancer, site: LocalSite, sessions: int
) -> Wave:
    """``sessions`` new people run a task at once through ``balancer``; their contexts stay open
    (closed by ``stack`` at the latest)."""
    contexts = [await browser.new_context(viewport=VIEWPORT) for _ in range(sessions)]
    for context in contexts:
        stack.push_async_callback(_close_context, context)
    people = [Session(context) for context in contexts]
    began = time.perf_counter()
    await asyncio.gather(*(run_task(s, balancer.url, site, balancer) for s in people))
    return Wave(people, time.perf_counter() - began)


async def _close_context(context: BrowserContext) -> None:
    with contextlib.suppress(Exception):  # closing twice, or a browser already gone, is fine
        await context.close()


async def reset(session: Session) -> None:
    if session.page is None:
        return
    try:
        button = session.page.get_by_role("button", name="Reset", exact=True)
        await rerun(session.page, button.click, timeout=STEP_TIMEOUT)
    except Exception as exc:
        session.error = session.error or f"Reset: {describe(exc)}"


# -- the replicas' processes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Count:
    """A replica's browser processes: renderers, and the rest (Chromium, zygotes, GPU, network,
    storage, the Playwright driver)."""

    renderers: int
    others: int

    def above(self, base: Count) -> int:
        """Processes more than ``base`` has, not counting one renderer: Chromium keeps a spare
        renderer of its own for the next page, which comes and goes with no session open."""
        return max(0, self.others - base.others) + max(0, self.renderers - base.renderers - 1)

    def __add__(self, extra: Count) -> Count:
        return Count(self.renderers + extra.renderers, self.others + extra.others)


def count(server: DashboardServer) -> Count:
    renderers = others = 0
    for proc in server.browser_processes().procs:
        try:
            renderer = "--type=renderer" in psutil.Process(proc.pid).cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        renderers, others = renderers + renderer, others + (not renderer)
    return Count(renderers, others)


async def leaked_after_freeing(server: DashboardServer, base: Count) -> Count:
    """What the replica holds above ``base`` once it has freed its sessions' processes (or after
    ``FREED_TIMEOUT``): renderers beyond Chromium's one spare, and any other process."""
    deadline = time.monotonic() + FREED_TIMEOUT
    while (now := await asyncio.to_thread(count, server)).above(base) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return Count(max(0, now.renderers - base.renderers - 1), max(0, now.others - base.others))


async def leaked_per_replica(servers: dict[str, DashboardServer], now: dict[str, Count]) -> dict[str, int]:
    """Each replica's leaked processes once it has freed its sessions; ``now`` (its processes with no
    session) then includes them, so a process that stays is counted in the wave that left it, once."""
    found = await asyncio.gather(*(leaked_after_freeing(s, now[name]) for name, s in servers.items()))
    for name, extra in zip(servers, found, strict=True):
        now[name] += extra
    return {name: extra.renderers + extra.others for name, extra in zip(servers, found, strict=True)}


def sigterm(server: DashboardServer) -> Stopped:
    """SIGTERM the replica; count its browser processes still alive ``EXITED_TIMEOUT`` s after it exited."""
    procs = []
    for proc in server.browser_processes().procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(proc.pid))
    code = server.stop(signal.SIGTERM, SIGTERM_TIMEOUT)
    deadline = time.monotonic() + EXITED_TIMEOUT
    while any(is_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return Stopped(code, server.killed, sum(is_alive(p) for p in procs))


async def warm_up(browser: Browser, balancer: Balancer, site: LocalSite, server: DashboardServer) -> Count:
    """One session on ``server`` (pinned by its cookie) runs a task and Resets: its core is up
    (Chromium, driver, a refilled warm spare). Its browser processes once the count stops changing,
    the replica's count with no session."""
    assert server.port is not None
    route = await asyncio.to_thread(cookie_for, balancer, server.port)
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        await context.add_cookies([{"name": "sidekick_replica", "value": route, "url": balancer.url}])
        session = Session(context)
        await run_task(session, balancer.url, site, balancer)
        await reset(session)
        if session.error is not None:
            raise RuntimeError(f"the warm-up session on {session.replica} failed: {session.error}")
    finally:
        await _close_context(context)
    await asyncio.sleep(1.0)  # its tab is gone: let the replica release the session
    await stable_process_count(server)
    return await asyncio.to_thread(count, server)


def last_traceback(log: str, lines: int = 12) -> str:
    """The end of the last Python traceback in a replica's log ('' if none): what an error box hides."""
    start = log.rfind("Traceback (most recent call last)")
    return "" if start < 0 else "\n".join(log[start:].splitlines()[-lines:])


async def leases_left(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
        row = await (await conn.execute("SELECT count(*) FROM sidekick_leases")).fetchone()
        return int(row[0]) if row else 0


# -- the run ----------------------------------------------------------------------------------------
async def measure(sessions: int, replicas: int, with_baseline: bool) -> Results:
    planner = Planner()
    with (
        tempfile.TemporaryDirectory(prefix="sidekick-replicas-") as tmp,
        postgres_cluster() as cluster,
        LocalSite() as site,
        FakeOpenAI() as llm,
    ):
        llm.handler = planner
        database = cluster.create_database("replicas")
        servers = [
            sidekick_server(
                Path(tmp) / f"replica-{i}",
                OPENAI_BASE_URL=llm.base_url,
                OPENAI_API_KEY="test",
                SIDEKICK_MODEL_RETRIES="0",
                SIDEKICK_DATABASE_URL=database,
            )
            for i in range(replicas)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for server in servers:
                stack.push_async_callback(asyncio.to_thread, server.close)
            log(f"starting {replicas} replicas on one PostgreSQL database…")
            await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
            ports = [s.port for s in servers if s.port is not None]
            named = {f"127.0.0.1:{port}": server for port, server in zip(ports, servers, strict=True)}
            results = Results(sessions, list(named))
            every = stack.enter_context(Balancer(ports))
            one = stack.enter_context(Balancer(ports[:1])) if with_baseline else every
            playwright = await async_playwright().start()
            stack.push_async_callback(playwright.stop)
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            stack.push_async_callback(browser.close)

            log("warming up: one session on each replica…")
            counts = await asyncio.gather(*(warm_up(browser, every, site, s) for s in servers))
            results.baseline = dict(zip(named, counts, strict=True))
            now = dict(results.baseline)  # what each replica holds with no session, leaks included

            rounds = [("all replicas", every, results.spread), ("replica 0", one, results.single)]
            for label, balancer, waves in rounds[: 2 if with_baseline else 1]:
                async with contextlib.AsyncExitStack() as tabs:
                    log(f"{sessions} sessions at once on {label}, then Reset…")
                    first = await wave(browser, tabs, balancer, site, sessions)
                    await asyncio.gather(*(reset(s) for s in first.sessions))
                    first.leaked = await leaked_per_replica(named, now)
                    waves.append(first)
                async with contextlib.AsyncExitStack() as tabs:
                    log(f"{sessions} sessions at once on {label}, then the tabs close…")
                    second = await wave(browser, tabs, balancer, site, sessions)
                await asyncio.sleep(1.0)  # the replicas notice a closed tab within their grace second
                second.leaked = await leaked_per_replica(named, now)
                waves.append(second)

            async with contextlib.AsyncExitStack() as tabs:
                log(f"{sessions} sessions at once on all replicas, then SIGTERM to every replica…")
                results.last = await wave(browser, tabs, every, site, sessions)
                stopped = await asyncio.gather(*(asyncio.to_thread(sigterm, s) for s in servers))
                results.stopped = dict(zip(named, stopped, strict=True))
            results.leases_left = await leases_left(database)
            results.model_errors = planner.errors()
            results.tracebacks = {name: last_traceback(server.output()) for name, server in named.items()}
            log("stopping…")
    return results


# -- reporting --------------------------------------------------------------------------------------
def _median(values: Sequence[float]) -> float | None:
    return sig(statistics.median(values)) if values else None


def summary(waves: Sequence[Wave]) -> dict[str, Any]:
    runs = [s.run_s for w in waves for s in w.sessions if s.run_s is not None]
    return {
        "sessions_per_replica": dict(Counter(s.replica or "?" for w in waves for s in w.sessions)),
        "errors": sum(len(w.errors) for w in waves),
        "wall_s_median": _median([w.wall_s for w in waves]),
        "run_s_median": _median(runs),
        "run_s_p95": sig(p95(runs)) if runs else None,
        "samples": len(runs),
    }


def report(results: Results) -> dict[str, Any]:
    spread, single = summary(results.spread), summary(results.single) if results.single else None
    last = summary([results.last] if results.last else [])
    leaked = {
        "after_reset": _per_replica(results, [*results.spread, *results.single][::2]),
        "after_tab_close": _per_replica(results, [*results.spread, *results.single][1::2]),
        "after_sigterm": {name: s.leaked for name, s in results.stopped.items()},
    }
    waves = [*results.spread, *results.single, *([results.last] if results.last else [])]
    errors = [e for w in waves for e in w.errors]
    total_errors = len(errors) + len(results.model_errors)
    total_leaked = sum(n for phase in leaked.values() for n in phase.values())
    # uvicorn (which serves the st.App) shuts down gracefully on SIGTERM, then re-raises it: a clean stop
    # ends by the signal.
    clean_exit = all(s.code in (0, -signal.SIGTERM) and not s.killed for s in results.stopped.values())
    return {
        "sessions": results.sessions,
        "replicas": len(results.replicas),
        "baseline_processes": {name: c.renderers + c.others for name, c in results.baseline.items()},
        "all_replicas": spread,
        "one_replica": single,
        "before_sigterm": last,
        "ratios": {
            "wall_all_over_one": ratio(spread["wall_s_median"], single["wall_s_median"] if single else None),
            "run_median_all_over_one": ratio(spread["run_s_median"], single["run_s_median"] if single else None),
        },
        "leaked_processes": leaked,
        "sigterm": {name: {"exit_code": s.code, "killed": s.killed} for name, s in results.stopped.items()},
        "leases_left": results.leases_left,
        "errors": total_errors,
        "error_messages": (errors + results.model_errors)[:10],
        "replica_tracebacks": {name: text for name, text in results.tracebacks.items() if text} if errors else {},
        "targets": {
            "zero_errors": total_errors == 0,
            "zero_leaked_processes": total_leaked == 0,
            "clean_sigterm_exits": clean_exit and len(results.stopped) == len(results.replicas),
            "zero_leases_left": results.leases_left == 0,
        },
    }


def _per_replica(results: Results, waves: Sequence[Wave]) -> dict[str, int]:
    return {name: sum(w.leaked.get(name, 0) for w in waves) for name in results.replicas}


def table(data: dict[str, Any]) -> str:
    def row(label: str, figures: dict[str, Any]) -> str:
        spread = " / ".join(f"{n}" for _, n in sorted(figures["sessions_per_replica"].items()))
        return (
            f"{label:<22}{spread:>14}{figures['errors']:>8}{_fmt(figures['wall_s_median']):>10}"
            f"{_fmt(figures['run_s_median']):>10}{_fmt(figures['run_s_p95']):>10}{figures['samples']:>6}"
        )

    leaked = data["leaked_processes"]
    replicas = list(data["baseline_processes"])
    ratios = data["ratios"]
    return cli.text(
        f"{data['sessions']} sessions at once, {data['replicas']} replicas on one PostgreSQL behind nginx "
        "(waves: Reset, tab close; medians over the waves)",
        f"{'':<22}{'per replica':>14}{'errors':>8}{'wall s':>10}{'run s':>10}{'p95 s':>10}{'n':>6}",
        [
            row("all replicas", data["all_replicas"]),
            *([row("one replica (baseline)", data["one_replica"])] if data["one_replica"] else []),
            row("before SIGTERM", data["before_sigterm"]),
        ],
        [
            f"ratios all/one: wall {_fmt(ratios['wall_all_over_one'])}, run median "
            f"{_fmt(ratios['run_median_all_over_one'])}",
            "browser processes with no session per replica ("
            + ", ".join(replicas)
            + "): "
            + " / ".join(str(n) for n in data["baseline_processes"].values()),
            f"leaked browser processes per replica ({', '.join(replicas)}): "
            + "; ".join(
                f"{phase.replace('_', ' ')} {' / '.join(str(n) for n in leaked[phase].values())}" for phase in leaked
            ),
            "SIGTERM: "
            + ", ".join(f"{r} exit {s['exit_code']}{' (killed)' * s['killed']}" for r, s in data["sigterm"].items())
            + f"; leases left {data['leases_left']}",
            *(f"error: {e}" for e in data["error_messages"]),
            *(f"{name} logged:\n{text}" for name, text in data["replica_tracebacks"].items()),
            cli.targets(data["targets"]),
        ],
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("replicas", "Many sessions at once across dashboard replicas behind nginx, one PostgreSQL.")
    parser.add_argument("--sessions", type=cli.at_least(1), default=10, help="sessions running a task at once")
    parser.add_argument("--replicas", type=cli.at_least(2), default=2, help="dashboard replicas behind nginx")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the same waves on replica 0 alone, for the ratios (default: yes)",
    )
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    if nginx_binary() is None:
        raise SystemExit("nginx is not installed (scripts/ensure_nginx.sh installs it)")
    return report(asyncio.run(measure(args.sessions, args.replicas, args.baseline)))


if __name__ == "__main__":
    import sys

    sys.exit(cli.main(parser(), run, table))
