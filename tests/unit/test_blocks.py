"""Blocking on the chat path (``chatmq.services.chat.blocks``): the cached ``BlockList``, the routers
refusing a blocked sender's 1:1 messages (``blocked``: nothing stored, delivered or pushed) and leaving
the blocker out of group copies, and ``BlocksChanged`` taking effect in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from chatmq.core import ids
from chatmq.core.bus.base import Record
from chatmq.core.records import PUSHES, BlocksChanged, Outbox
from chatmq.core.topics import GROUP_OUTBOX, OUTBOX, PUSH
from chatmq.services.chat.blocks import BlockList
from chatmq.services.chat.feed import BusChatFeed
from chatmq.services.chat.group_router import GroupRouter
from chatmq.services.chat.outlet import Outlet
from chatmq.services.chat.router import Router
from chatmq.services.push.publisher import PushPublisher
from tests.unit.chat_fixtures import Chat, Probe, envs_of, message, open_chat, outbox_record, record


class CountingSource:
    """Blocks in memory, counting the reads."""

    def __init__(self) -> None:
        self.blocks: dict[str, set[str]] = {}
        self.reads: list[list[str]] = []

    async def blockers_of(self, users: list[str]) -> dict[str, set[str]]:
        self.reads.append(users)
        return {u: set(self.blocks.get(u, set())) for u in users}


async def test_block_list_reads_each_sender_once_until_its_time_runs_out() -> None:
    source, now = CountingSource(), [0.0]
    source.blocks["s"] = {"r"}
    blocks = BlockList(source, ttl=60, clock=lambda: now[0])
    assert await blocks.lookup(["s", "t", "s"]) == {"s": {"r"}, "t": frozenset()}
    assert await blocks.lookup(["t", "s"]) == {"s": {"r"}, "t": frozenset()}
    assert source.reads == [["s", "t"]]
    source.blocks["s"] = set()
    assert await blocks.refresh("s") == frozenset()  # a change: read again at once
    now[0] = 61.0
    source.blocks["t"] = {"r"}
    assert await blocks.lookup(["t"]) == {"t": {"r"}}  # too old: read again
    assert source.reads == [["s", "t"], ["s"], ["t"]]


async def test_block_list_forgets_the_least_recently_used_beyond_its_size() -> None:
    source = CountingSource()
    blocks = BlockList(source, size=2)
    await blocks.lookup(["a", "b"])
    await blocks.lookup(["a"])  # a is used again: b is the oldest
    await blocks.lookup(["c"])
    source.reads.clear()
    await blocks.lookup(["a", "b", "c"])
    assert source.reads == [["b"]]


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    async with open_chat(tmp_path) as c:
        c.outlet = Outlet(c.bus, c.registry, c.store, PushPublisher(c.bus))
        yield c


@pytest.fixture
async def pushes(chat: Chat) -> AsyncIterator[Probe]:
    probe = Probe(chat.bus, [PUSH], group="push-probe")
    await probe.start()
    yield probe
    await probe.stop()


def blocks_changed(blocker: str, blocked: str, key: str, topic: str = OUTBOX) -> Record:
    return record(topic, key, Outbox(blocker, "", BlocksChanged(blocked)))


async def test_a_blocked_sender_is_refused_and_nothing_is_stored_delivered_or_pushed(
        chat: Chat, pushes: Probe) -> None:
    router = Router(chat.bus, chat.store, chat.outlet)
    alice, bob = await chat.user(), await chat.user()
    chat.online(bob)  # alice is offline: a message to her would be pushed
    await chat.store.block(alice, bob)

    await router.process([outbox_record(bob, message("m1", to=alice))])

    [error] = envs_of(await chat.deliveries(), bob)
    assert error == {"type": "error", "client_id": "m1", "code": "blocked", "reason": f"{alice} blocked you"}
    assert await chat.pending(alice) == []
    assert await chat.store.history(ids.conversation_key(alice, bob), None, 10) == []
    assert await pushes.drain() == []
    # alice may still write to bob
    await router.process([outbox_record(alice, message("m2", to=bob))])
    assert [e["type"] for e in envs_of(await chat.deliveries(), bob)] == ["message"]


async def test_a_change_takes_effect_in_order_within_a_batch(chat: Chat, pushes: Probe) -> None:
    router = Router(chat.bus, chat.store, chat.outlet)
    alice, bob = await chat.user(), await chat.user()
    chat.online(alice)
    chat.online(bob)
    pair = ids.conversation_key(alice, bob)
    await router.process([outbox_record(bob, message("m0", to=alice))])  # cached: nobody blocks bob
    await chat.deliveries()

    await chat.store.block(alice, bob)
    await router.process([outbox_record(bob, message("m1", to=alice)), blocks_changed(alice, bob, pair),
                          outbox_record(bob, message("m2", to=alice))])
    got = await chat.deliveries()
    assert [e["client_id"] for e in envs_of(got, alice)] == ["m1"]  # sent before the block reached the router
    # (a refusal is answered at once, the acks once the batch is stored)
    assert sorted((e["type"], e["client_id"]) for e in envs_of(got, bob)) == [("ack", "m1"), ("error", "m2")]

    await chat.store.unblock(alice, bob)
    await router.process([blocks_changed(alice, bob, pair), outbox_record(bob, message("m3", to=alice))])
    assert [e["client_id"] for e in envs_of(await chat.deliveries(), alice)] == ["m3"]


async def test_in_a_group_the_blocker_alone_does_not_get_the_blocked_members_messages(
        chat: Chat, pushes: Probe) -> None:
    group_router = GroupRouter(chat.bus, chat.store, chat.outlet)
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", alice, [bob, carol])
    chat.online(bob)  # alice and carol offline: pushed
    await chat.store.block(alice, bob)

    await group_router.process([outbox_record(bob, message("g1", group=gid))])

    assert [e["type"] for e in envs_of(await chat.deliveries(), bob)] == ["ack"]  # bob is not told
    assert await chat.pending(alice) == []
    assert len(await chat.pending(carol)) == 1
    assert [PUSHES.read(r).user for r in await pushes.drain()] == [carol]
    # and after the block is lifted (told on the group's partition) alice gets them again
    await chat.store.unblock(alice, bob)
    await group_router.process([blocks_changed(alice, bob, gid, GROUP_OUTBOX),
                                outbox_record(bob, message("g2", group=gid))])
    assert len(await chat.pending(alice)) == 1


async def test_the_feed_tells_the_pairs_router_and_each_group_of_the_blocker(chat: Chat) -> None:
    probe = Probe(chat.bus, [OUTBOX, GROUP_OUTBOX], group="feed-probe")
    await probe.start()
    try:
        await BusChatFeed(chat.bus).blocks_changed("alice", "bob", ["g1", "g2"])
        got = await probe.wait_for(3)
    finally:
        await probe.stop()
    assert sorted((r.topic, r.key.decode()) for r in got) == [
        (GROUP_OUTBOX, "g1"), (GROUP_OUTBOX, "g2"), (OUTBOX, ids.conversation_key("alice", "bob"))]
    assert {r.item for r in got} == {Outbox("alice", "", BlocksChanged("bob"))}


async def test_a_blocker_who_joins_a_group_later_gets_no_copies_from_the_start(chat: Chat) -> None:
    group_router = GroupRouter(chat.bus, chat.store, chat.outlet)
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", carol, [bob])
    await group_router.process([outbox_record(bob, message("g1", group=gid))])  # bob's blockers cached: none
    await chat.store.block(alice, bob)  # alice is in no group: no group router hears of it
    await chat.store.add_members(gid, [alice])

    await group_router.process([outbox_record(bob, message("g2", group=gid))])

    assert await chat.pending(alice) == []
    assert [orjson.loads(i.envelope)["client_id"] for i in await chat.pending(carol)] == ["g1", "g2"]
