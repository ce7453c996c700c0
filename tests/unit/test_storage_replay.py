"""ReplayService: presence → registry update → pending replay in pages → ``done`` with the epoch."""

from __future__ import annotations

import orjson
import pytest

from chatmq.bridges.gateway import NodeGateway
from chatmq.core import ids
from chatmq.core.envelopes import encode_event, event_envelope, receipt_envelope
from chatmq.services.chat.storage import ReplayService
from chatmq.services.store.base import PendingItem
from tests.unit.chat_fixtures import (
    MAX_PAYLOAD,
    NODE,
    OTHER_NODE,
    Chat,
    Delivery,
    eventually,
    presence_record,
)

PAGE = 2


@pytest.fixture
def replay(chat: Chat) -> ReplayService:
    return ReplayService(chat.bus, chat.store, chat.registry, PAGE)


def _ids(d: Delivery) -> list[str]:
    return [e["id"] for e in d.envs]


async def test_pending_items_are_replayed_in_pages_then_done(chat: Chat, replay: ReplayService) -> None:
    a, b = await chat.user(), await chat.user()
    sent = [await chat.commit_message(a, b, f"c{i}") for i in range(5)]

    await replay.process([presence_record("online", b, NODE, epoch=42)])

    deliveries = await chat.deliveries()
    assert all(d.node == NODE and d.user == b and d.key == b for d in deliveries)
    assert [(d.replay, d.epoch) for d in deliveries] == [("page", 42)] * 3 + [("done", 42)]
    assert [_ids(d) for d in deliveries[:3]] == [sent[0:2], sent[2:4], sent[4:5]]
    assert deliveries[-1].envs == []
    # messages stay pending until the user's delivered receipt
    assert [i.item_id for i in await chat.pending(b)] == sent


async def test_exact_multiple_of_the_page_size_has_no_empty_page(chat: Chat, replay: ReplayService) -> None:
    a, b = await chat.user(), await chat.user()
    sent = [await chat.commit_message(a, b, f"c{i}") for i in range(2 * PAGE)]

    await replay.process([presence_record("online", b, NODE, epoch=7)])

    deliveries = await chat.deliveries()
    assert [d.replay for d in deliveries] == ["page", "page", "done"]
    assert [_ids(d) for d in deliveries[:2]] == [sent[:PAGE], sent[PAGE:]]


async def test_nothing_pending_sends_only_done(chat: Chat, replay: ReplayService) -> None:
    b = await chat.user()

    await replay.process([presence_record("online", b, OTHER_NODE, epoch=5)])

    [done] = await chat.deliveries()
    assert (done.node, done.user, done.replay, done.epoch, done.envs) == (OTHER_NODE, b, "done", 5, [])


async def test_only_the_users_own_items_are_replayed(chat: Chat, replay: ReplayService) -> None:
    a, b = await chat.user(), await chat.user()
    for_b = await chat.commit_message(a, b, "c1")
    await chat.commit_message(b, a, "c2")  # pending for a, not b

    await replay.process([presence_record("online", b)])

    deliveries = await chat.deliveries()
    assert {d.user for d in deliveries} == {b}
    assert [e["id"] for d in deliveries for e in d.envs] == [for_b]


async def test_notices_are_removed_after_replay_and_messages_are_not(chat: Chat, replay: ReplayService) -> None:
    a, b = await chat.user(), await chat.user()
    m1 = await chat.commit_message(a, b, "c1")
    rcpt = receipt_envelope("read", ["someid"], a)
    event = encode_event(event_envelope("group_renamed", group_id="g1", name="new", by=a))
    await chat.store.add_notices([(b, ids.server_id(), rcpt)])
    m2 = await chat.commit_message(a, b, "c2")
    await chat.store.add_notices([(b, ids.server_id(), event)])

    before = [orjson.loads(i.envelope) for i in await chat.pending(b)]
    assert [e["type"] for e in before] == ["message", "receipt", "message", "event"]

    await replay.process([presence_record("online", b, epoch=1)])

    first = await chat.deliveries()
    assert [e for d in first for e in d.envs] == before  # in seq order, notices in between
    remaining: list[PendingItem] = await chat.pending(b)
    assert [(i.kind, i.item_id) for i in remaining] == [("message", m1), ("message", m2)]

    # the next subscription replays the messages again, the notices not
    await replay.process([presence_record("online", b, epoch=2)])
    second = await chat.deliveries()
    assert [[e.get("id") for e in d.envs] for d in second] == [[m1, m2], []]
    assert [d.epoch for d in second] == [2, 2]


async def test_registry_is_updated_before_the_pending_read(
    chat: Chat, replay: ReplayService, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = await chat.user()
    seen: list[str | None] = []
    real_pending = chat.store.pending

    async def spying_pending(user_id: str, after_seq: int, limit: int) -> list[PendingItem]:
        seen.append(chat.registry.node_of(user_id))
        return await real_pending(user_id, after_seq, limit)

    monkeypatch.setattr(chat.store, "pending", spying_pending)

    await replay.process([presence_record("online", b, OTHER_NODE, epoch=3)])

    assert seen == [OTHER_NODE]
    assert chat.registry.node_of(b) == OTHER_NODE


async def test_offline_presence_removes_the_registry_entry_and_replays_nothing(
    chat: Chat, replay: ReplayService
) -> None:
    a, b = await chat.user(), await chat.user()
    await chat.commit_message(a, b, "c1")

    await replay.process([presence_record("online", b, NODE, epoch=10)])
    assert chat.registry.node_of(b) == NODE
    await chat.deliveries()

    await replay.process([presence_record("offline", b, NODE, epoch=10)])

    assert chat.registry.node_of(b) is None
    assert await chat.deliveries() == []
    assert len(await chat.pending(b)) == 1


async def test_late_offline_of_an_older_session_keeps_the_newer_one(chat: Chat, replay: ReplayService) -> None:
    b = await chat.user()

    await replay.process([
        presence_record("online", b, NODE, epoch=10),
        presence_record("online", b, OTHER_NODE, epoch=20),
        presence_record("offline", b, NODE, epoch=10),
    ])

    assert chat.registry.node_of(b) == OTHER_NODE
    dones = [(d.node, d.epoch) for d in await chat.deliveries() if d.replay == "done"]
    assert sorted(dones) == [(NODE, 10), (OTHER_NODE, 20)]


async def test_started_replay_follows_presence_from_the_gateway(chat: Chat, replay: ReplayService) -> None:
    a, b = await chat.user(), await chat.user()
    sent = [await chat.commit_message(a, b, f"c{i}") for i in range(3)]
    gateway = NodeGateway(chat.bus, NODE, MAX_PAYLOAD)

    phone, laptop = object(), object()
    await replay.start()
    try:
        await gateway.inbox_subscribed(b, phone)
        deliveries = await chat.wait_deliveries(3)
        assert chat.registry.node_of(b) == NODE
        await gateway.inbox_subscribed(b, laptop)  # a second connection: a new epoch, replayed again
        again = await chat.wait_deliveries(3)
        await gateway.inbox_released(b, laptop)
        await gateway.inbox_released(b, phone)  # the last one: offline
        await eventually(lambda: _is_offline(chat, b))
    finally:
        await replay.stop()

    assert [d.replay for d in deliveries] == ["page", "page", "done"]
    assert [e["id"] for d in deliveries for e in d.envs] == sent
    assert [d.replay for d in again] == ["page", "page", "done"]
    assert [e["id"] for d in again for e in d.envs] == sent
    first_epoch, second_epoch = deliveries[-1].epoch, again[-1].epoch
    assert first_epoch is not None
    assert second_epoch is not None
    assert second_epoch > first_epoch
    assert chat.bus.lag("storage") == 0


async def _is_offline(chat: Chat, user: str) -> bool:
    return chat.registry.node_of(user) is None


async def test_a_new_device_beyond_max_devices_forgets_the_least_recently_seen_one(chat: Chat) -> None:
    """A client making a random client id per connect cannot grow its user's devices without bound."""
    replay = ReplayService(chat.bus, chat.store, chat.registry, PAGE, max_devices=2)
    a, b = await chat.user(), await chat.user()
    await chat.store.touch_session(b, "phone", 1)
    await chat.store.touch_session(b, "tablet", 2)
    await chat.store.touch_session(b, "phone", 3)  # the phone was seen after the tablet
    sent = await chat.commit_message(a, b, "c1")
    await replay.replay(b, NODE, 1, "laptop")  # a third device: the tablet, least recently seen, goes

    sessions = (await chat.store.sessions_of([b]))[b]
    assert sorted(s.client_id for s in sessions) == ["laptop", "phone"]
    await replay.replay(b, NODE, 2, "laptop")  # known: nothing more is forgotten
    assert sorted(s.client_id for s in (await chat.store.sessions_of([b]))[b]) == ["laptop", "phone"]
    assert [i.item_id for i in await chat.pending(b)] == [sent]  # still owed to the devices kept
