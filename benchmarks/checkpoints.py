"""Checkpoint cost per agent step: PostgreSQL against SQLite, in one run.

Run from the project root::

    python -m benchmarks.checkpoints                  # a table
    python -m benchmarks.checkpoints --json           # one JSON object on stdout
    python -m benchmarks.checkpoints --steps 40 --kb 8 --rounds 5
    python -m benchmarks.checkpoints --url postgresql://…   # an existing (empty) database

An agent step is one LangGraph superstep: a node runs, the graph saves what it wrote
(``aput_writes``) and the new checkpoint (``aput``), and the next step or turn reads the latest
checkpoint back (``aget_tuple``). The calls are the graph's own: a real ``StateGraph`` (worker →
tools → worker …, each tool result ``--kb`` KB of page text, so the thread grows as a run's does) runs
once on LangGraph's in-memory saver, which records every ``aput``/``aput_writes`` it is given. The
recorded calls are then replayed, identically, on each store's own checkpointer as Sidekick opens
it: :class:`~sidekick.store.SqliteStore` (WAL, ``synchronous=NORMAL``) and
:class:`~sidekick.store.postgres.PostgresStore` (its pool, bounds and error mapping included). Each
step is timed as write (its writes + its checkpoint) and read (the latest checkpoint). Rounds
alternate the backends, each on a fresh thread, so drift on the machine hits both alike.

PostgreSQL is a throwaway local cluster (``tests.support.postgres``) with the server's default
durability: every commit is flushed to disk before it returns, as in production. Over a network,
add the round trips (about 4 per step) to its figures.

Reported: medians per step (write, read, both), the ratio PostgreSQL / SQLite, and the target
(``postgres_step/sqlite_step <= 2``). The exit code is 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from benchmarks import cli
from benchmarks.cli import sig
from sidekick.store import BaseStore, SqliteStore
from sidekick.store.postgres import PostgresStore
from tests.support.postgres import postgres_cluster

RATIO_TARGET = 2.0


# -- recording what the graph writes -------------------------------------------------------------
@dataclass
class Step:
    """One superstep's calls, as the graph made them."""

    writes: list[tuple[RunnableConfig, list[tuple[str, Any]], str, str]] = field(default_factory=list)
    put: tuple[RunnableConfig, Checkpoint, CheckpointMetadata, ChannelVersions] | None = None


class Recorder(InMemorySaver):
    """The in-memory saver, keeping a copy of every write it is given, step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = [Step()]

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self.steps[-1].writes.append(copy.deepcopy((config, list(writes), task_id, task_path)))
        await super().aput_writes(config, writes, task_id, task_path)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self.steps[-1].put = copy.deepcopy((config, checkpoint, metadata, new_versions))
        self.steps.append(Step())
        return await super().aput(config, checkpoint, metadata, new_versions)


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
    saver = Recorder()
    compiled = graph.compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "recorded"}, "recursion_limit": steps + 10}
    await compiled.ainvoke({"messages": [("user", "Read the pages.")]}, config, durability="sync")
    return [s for s in saver.steps if s.put is not None]


# -- replaying it on each store -------------------------------------------------------------------
def on_thread(config: RunnableConfig, thread_id: str) -> RunnableConfig:
    return {**config, "configurable": {**config.get("configurable", {}), "thread_id": thread_id}}


async def replay(saver: BaseCheckpointSaver[Any], steps: list[Step], thread_id: str) -> list[tuple[float, float]]:
    """(write, read) seconds of each step, on a fresh thread."""
    latest: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    timings: list[tuple[float, float]] = []
    for step in steps:
        assert step.put is not None
        config, checkpoint, metadata, versions = step.put
        began = time.perf_counter()
        for w_config, writes, task_id, task_path in step.writes:
            await saver.aput_writes(on_thread(w_config, thread_id), writes, task_id, task_path)
        await saver.aput(on_thread(config, thread_id), checkpoint, metadata, versions)
        wrote = time.perf_counter()
        found = await saver.aget_tuple(latest)
        read = time.perf_counter()
        assert found is not None and found.checkpoint["id"] == checkpoint["id"], "read back another checkpoint"
        timings.append((wrote - began, read - wrote))
    return timings


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with postgres_cluster() as cluster:
        yield cluster.create_database("bench")


def log(message: str) -> None:
    print(f"checkpoints: {message}", file=sys.stderr, flush=True)


async def measure(steps: int, kb: float, rounds: int, url: str) -> dict[str, list[tuple[float, float]]]:
    recorded = await record_run(steps, kb)
    log(f"recorded {len(recorded)} steps of a real graph; replaying {rounds} rounds on each store…")
    samples: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgres": []}
    with tempfile.TemporaryDirectory(prefix="sidekick-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            stores: dict[str, BaseStore] = {
                "sqlite": await stack.enter_async_context(SqliteStore(Path(tmp) / "sidekick.sqlite")),
                "postgres": await stack.enter_async_context(PostgresStore(url)),
            }
            # One unmeasured round each: first connections, first pages of each table.
            for name, store in stores.items():
                assert store.checkpointer is not None
                await replay(store.checkpointer, recorded[:3], f"warm-{name}")
            for r in range(rounds):
                order = list(stores.items()) if r % 2 == 0 else list(reversed(stores.items()))
                for name, store in order:
                    assert store.checkpointer is not None
                    samples[name] += await replay(store.checkpointer, recorded, f"round-{r}")
    return samples


# -- reporting ------------------------------------------------------------------------------------
def ms(seconds: float) -> float:
    return sig(seconds * 1000)


def summary(timings: list[tuple[float, float]]) -> dict[str, Any]:
    both = [w + r for w, r in timings]
    return {
        "samples": len(timings),
        "write_ms": ms(statistics.median(w for w, _ in timings)),
        "read_ms": ms(statistics.median(r for _, r in timings)),
        "step_ms": ms(statistics.median(both)),
        "step_p90_ms": ms(statistics.quantiles(both, n=10)[-1]) if len(both) >= 2 else ms(both[0]),
    }


def report(samples: dict[str, list[tuple[float, float]]], steps: int, kb: float, rounds: int) -> dict[str, Any]:
    sqlite, postgres = summary(samples["sqlite"]), summary(samples["postgres"])
    ratio = sig(postgres["step_ms"] / sqlite["step_ms"])
    return {
        "steps": steps,
        "page_kb": kb,
        "rounds": rounds,
        "sqlite": sqlite,
        "postgres": postgres,
        "ratios": {
            "step_postgres_over_sqlite": ratio,
            "write_postgres_over_sqlite": sig(postgres["write_ms"] / sqlite["write_ms"]),
            "read_postgres_over_sqlite": sig(postgres["read_ms"] / sqlite["read_ms"]),
        },
        "targets": {f"postgres/sqlite<={RATIO_TARGET:g}": ratio <= RATIO_TARGET},
    }


def table(data: dict[str, Any]) -> str:
    width = 16
    rows = [("write (ms)", "write_ms"), ("read (ms)", "read_ms"), ("step (ms)", "step_ms"), ("step p90", "step_p90_ms")]
    ratios = data["ratios"]
    return "\n".join(
        [
            f"Checkpoint write + read per agent step: {data['steps']} steps, {data['page_kb']:g} KB tool results, "
            f"{data['rounds']} rounds (medians)",
            "",
            f"{'':<{width}}{'SQLite':>12}{'PostgreSQL':>12}{'ratio':>10}",
            *(
                f"{label:<{width}}{data['sqlite'][key]:>12}{data['postgres'][key]:>12}"
                + (f"{ratios[key.replace('_ms', '_postgres_over_sqlite')]:>10}" if key != "step_p90_ms" else "")
                for label, key in rows
            ),
            "",
            cli.targets(data["targets"]),
        ]
    )


def parser() -> argparse.ArgumentParser:
    parser = cli.parser("checkpoints", "Checkpoint write + read per agent step, PostgreSQL against SQLite.")
    parser.add_argument(
        "--steps", type=cli.at_least(2), default=40, help="supersteps per run (worker, tools, worker, …)"
    )
    parser.add_argument("--kb", type=cli.positive, default=8.0, help="KB of page text in each tool result")
    parser.add_argument("--rounds", type=cli.at_least(1), default=5, help="runs replayed on each store")
    parser.add_argument("--url", help="an existing empty PostgreSQL database (default: a throwaway local cluster)")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    with database(args.url) as url:
        samples = asyncio.run(measure(args.steps, args.kb, args.rounds, url))
    return report(samples, args.steps, args.kb, args.rounds)


if __name__ == "__main__":
    sys.exit(cli.main(parser(), run, table))
