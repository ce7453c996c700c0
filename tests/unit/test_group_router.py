"""GroupRouter: group messages from ``chat.group-outbox`` (membership, one copy per member, ack, dedupe)."""

from __future__ import annotations

import orjson
import pytest

from chatmq.core import ids
from chatmq.services.chat.group_router import GroupRouter
from tests.unit.chat_fixtures import (
    NODE,
    OTHER_NODE,
    Chat,
    envs_of,
    message,
    outbox_record,
    through_gateway,
    wire,
)


@pytest.fixture
def group_router(chat: Chat) -> GroupRouter:
    return GroupRouter(chat.bus, chat.store, chat.outlet)


async def _team(chat: Chat) -> tuple[str, str, str, str]:
    """A group of admin ``a`` with members ``b`` and ``c``; returns (group id, a, b, c)."""
    a, b, c = await chat.user("ann"), await chat.user("ben"), await chat.user("cat")
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", a, [b, c])
    return gid, a, b, c


async def test_member_message_is_one_pending_copy_per_other_member(chat: Chat, group_router: GroupRouter) -> None:
    gid, a, b, c = await _team(chat)
    chat.online(a, NODE)
    chat.online(b, OTHER_NODE)  # c is offline

    await group_router.process([outbox_record(a, message("g1", group=gid, text="hello all"))])

    [stored] = await chat.store.history(gid, None, 10)
    assert (stored.sender, stored.to, stored.group, stored.client_id, stored.body) == (a, None, gid, "g1",
                                                                                        {"text": "hello all"})
    for member in (b, c):
        [item] = await chat.pending(member)
        assert item.kind == "message"
        assert item.item_id == stored.server_id
        assert orjson.loads(item.envelope) == {"type": "message", "id": stored.server_id, "client_id": "g1", "from": a,
                                 "to": member, "group": gid, "body": {"text": "hello all"}, "ts": stored.ts}
    assert await chat.pending(a) == []  # no copy for the sender

    deliveries = await chat.deliveries()
    assert envs_of(deliveries, a) == [{"type": "ack", "client_id": "g1", "id": stored.server_id, "ts": stored.ts}]
    assert [d.node for d in deliveries if d.user == a] == [NODE]
    [copy] = envs_of(deliveries, b, OTHER_NODE)
    assert (copy["to"], copy["group"], copy["id"]) == (b, gid, stored.server_id)
    assert envs_of(deliveries, c) == []  # offline: pending only


async def test_non_member_is_refused_with_not_member(chat: Chat, group_router: GroupRouter) -> None:
    gid, _a, b, _c = await _team(chat)
    outsider = await chat.user("eve")
    chat.online(outsider, OTHER_NODE)
    chat.online(b)

    await group_router.process([outbox_record(outsider, message("x1", group=gid), node=OTHER_NODE)])

    deliveries = await chat.deliveries()
    [error] = envs_of(deliveries, outsider, OTHER_NODE)
    assert (error["type"], error["code"], error["client_id"]) == ("error", "not_member", "x1")
    assert gid in error["reason"]
    assert envs_of(deliveries, b) == []
    assert await chat.store.history(gid, None, 10) == []
    assert await chat.store.count_pending() == 0


async def test_unknown_group_is_refused_with_unknown_recipient(chat: Chat, group_router: GroupRouter) -> None:
    a = await chat.user()
    chat.online(a)
    missing = ids.group_id()

    await group_router.process([outbox_record(a, message("x1", group=missing))])

    [error] = envs_of(await chat.deliveries(), a)
    assert (error["type"], error["code"], error["client_id"]) == ("error", "unknown_recipient", "x1")
    assert missing in error["reason"]
    assert await chat.store.history(missing, None, 10) == []
    assert await chat.store.count_pending() == 0


async def test_repeated_client_id_is_acked_twice_and_stored_once(chat: Chat, group_router: GroupRouter) -> None:
    gid, a, b, c = await _team(chat)
    chat.online(a)
    chat.online(b)

    await group_router.process([outbox_record(a, message("g1", group=gid))])
    await group_router.process([outbox_record(a, message("g1", group=gid)), outbox_record(a, message("g1", group=gid))])

    deliveries = await chat.deliveries()
    acks = envs_of(deliveries, a)
    assert [e["type"] for e in acks] == ["ack"] * 3
    assert len({e["id"] for e in acks}) == 1
    # delivered, then once more for the repeated batch (still pending: the first delivery may
    # have been lost with a router); the client drops the copy by its server id
    assert [e["id"] for e in envs_of(deliveries, b)] == [acks[0]["id"]] * 2
    assert len(await chat.pending(b)) == 1
    assert len(await chat.pending(c)) == 1
    assert len(await chat.store.history(gid, None, 10)) == 1


async def test_mixed_batch_keeps_order_and_refuses_only_the_bad_ones(chat: Chat, group_router: GroupRouter) -> None:
    gid, a, b, c = await _team(chat)
    other = ids.group_id()
    await chat.store.create_group(other, "pair", b, [c])
    for u in (a, b, c):
        chat.online(u)

    await group_router.process([
        outbox_record(a, message("a1", group=gid)),
        outbox_record(a, message("a2", group=other)),  # a is not in the pair
        outbox_record(b, message("b1", group=other)),
        outbox_record(b, message("b2", group=gid)),
        outbox_record(a, message("a3", group=gid)),
    ])

    deliveries = await chat.deliveries()
    answers_a = envs_of(deliveries, a)
    assert sorted((e["type"], e["client_id"]) for e in answers_a if e["type"] != "message") == [
        ("ack", "a1"), ("ack", "a3"), ("error", "a2")]
    assert [e["client_id"] for e in answers_a if e["type"] == "message"] == ["b2"]
    # order holds per conversation (each group's fan-out is keyed by the group)
    got_c = envs_of(deliveries, c)
    assert [e["client_id"] for e in got_c if e["group"] == gid] == ["a1", "b2", "a3"]
    assert [e["client_id"] for e in got_c if e["group"] == other] == ["b1"]
    assert all(e["to"] == c for e in got_c)
    assert [orjson.loads(i.envelope)["client_id"] for i in await chat.pending(c)] == ["a1", "b1", "b2", "a3"]


async def test_a_group_message_is_one_record_per_node(chat: Chat, group_router: GroupRouter) -> None:
    a = await chat.user()
    members = [await chat.user() for _ in range(5)]
    gid = ids.group_id()
    await chat.store.create_group(gid, "crowd", a, members)
    for u in members[:3]:
        chat.online(u, "n1")
    chat.online(members[3], "n2")  # members[4] is offline: pending only

    await group_router.process([outbox_record(a, message("m1", group=gid))])

    records = [r for r in await chat.probe.drain() if r.key == gid.encode()]
    assert sorted((r.topic, len(wire(r)["users"])) for r in records) == [
        ("chat.deliver.n1", 3), ("chat.deliver.n2", 1)]
    assert len(await chat.pending(members[4])) == 1


async def test_group_of_one_is_acked_with_no_copies(chat: Chat, group_router: GroupRouter) -> None:
    a = await chat.user()
    chat.online(a)
    gid = ids.group_id()
    await chat.store.create_group(gid, "me", a, [])

    await group_router.process([outbox_record(a, message("g1", group=gid))])

    [ack] = envs_of(await chat.deliveries(), a)
    assert ack["type"] == "ack"
    assert await chat.store.count_pending() == 0
    assert [m.server_id for m in await chat.store.history(gid, None, 10)] == [ack["id"]]


async def test_started_group_router_takes_messages_published_by_the_gateway(
    chat: Chat, group_router: GroupRouter
) -> None:
    gid, a, b, _c = await _team(chat)
    chat.online(a)
    chat.online(b, OTHER_NODE)
    deliveries = await through_gateway(chat, group_router, a, message("g1", group=gid), 2)

    [ack] = envs_of(deliveries, a, NODE)
    [copy] = envs_of(deliveries, b, OTHER_NODE)
    assert (copy["id"], copy["group"], copy["to"]) == (ack["id"], gid, b)
    assert chat.bus.lag("group-router") == 0


async def test_a_batch_reads_its_groups_in_one_store_operation(chat: Chat, group_router: GroupRouter,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """However many groups a batch names (and one that does not exist), they are read together, then each
    message is checked against its own group: the members get it, a stranger is refused."""
    gid, a, b, c = await _team(chat)
    other = ids.group_id()
    await chat.store.create_group(other, "pair", b, [c])
    chat.online(a, NODE)
    single: list[str] = []
    real = chat.store.get_group

    async def counted(group_id: str) -> object:
        single.append(group_id)
        return await real(group_id)

    monkeypatch.setattr(chat.store, "get_group", counted)
    await group_router.process([
        outbox_record(a, message("m1", group=gid)),
        outbox_record(b, message("m2", group=other)),
        outbox_record(a, message("m3", group=other)),  # a is no member of it
        outbox_record(a, message("m4", group="g_missing")),
        outbox_record(c, message("m5", group=gid)),
    ])
    assert single == []
    envs = envs_of(await chat.deliveries(), a)  # the answers to a in order; a's copy of m5 comes its own way
    assert [(e["type"], e.get("client_id"), e.get("code")) for e in envs if e["type"] != "message"] == [
        ("error", "m3", "not_member"), ("error", "m4", "unknown_recipient"), ("ack", "m1", None)]
    assert [(e["client_id"], e["group"]) for e in envs if e["type"] == "message"] == [("m5", gid)]
    assert [orjson.loads(i.envelope)["client_id"] for i in await chat.pending(c)] == ["m1", "m2"]
