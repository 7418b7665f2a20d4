"""The same behaviour on both backends (a real SQLite file, a real PostgreSQL database): the index of
conversations, transcripts from real checkpoints, the run record with its screenshots and their
budget, pruning, deletion, leases, browser states, and what a closed store says.

"Another server" is another store opened on the same data: what one writes, the other reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from sidekick.browser.state import BrowserState
from sidekick.errors import SidekickError, StoreError
from sidekick.events import ErrorEvent, FinalAnswer, Finished, RunStarted, Screenshot
from sidekick.store import INTERRUPTED, TITLE_CHARS, BaseStore, LeaseHeldError
from tests.store.conftest import MakeStore
from tests.support.runs import write_turn


def shot(i: int) -> Screenshot:
    return Screenshot(png=b"\x89PNG\r\n" + bytes([i]) * 2000, url=f"https://e.test/{i}", title=f"page {i}", taken_at=i)


def started(run_id: str, message: str = "go") -> RunStarted:
    return RunStarted(run_id=run_id, thread_id="t", message=message, criteria="ok")


def finished() -> Finished:
    return Finished(outcome="answer", seconds=1.0, model_calls=1, tokens=10)


# -- conversations -------------------------------------------------------------------------------
async def test_touch_titles_by_the_first_message_then_updates_only_the_time(store: BaseStore) -> None:
    await store.touch("t1", "  Find   the\nsecret   number " + "x" * 100)
    [first] = await store.list()
    assert first.title == ("Find the secret number " + "x" * 100)[:TITLE_CHARS] and first.created == first.updated
    await asyncio.sleep(0.02)
    await store.touch("t1", "a later message")
    [again] = await store.list()
    assert again.title == first.title and again.created == first.created and again.updated > first.updated
    await store.touch("t2", "   ")
    assert (await store.list())[0].title == "Untitled"


async def test_list_is_newest_first_honours_the_limit_and_exists_agrees(store: BaseStore) -> None:
    for thread in ("a", "b", "c"):
        await store.touch(thread, thread)
        await asyncio.sleep(0.01)
    assert [c.thread_id for c in await store.list()] == ["c", "b", "a"]
    assert [c.thread_id for c in await store.list(limit=2)] == ["c", "b"]
    assert await store.exists("a") and not await store.exists("z")


async def test_a_conversation_keeps_its_first_owner_and_lists_filter_by_owner(stores: MakeStore) -> None:
    store, other_server = await stores(), await stores()
    await store.touch("alice-1", "hi", owner="alice")
    await store.touch("bob-1", "hi", owner="bob")
    await store.touch("legacy", "from before owners")
    await store.touch("alice-1", "later", owner="bob")  # activity never changes whose it is
    assert await other_server.owner_of("alice-1") == "alice" and await other_server.owner_of("legacy") == ""
    assert await other_server.owner_of("nobody") is None
    assert [c.thread_id for c in await other_server.list(owners=["alice", ""])] == ["alice-1", "legacy"]
    assert [c.thread_id for c in await other_server.list(owners=["bob"])] == ["bob-1"]
    assert await other_server.list(owners=[]) == []
    assert len(await other_server.list()) == 3


async def test_another_server_reads_the_transcript_from_the_checkpoints(stores: MakeStore) -> None:
    first, second = await stores(), await stores()
    await write_turn(first, "t1", "What is the number?", "It is 4217.")
    await write_turn(first, "t1", "And doubled?", "8434.")
    await write_turn(first, "other", "Elsewhere", "Not this one.")
    assert await second.history("t1") == [
        ("user", "What is the number?"),
        ("assistant", "It is 4217."),
        ("user", "And doubled?"),
        ("assistant", "8434."),
    ]
    assert await second.history("never-written") == []


async def test_delete_removes_that_thread_only_checkpoints_record_and_lease(stores: MakeStore) -> None:
    store, other_server = await stores(), await stores()
    for thread in ("t1", "t2"):
        await store.touch(thread, f"hello {thread}")
        await write_turn(store, thread, f"hello {thread}", "hi")
        await store.append(thread, "r1", [(1, 1.0, started("r1")), (2, 2.0, shot(1)), (3, 3.0, finished())])
        assert await store.acquire_lease(thread, "server-a", 60)

    await store.delete("t1")

    assert not await other_server.exists("t1") and await other_server.history("t1") == []
    assert await other_server.record("t1") == [] and await other_server.lease_seconds_left("t1") == 0
    assert await other_server.acquire_lease("t1", "server-b", 60)  # its lease went with it
    assert await other_server.exists("t2")
    assert await other_server.history("t2") == [("user", "hello t2"), ("assistant", "hi")]
    [kept] = await other_server.record("t2")
    assert kept.events[1] == shot(1) and not await other_server.acquire_lease("t2", "server-b", 60)
    await store.delete("t1")  # deleting what is gone is fine


async def test_prune_deletes_conversations_idle_for_longer_than_the_limit(store: BaseStore) -> None:
    await store.touch("old", "hello")
    await write_turn(store, "old", "hello", "hi")
    assert await store.prune(keep_days=1) == []
    assert await store.prune(keep_days=1, now=time.time() + 2 * 86_400) == ["old"]
    assert await store.list() == [] and await store.history("old") == []


# -- browser states ------------------------------------------------------------------------------
def browser_state(who: str) -> BrowserState:
    cookie = {"name": "sk", "value": who, "domain": "e.test", "path": "/", "expires": -1,
              "httpOnly": True, "secure": False, "sameSite": "Lax"}
    origin = {"origin": "https://e.test", "localStorage": [{"name": "draft", "value": f"{who}'s ✎"}]}
    return BrowserState(storage={"cookies": [cookie], "origins": [origin]}, url=f"https://e.test/{who}?a=1#top")


async def test_a_browser_state_is_its_owners_reads_back_on_another_server_and_is_replaced(stores: MakeStore) -> None:
    store, other_server = await stores(), await stores()
    await store.save_browser_state("alice", "t1", browser_state("alice"))
    await store.save_browser_state("bob", "t1", browser_state("bob"))
    assert await other_server.browser_state("alice", "t1") == browser_state("alice")
    assert await other_server.browser_state("bob", "t1") == browser_state("bob")
    assert await other_server.browser_state("alice", "t2") is None
    await other_server.save_browser_state("alice", "t1", BrowserState(url="https://e.test/later"))
    assert await store.browser_state("alice", "t1") == BrowserState(url="https://e.test/later")
    await store.delete_browser_state("alice", "t1")  # Reset
    assert await other_server.browser_state("alice", "t1") is None
    assert await other_server.browser_state("bob", "t1") == browser_state("bob")


async def test_browser_states_go_with_their_conversation_and_are_pruned_by_age(store: BaseStore) -> None:
    for thread in ("t1", "t2"):
        await store.touch(thread, "hello")
        await store.save_browser_state("alice", thread, browser_state("alice"))
    await store.save_browser_state("alice", "never-ran", browser_state("alice"))  # no conversation row
    await store.delete("t1")
    assert await store.browser_state("alice", "t1") is None and await store.browser_state("alice", "t2") is not None
    assert await store.prune(keep_days=1) == [] and await store.browser_state("alice", "never-ran") is not None
    assert await store.prune(keep_days=1, now=time.time() + 2 * 86_400) == ["t2"]
    assert await store.browser_state("alice", "t2") is None and await store.browser_state("alice", "never-ran") is None


# -- the run record ------------------------------------------------------------------------------
async def test_the_record_reads_back_exactly_on_another_server_in_order(stores: MakeStore) -> None:
    writer, reader = await stores(), await stores()
    answer = FinalAnswer(text="naïve – ✓ \"quoted\" \\ \x00", accepted=True)
    events = [started("r1"), answer, shot(1), shot(2), finished()]
    await writer.append("t", "r1", [(i + 1, 10.0 + i, e) for i, e in enumerate(events[:3])])
    await writer.append("t", "r1", [(i + 4, 13.0 + i, e) for i, e in enumerate(events[3:])])  # a second batch
    await writer.append("t", "r2", [(1, 20.0, started("r2", "")), (2, 21.0, finished())])  # resumed: same turn

    first, second = await reader.record("t")
    assert first.events == events and first.times == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert second.run_id == "r2" and not second.opens_turn and first.opens_turn
    [no_images] = [r for r in await reader.record("t", images=False) if r.run_id == "r1"]
    assert [e.png for e in no_images.events if isinstance(e, Screenshot)] == [b"", b""]


async def test_an_interrupted_run_ends_with_a_note_and_keeps_its_steps(store: BaseStore) -> None:
    await store.append("t", "r1", [(1, 1.0, started("r1")), (2, 2.5, shot(1))])
    [run] = await store.record("t")
    assert run.events[:2] == [started("r1"), shot(1)]
    assert isinstance(run.events[-2], ErrorEvent) and run.events[-2].message == INTERRUPTED
    assert isinstance(run.events[-1], Finished) and run.events[-1].outcome == "error"
    assert run.events[-1].seconds == 1.5 and run.times[-2:] == [2.5, 2.5]


async def test_each_conversation_keeps_its_newest_screenshots_within_the_budget(stores: MakeStore) -> None:
    store, other_server = await stores(screenshot_budget=2), await stores(screenshot_budget=2)
    shots = [shot(i) for i in range(4)]
    await store.append("t", "r1", [(1, 1.0, started("r1")), (2, 2.0, shots[0]), (3, 3.0, shots[1])])
    await store.append("t", "r1", [(4, 4.0, shots[2])])
    await store.append("other", "r9", [(1, 1.0, started("r9")), (2, 1.5, shots[3])])
    [run] = await other_server.record("t")
    kept = [e.png for e in run.events if isinstance(e, Screenshot)]
    assert kept == [b"", shots[1].png, shots[2].png]  # the oldest image went; its step stays
    assert [e.url for e in run.events if isinstance(e, Screenshot)] == [s.url for s in shots[:3]]
    [other] = await other_server.record("other")
    assert other.events[1] == shots[3]  # another conversation's budget is its own


# -- leases --------------------------------------------------------------------------------------
async def test_a_lease_is_one_servers_until_released_and_others_are_told_how_long(stores: MakeStore) -> None:
    a, b = await stores(), await stores()
    assert await a.acquire_lease("t", "server-a", 30)
    assert await a.acquire_lease("t", "server-a", 30)  # again by its holder: extended, still held
    assert not await b.acquire_lease("t", "server-b", 30)
    assert 25 < await b.lease_seconds_left("t") <= 30
    with pytest.raises(LeaseHeldError) as refused:
        await b.claim_lease("t", "server-b", 30)
    assert isinstance(refused.value, SidekickError) and str(refused.value) == (
        "This conversation is running on another Sidekick server; try again when it finishes (at most 30 s)."
    )
    assert await b.acquire_lease("another", "server-b", 30)  # leases are per conversation

    assert not await b.renew_lease("t", "server-b", 30)  # only its holder renews it
    await b.release_lease("t", "server-b")  # nor can another server release it
    assert not await b.acquire_lease("t", "server-b", 30)

    await a.release_lease("t", "server-a")
    assert await b.lease_seconds_left("t") == 0
    await b.claim_lease("t", "server-b", 30)


async def test_a_lease_expires_on_its_own_and_renewal_keeps_it(stores: MakeStore) -> None:
    a, b = await stores(), await stores()
    assert await a.acquire_lease("kept", "server-a", 0.6) and await a.acquire_lease("dropped", "server-a", 0.6)
    for _ in range(3):  # a live server renews well inside the TTL
        await asyncio.sleep(0.3)
        assert await a.renew_lease("kept", "server-a", 0.6)
    # "dropped" was never renewed: as if its server had been killed.
    assert await b.acquire_lease("dropped", "server-b", 30)
    assert not await b.acquire_lease("kept", "server-b", 30)
    assert not await a.renew_lease("dropped", "server-a", 30)  # it went to another server


async def test_release_all_frees_every_lease_of_that_server_only(stores: MakeStore) -> None:
    a, b = await stores(), await stores()
    for thread in ("t1", "t2"):
        assert await a.acquire_lease(thread, "server-a", 60)
    assert await b.acquire_lease("t3", "server-b", 60)
    await a.release_all("server-a")
    assert await b.acquire_lease("t1", "server-b", 60) and await b.acquire_lease("t2", "server-b", 60)
    assert not await a.acquire_lease("t3", "server-a", 60)


async def test_of_servers_racing_for_a_free_lease_exactly_one_wins(stores: MakeStore) -> None:
    servers = [await stores() for _ in range(3)]
    attempts = [s.acquire_lease("t", f"server-{i}-{j}", 30) for j in range(4) for i, s in enumerate(servers)]
    won = await asyncio.gather(*attempts)
    assert won.count(True) == 1


# -- a closed store --------------------------------------------------------------------------------
@pytest.mark.parametrize("opened", [True, False], ids=["closed", "never-opened"])
async def test_a_closed_store_raises_store_error_with_a_plain_message(stores: MakeStore, opened: bool) -> None:
    store = await stores(opened=opened)
    await store.aclose()
    await store.aclose()  # idempotent
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.touch("t1", "hi"),
        store.list,
        lambda: store.exists("t1"),
        lambda: store.history("t1"),
        lambda: store.delete("t1"),
        lambda: store.append("t1", "r1", [(1, 1.0, started("r1"))]),
        lambda: store.record("t1"),
        lambda: store.prune(1),
        lambda: store.acquire_lease("t1", "a", 1),
        lambda: store.renew_lease("t1", "a", 1),
        lambda: store.release_lease("t1", "a"),
        lambda: store.release_all("a"),
        lambda: store.lease_seconds_left("t1"),
        lambda: store.save_browser_state("a", "t1", BrowserState()),
        lambda: store.browser_state("a", "t1"),
        lambda: store.delete_browser_state("a", "t1"),
    ]
    if opened:
        calls.append(store.open)  # a closed store is never reopened
    for call in calls:
        with pytest.raises(StoreError) as info:
            await call()
        assert str(info.value) == "The conversation store is closed; restart Sidekick to continue."
