"""Checkpoint cost per agent step: PostgreSQL against SQLite, in one run.

Run from the project root::

    python -m benchmarks.checkpoints                  # a table
    python -m benchmarks.checkpoints --json           # one JSON object on stdout
    python -m benchmarks.checkpoints --steps 40 --kb 8 --rounds 10
    python -m benchmarks.checkpoints --url postgresql://…   # an existing (empty) database

An agent step is one LangGraph superstep: a node runs, the graph saves what it wrote
(``aput_writes``) and the new checkpoint (``aput``), and the next step or turn reads the latest
checkpoint back (``aget_tuple``). The calls are the graph's own: a real ``StateGraph`` (worker →
tools → worker …, each tool result ``--kb`` KB of page text, so the thread grows as a run's does) runs
once on LangGraph's in-memory saver, and its history (each checkpoint with the versions that changed
and the writes its tasks left) is replayed, identically, on each store's own checkpointer as
Sidekick opens it: :class:`~sidekick.store.SqliteStore` (WAL, ``synchronous=NORMAL``) and
:class:`~sidekick.store.postgres.PostgresStore` (its pool, bounds and error mapping included), plus
a second SQLite file at ``synchronous=FULL``. Each step is timed as write (its writes + its
checkpoint) and read (the latest checkpoint, checked to be the one just written).

Fair and stable: one unmeasured round first (connections, prepared statements, first pages), then
``--rounds`` measured ones on fresh threads, interleaved step by step (every store does step k
before any does step k+1, the first store turning with k), so the machine's drift meets every store
alike; figures are medians over all steps, and the ratio is also given round by round.

What differs between the stores is not the work but where it happens. PostgreSQL, a throwaway
local cluster (``tests.support.postgres``) with the server's default ``synchronous_commit=on``,
flushes its WAL to disk at every commit, two per step (the writes, the checkpoint), and is another
process, met about three times per step. Sidekick's SQLite runs in this process and never flushes
at commit (WAL with NORMAL survives a crash of the application, not of the machine). Both costs
are the machine's at that moment: on a quiet one a flush is a fraction of a millisecond and a round
trip about 0.15 ms; on one busy with other work (a shared 2-core machine at a load of 10–40) the
flushes alone took 5–6 ms of a PostgreSQL step (a run at ``synchronous_commit=off`` was that much
faster, its reads about the same) and each round trip waits for the server to be scheduled. So
PostgreSQL ÷ SQLite follows the machine's load (1.5–2.5× nearly idle, up to 9× loaded), while
SQLite's figures barely move. SQLite FULL does the same flushes in-process: PostgreSQL ÷ SQLite FULL
is the like-for-like ratio. Over a network, add the round trips to PostgreSQL's figures.

Reported: medians per step (write, read, both) per store, the ratios PostgreSQL / SQLite and
PostgreSQL / SQLite FULL (overall and per round), the load average, and the target
(``postgres_step/sqlite_step <= 2``). The exit code is 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph

from benchmarks import cli
from benchmarks.cli import ratio, sig
from sidekick.store import BaseStore, SqliteStore
from sidekick.store.postgres import PostgresStore
from tests.support.postgres import postgres_cluster

RATIO_TARGET = 2.0
STORES = ("sqlite", "sqlite_full", "postgres")


# -- recording what the graph writes -------------------------------------------------------------
@dataclass
class Step:
    """One superstep's calls: the writes of the tasks that ran, then the checkpoint they made."""

    writes: list[tuple[RunnableConfig, list[tuple[str, Any]], str]]  # (config, writes, task id)
    put: tuple[RunnableConfig, Checkpoint, CheckpointMetadata, ChannelVersions]


async def history(saver: BaseCheckpointSaver[Any], thread_id: str) -> list[Step]:
    """The calls that made a thread's checkpoints, read back from ``saver`` oldest first.

    Each checkpoint comes with the writes its tasks left (the next step's ``aput_writes``, one call
    per task) and its channel versions; the versions that changed since its parent are what the
    graph passed to ``aput`` as ``new_versions``.
    """
    saved = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}})][::-1]
    steps: list[Step] = []
    parent: CheckpointTuple | None = None
    for tup in saved:
        writes: list[tuple[RunnableConfig, list[tuple[str, Any]], str]] = []
        if parent is not None:
            by_task: dict[str, list[tuple[str, Any]]] = {}
            for task_id, channel, value in parent.pending_writes or []:
                by_task.setdefault(task_id, []).append((channel, value))
            writes = [(parent.config, task_writes, task_id) for task_id, task_writes in by_task.items()]
        before = parent.checkpoint["channel_versions"] if parent is not None else {}
        versions = {k: v for k, v in tup.checkpoint["channel_versions"].items() if before.get(k) != v}
        config = (
            parent.config if parent is not None else {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        )
        steps.append(Step(writes, (config, tup.checkpoint, tup.metadata, versions)))
        parent = tup
    return steps


async def record_run(steps: int, kb: float) -> list[Step]:
    """A real graph's run of ``steps`` supersteps, as the calls its checkpointer received."""
    page = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 64)[: round(kb * 1024)]

    def worker(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        call = {"id": f"call-{n}", "name": "read_page", "args": {"url": f"https://example.test/{n}"}}
        return {"messages": [AIMessage("", tool_calls=[call])]}

    def tools(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage) and last.tool_calls
        return {"messages": [ToolMessage(page, tool_call_id=last.tool_calls[0]["id"])]}

    def more(state: MessagesState) -> str:
        return "tools" if len(state["messages"]) < steps else END

    graph = StateGraph(MessagesState)
    graph.add_node("worker", worker)
    graph.add_node("tools", tools)
    graph.add_edge(START, "worker")
    graph.add_conditional_edges("worker", more, ["tools", END])
    graph.add_edge("tools", "worker")
    saver = InMemorySaver()
    compiled = graph.compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "recorded"}, "recursion_limit": steps + 10}
    await compiled.ainvoke(MessagesState(messages=[HumanMessage("Read the pages.")]), config, durability="sync")
    return await history(saver, "recorded")


# -- replaying it on each store -------------------------------------------------------------------
def on_thread(config: RunnableConfig, thread_id: str) -> RunnableConfig:
    return {**config, "configurable": {**config.get("configurable", {}), "thread_id": thread_id}}


async def timed_step(saver: BaseCheckpointSaver[Any], step: Step, thread_id: str) -> tuple[float, float]:
    """(write, read) seconds of one step replayed on ``thread_id``: its writes and checkpoint, then
    the latest checkpoint read back (which must be the one just written)."""
    config, checkpoint, metadata, versions = step.put
    began = time.perf_counter()
    for w_config, writes, task_id in step.writes:
        await saver.aput_writes(on_thread(w_config, thread_id), writes, task_id)
    await saver.aput(on_thread(config, thread_id), checkpoint, metadata, versions)
    wrote = time.perf_counter()
    found = await saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    read = time.perf_counter()
    assert found is not None and found.checkpoint["id"] == checkpoint["id"], "read back another checkpoint"
    return wrote - began, read - wrote


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with postgres_cluster() as cluster:
        yield cluster.create_database("bench")


log = cli.logger("checkpoints")

Samples = dict[str, list[list[tuple[float, float]]]]  # store → rounds → (write, read) per step


async def open_savers(stack: contextlib.AsyncExitStack, folder: Path, url: str) -> dict[str, BaseCheckpointSaver[Any]]:
    """Each store's checkpointer as Sidekick opens it, and SQLite once more flushing every commit."""
    stores: dict[str, BaseStore] = {
        "sqlite": await stack.enter_async_context(SqliteStore(folder / "sidekick.sqlite")),
        "sqlite_full": await stack.enter_async_context(SqliteStore(folder / "full" / "sidekick.sqlite")),
        "postgres": await stack.enter_async_context(PostgresStore(url)),
    }
    savers = {name: store.checkpointer for name, store in stores.items() if store.checkpointer is not None}
    full = savers["sqlite_full"]
    assert isinstance(full, AsyncSqliteSaver)
    async with full.lock:
        await full.conn.execute("PRAGMA synchronous=FULL")
    return savers


async def measure(steps: int, kb: float, rounds: int, url: str) -> Samples:
    recorded = await record_run(steps, kb)
    log(f"recorded {len(recorded)} steps of a real graph; replaying 1 + {rounds} rounds on every store…")
    samples: Samples = {name: [] for name in STORES}
    with tempfile.TemporaryDirectory(prefix="sidekick-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            savers = await open_savers(stack, Path(tmp), url)
            # Round 0 is not measured: first connections, prepared statements, first pages of each table.
            for r in range(rounds + 1):
                timings: dict[str, list[tuple[float, float]]] = {name: [] for name in STORES}
                for k, step in enumerate(recorded):
                    # Every store does step k before any does step k+1, each on its own thread, the
                    # first store turning with k: drift on the machine meets them all alike.
                    for name in STORES[k % len(STORES) :] + STORES[: k % len(STORES)]:
                        timings[name].append(await timed_step(savers[name], step, f"round-{r}"))
                if r > 0:
                    for name in STORES:
                        samples[name].append(timings[name])
    return samples


# -- reporting ------------------------------------------------------------------------------------
def ms(seconds: float) -> float:
    return sig(seconds * 1000)


def summary(rounds: list[list[tuple[float, float]]]) -> dict[str, Any]:
    timings = [t for one in rounds for t in one]
    both = [w + r for w, r in timings]
    return {
        "samples": len(timings),
        "write_ms": ms(statistics.median(w for w, _ in timings)),
        "read_ms": ms(statistics.median(r for _, r in timings)),
        "step_ms": ms(statistics.median(both)),
        "step_p90_ms": ms(statistics.quantiles(both, n=10)[-1]) if len(both) >= 2 else ms(both[0]),
    }


def round_ratios(samples: Samples, over: str) -> list[float]:
    """PostgreSQL's median step ÷ ``over``'s, round by round: how much the ratio moves within a run."""
    return [
        sig(statistics.median(w + r for w, r in pg) / statistics.median(w + r for w, r in base))
        for pg, base in zip(samples["postgres"], samples[over], strict=True)
    ]


def report(samples: Samples, steps: int, kb: float, rounds: int, load: tuple[float, float]) -> dict[str, Any]:
    figures = {name: summary(samples[name]) for name in STORES}
    postgres, ratios = figures["postgres"], dict[str, Any]()
    for over in ("sqlite", "sqlite_full"):
        for key in ("step", "write", "read"):
            ratios[f"{key}_postgres_over_{over}"] = ratio(postgres[f"{key}_ms"], figures[over][f"{key}_ms"])
        each = round_ratios(samples, over)
        ratios[f"step_postgres_over_{over}_rounds"] = [min(each), max(each)]
    step_ratio = ratios["step_postgres_over_sqlite"]
    return {
        "steps": steps,
        "page_kb": kb,
        "rounds": rounds,
        **figures,
        "ratios": ratios,
        "load_average": list(load),
        "targets": {f"postgres/sqlite<={RATIO_TARGET:g}": step_ratio is not None and step_ratio <= RATIO_TARGET},
    }


def table(data: dict[str, Any]) -> str:
    ratios = data["ratios"]
    rows = [("write (ms)", "write"), ("read (ms)", "read"), ("step (ms)", "step"), ("step p90 (ms)", "step_p90")]

    def row(label: str, key: str) -> str:
        cells = "".join(f"{data[name][key + '_ms']:>14}" for name in STORES)
        if key == "step_p90":
            return f"{label:<16}{cells}"
        return f"{label:<16}{cells}" + "".join(f"{ratios[f'{key}_postgres_over_{o}']:>10}" for o in STORES[:2])

    spread = ", ".join(
        f"{o} {ratios[f'step_postgres_over_{o}_rounds'][0]}–{ratios[f'step_postgres_over_{o}_rounds'][1]}"
        for o in STORES[:2]
    )
    return cli.text(
        f"Checkpoint write + read per agent step: {data['steps']} steps, {data['page_kb']:g} KB tool results, "
        f"{data['rounds']} rounds interleaved step by step (medians)",
        f"{'':<16}{'SQLite':>14}{'SQLite FULL':>14}{'PostgreSQL':>14}{'PG/SQLite':>10}{'PG/FULL':>10}",
        [row(label, key) for label, key in rows],
        [
            f"PostgreSQL's step ÷ SQLite's, per round (lowest–highest): {spread}",
            "SQLite is Sidekick's (WAL, synchronous=NORMAL: no flush at commit); SQLite FULL flushes every commit "
            "to disk, as PostgreSQL does by default",
            f"1-min load average {data['load_average'][0]:.1f} → {data['load_average'][1]:.1f} (start → end)",
            cli.targets(data["targets"]),
        ],
    )


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("checkpoints", "Checkpoint write + read per agent step, PostgreSQL against SQLite.")
    parser.add_argument(
        "--steps", type=cli.at_least(2), default=40, help="supersteps per run (worker, tools, worker, …)"
    )
    parser.add_argument("--kb", type=cli.positive, default=8.0, help="KB of page text in each tool result")
    parser.add_argument("--rounds", type=cli.at_least(1), default=10, help="runs replayed on every store")
    parser.add_argument("--url", help="an existing empty PostgreSQL database (default: a throwaway local cluster)")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    with database(args.url) as url:
        before = os.getloadavg()[0]
        samples = asyncio.run(measure(args.steps, args.kb, args.rounds, url))
    return report(samples, args.steps, args.kb, args.rounds, (before, os.getloadavg()[0]))


if __name__ == "__main__":
    sys.exit(cli.main(parser(), run, table))
