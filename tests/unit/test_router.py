"""Router: 1:1 messages (commit, ack, delivery, dedupe, order) and receipts from ``chat.outbox``."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from chatmq.core import ids
from chatmq.core.envelopes import MessageIn, parse_outbox
from chatmq.core.records import Delivery, Outbox
from chatmq.core.topics import OUTBOX
from chatmq.services.chat.group_router import GroupRouter
from chatmq.services.chat.router import Router, Routes
from chatmq.services.store.base import Route
from chatmq.services.store.files import FileInfo, new_file_id
from chatmq.services.store.local_files import LocalFileStore
from tests.unit.chat_fixtures import (
    MAX_PAYLOAD,
    NODE,
    OTHER_NODE,
    Chat,
    envs_of,
    message,
    outbox_record,
    receipt,
    record,
    through_gateway,
)

# --- messages ------------------------------------------------------------------------


async def test_the_recipient_gets_the_very_bytes_stored_as_pending_encoded_once(chat: Chat, router: Router) -> None:
    """The inbox envelope is made once at acceptance: the bytes stored as the pending item are the bytes
    the delivery record carries (the in-process bus passes the record object itself, nothing re-encoded),
    and the body is the client's JSON as sent."""
    a, b = await chat.user("alice"), await chat.user("bob")
    chat.online(b, OTHER_NODE)
    sent = b'{"type":"message","id":"c1","to":"%s","body":{"text": "as sent",  "n": [1, 2]}}' % b.encode()

    await router.process([record(OUTBOX, ids.conversation_key(a, b),
                                 Outbox(a, NODE, cast(MessageIn, parse_outbox(sent, MAX_PAYLOAD))))])

    [item] = await chat.pending(b)
    [delivery] = [r for r in await chat.probe.drain() if r.key == b.encode()]
    assert isinstance(delivery.item, Delivery)  # the object itself: nothing encoded on the in-process bus
    assert [bytes(e) for e in delivery.item.envs] == [item.envelope]
    assert b'"body":{"text": "as sent",  "n": [1, 2]}' in item.envelope


async def test_message_to_online_user_is_committed_acked_and_delivered(chat: Chat, router: Router) -> None:
    a, b = await chat.user("alice"), await chat.user("bob")
    chat.online(a, NODE)
    chat.online(b, OTHER_NODE)

    await router.process([outbox_record(a, message("c1", to=b, text="hello"), node=NODE)])

    [stored] = await chat.store.history(ids.conversation_key(a, b), None, 10)
    assert (stored.client_id, stored.sender, stored.to, stored.group, stored.body) == ("c1", a, b, None,
                                                                                        {"text": "hello"})
    [item] = await chat.pending(b)
    assert item.kind == "message"
    assert item.item_id == stored.server_id
    assert await chat.pending(a) == []

    deliveries = await chat.deliveries()
    # the ack goes to the sender's node, with the same server id and timestamp
    assert envs_of(deliveries, a) == [{"type": "ack", "client_id": "c1", "id": stored.server_id, "ts": stored.ts}]
    assert [d.node for d in deliveries if d.user == a] == [NODE]
    # the message goes to the recipient's node only, exactly as stored as pending
    expected = {"type": "message", "id": stored.server_id, "client_id": "c1", "from": a, "to": b, "group": None,
                "body": {"text": "hello"}, "ts": stored.ts}
    assert envs_of(deliveries, b, OTHER_NODE) == [expected]
    assert envs_of(deliveries, b, NODE) == []
    assert orjson.loads(item.envelope) == expected
    # delivery records are keyed by the user they are for
    assert all(d.key == d.user for d in deliveries)


async def test_message_to_offline_user_is_only_stored(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)

    await router.process([outbox_record(a, message("c1", to=b))])

    deliveries = await chat.deliveries()
    assert [e["type"] for e in envs_of(deliveries, a)] == ["ack"]
    assert envs_of(deliveries, b) == []
    [item] = await chat.pending(b)
    assert orjson.loads(item.envelope)["id"] == envs_of(deliveries, a)[0]["id"]
    assert await chat.store.count_pending(b) == 1


async def test_unknown_recipient_is_refused_and_nothing_stored(chat: Chat, router: Router) -> None:
    a = await chat.user()
    chat.online(a)
    nobody = ids.user_id()

    await router.process([outbox_record(a, message("c1", to=nobody))])

    deliveries = await chat.deliveries()
    [error] = envs_of(deliveries, a)
    assert error["type"] == "error"
    assert error["code"] == "unknown_recipient"
    assert error["client_id"] == "c1"
    assert nobody in error["reason"]
    assert [d.node for d in deliveries] == [NODE]
    assert await chat.store.history(ids.conversation_key(a, nobody), None, 10) == []
    assert await chat.store.count_pending() == 0


async def test_refusal_does_not_stop_the_rest_of_the_batch(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    chat.online(b)

    await router.process([
        outbox_record(a, message("c1", to=b)),
        outbox_record(a, message("c2", to=ids.user_id())),
        outbox_record(a, message("c3", to=b)),
    ])

    answers = envs_of(await chat.deliveries(), a)
    assert sorted((e["type"], e["client_id"]) for e in answers) == [("ack", "c1"), ("ack", "c3"), ("error", "c2")]
    assert [orjson.loads(i.envelope)["client_id"] for i in await chat.pending(b)] == ["c1", "c3"]


async def test_repeated_client_id_in_one_batch_is_acked_twice_and_delivered_once(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    chat.online(b)

    await router.process([outbox_record(a, message("c1", to=b)), outbox_record(a, message("c1", to=b))])

    deliveries = await chat.deliveries()
    acks = envs_of(deliveries, a)
    assert [e["type"] for e in acks] == ["ack", "ack"]
    assert acks[0]["id"] == acks[1]["id"]
    assert acks[0]["ts"] == acks[1]["ts"]
    assert [e["id"] for e in envs_of(deliveries, b)] == [acks[0]["id"]]
    assert len(await chat.store.history(ids.conversation_key(a, b), None, 10)) == 1
    assert len(await chat.pending(b)) == 1


async def test_repeated_client_id_across_batches_is_acked_with_the_first_id(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    chat.online(b)

    await router.process([outbox_record(a, message("c1", to=b, text="first"))])
    first = await chat.deliveries()
    await router.process([outbox_record(a, message("c1", to=b, text="resent"))])
    second = await chat.deliveries()

    [ack1], [ack2] = envs_of(first, a), envs_of(second, a)
    assert ack1["id"] == ack2["id"]
    assert [e["id"] for e in envs_of(first, b)] == [ack1["id"]]
    # still pending for b (the first delivery may never have gone out): the stored copy goes again
    assert envs_of(second, b) == envs_of(first, b)
    [stored] = await chat.store.history(ids.conversation_key(a, b), None, 10)
    assert stored.body == {"text": "first"}
    assert len(await chat.pending(b)) == 1

    await router.process([outbox_record(b, receipt("delivered", [ack1["id"]]))])
    await chat.deliveries()
    await router.process([outbox_record(a, message("c1", to=b, text="resent again"))])
    third = await chat.deliveries()
    assert [e["id"] for e in envs_of(third, a)] == [ack1["id"]]  # acked again ...
    assert envs_of(third, b) == []  # ... and not delivered: b confirmed it


async def test_same_client_id_from_another_sender_is_a_new_message(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    chat.online(c)

    await router.process([outbox_record(a, message("same", to=c)), outbox_record(b, message("same", to=c))])

    senders = [e["from"] for e in envs_of(await chat.deliveries(), c)]
    assert senders == [a, b]
    assert len({i.item_id for i in await chat.pending(c)}) == 2


async def test_acks_and_deliveries_follow_input_order(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    for u in (a, b, c):
        chat.online(u)

    await router.process([
        outbox_record(a, message("a1", to=c)),
        outbox_record(b, message("b1", to=c)),
        outbox_record(a, message("a2", to=c)),
        outbox_record(a, message("a3", to=b)),
        outbox_record(b, message("b2", to=c)),
    ])

    deliveries = await chat.deliveries()
    assert [e["client_id"] for e in envs_of(deliveries, a)] == ["a1", "a2", "a3"]
    assert [e["type"] for e in envs_of(deliveries, a)] == ["ack"] * 3
    to_b = envs_of(deliveries, b)
    assert [(e["type"], e["client_id"]) for e in to_b] == [("ack", "b1"), ("ack", "b2"), ("message", "a3")]
    to_c = envs_of(deliveries, c)
    assert [e["client_id"] for e in to_c] == ["a1", "b1", "a2", "b2"]
    server_ids = [e["id"] for e in to_c]
    assert server_ids == sorted(server_ids)  # time-ordered server ids, given in input order
    assert [i.item_id for i in await chat.pending(c)] == server_ids


async def test_started_router_takes_messages_published_by_the_gateway(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    chat.online(b, OTHER_NODE)
    deliveries = await through_gateway(chat, router, a, message("c1", to=b), 2)

    [ack] = envs_of(deliveries, a, NODE)
    [msg] = envs_of(deliveries, b, OTHER_NODE)
    assert ack["id"] == msg["id"]
    assert router.processed == 1
    assert chat.bus.lag("router") == 0


# --- receipts ------------------------------------------------------------------------


async def test_delivered_receipt_removes_only_the_receipt_senders_items(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    m1 = await chat.commit_message(a, b, "c1")
    m2 = await chat.commit_message(a, b, "c2")
    m_for_a = await chat.commit_message(b, a, "c3")

    # b confirms m1, and (wrongly) a message that is addressed to a
    await router.process([outbox_record(b, receipt("delivered", [m1, m_for_a]))])

    assert [i.item_id for i in await chat.pending(b)] == [m2]
    assert [i.item_id for i in await chat.pending(a) if i.kind == "message"] == [m_for_a]


async def test_read_receipt_keeps_pending_items(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    m1 = await chat.commit_message(a, b, "c1")

    await router.process([outbox_record(b, receipt("read", [m1]))])

    assert [i.item_id for i in await chat.pending(b)] == [m1]
    assert envs_of(await chat.deliveries(), a) == [{"type": "receipt", "status": "read", "ids": [m1], "from": b}]


async def test_a_read_from_the_rest_api_reaches_every_device_of_the_reader(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    for device in ("phone", "laptop"):
        await chat.store.touch_session(b, device, ids.now_ms())
    chat.online(a, NODE)
    chat.online(b, OTHER_NODE)
    m1 = await chat.commit_message(a, b, "c1")

    await router.process([outbox_record(b, receipt("read", [m1]))])  # no client id: POST .../read

    deliveries = await chat.deliveries()
    assert envs_of(deliveries, a) == [{"type": "receipt", "status": "read", "ids": [m1], "from": b}]
    # both of b's devices (none skipped) learn that b read it
    assert envs_of(deliveries, b) == [{"type": "receipt", "status": "read", "ids": [m1], "from": b}]


async def test_receipt_goes_to_each_online_original_sender(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    chat.online(a, NODE)
    chat.online(c, OTHER_NODE)
    m1 = await chat.commit_message(a, b, "c1")
    m2 = await chat.commit_message(c, b, "c2")
    m3 = await chat.commit_message(a, b, "c3")

    await router.process([outbox_record(b, receipt("delivered", [m1, m2, m3]))])

    deliveries = await chat.deliveries()
    assert envs_of(deliveries, a, NODE) == [{"type": "receipt", "status": "delivered", "ids": [m1, m3], "from": b}]
    assert envs_of(deliveries, c, OTHER_NODE) == [{"type": "receipt", "status": "delivered", "ids": [m2], "from": b}]
    assert envs_of(deliveries, b) == []
    assert await chat.pending(b) == []
    assert await chat.pending(a) == []  # online: no notice kept


async def test_a_run_of_one_id_receipts_is_confirmed_and_reported_together(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    ms = [await chat.commit_message(a, b, f"c{i}") for i in range(5)]

    late = [outbox_record(b, receipt("read", [ms[0]])), outbox_record(b, receipt("delivered", [ms[0]]))]
    await router.process([outbox_record(b, receipt("delivered", [m])) for m in ms] + late)

    assert await chat.pending(b) == []
    assert envs_of(await chat.deliveries(), a) == [
        {"type": "receipt", "status": "delivered", "ids": ms, "from": b},
        {"type": "receipt", "status": "read", "ids": [ms[0]], "from": b},
    ]


async def test_receipt_for_offline_sender_is_kept_as_a_notice(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    m1 = await chat.commit_message(a, b, "c1")

    await router.process([outbox_record(b, receipt("delivered", [m1]))])

    assert await chat.deliveries() == []
    [notice] = await chat.pending(a)
    assert notice.kind == "notice"
    assert orjson.loads(notice.envelope) == {"type": "receipt", "status": "delivered", "ids": [m1], "from": b}
    assert await chat.store.count_pending(a) == 0  # notices are not pending messages


async def test_receipt_for_messages_not_addressed_to_the_user_is_ignored(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    chat.online(a)
    m1 = await chat.commit_message(a, b, "c1")

    await router.process([
        outbox_record(c, receipt("delivered", [m1])),  # c is not the recipient
        outbox_record(a, receipt("read", [m1])),  # nor is the sender
        outbox_record(b, receipt("delivered", ["0000unknownid"])),  # no such message
    ])

    assert await chat.deliveries() == []
    assert [i.item_id for i in await chat.pending(b)] == [m1]
    assert await chat.pending(a) == []
    assert await chat.pending(c) == []


async def test_receipt_after_message_in_one_batch_sees_the_committed_message(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    earlier = await chat.commit_message(a, b, "c0")

    await router.process([
        outbox_record(a, message("c1", to=b)),
        outbox_record(b, receipt("delivered", [earlier])),
    ])

    envs = envs_of(await chat.deliveries(), a)
    assert [e["type"] for e in envs] == ["ack", "receipt"]  # the message before the receipt is answered first
    assert [orjson.loads(i.envelope)["client_id"] for i in await chat.pending(b)] == ["c1"]


async def _group_message(chat: Chat, sender: str, gid: str, client_id: str) -> str:
    """Send a group message through the real group router; returns its server id."""
    await GroupRouter(chat.bus, chat.store, chat.outlet).process([outbox_record(sender, message(client_id, group=gid))])
    [stored] = [m for m in await chat.store.history(gid, None, 100) if m.client_id == client_id]
    await chat.deliveries()  # forget the group router's own output
    return stored.server_id


async def test_group_message_receipts_from_members_are_accepted(chat: Chat, router: Router) -> None:
    a, b, c, outsider = await chat.user(), await chat.user(), await chat.user(), await chat.user()
    chat.online(a)
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", a, [b, c])
    gm = await _group_message(chat, a, gid, "g1")

    await router.process([
        outbox_record(b, receipt("delivered", [gm])),
        outbox_record(c, receipt("read", [gm])),
        outbox_record(a, receipt("read", [gm])),  # the sender's own receipt is ignored
        outbox_record(outsider, receipt("read", [gm])),  # not a member: ignored
    ])

    assert envs_of(await chat.deliveries(), a) == [
        {"type": "receipt", "status": "delivered", "ids": [gm], "from": b},
        {"type": "receipt", "status": "read", "ids": [gm], "from": c},
    ]
    assert await chat.pending(b) == []
    assert [i.item_id for i in await chat.pending(c)] == [gm]  # read keeps it


async def test_removed_member_can_still_confirm_a_group_message_addressed_to_it(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", a, [b, c])
    gm = await _group_message(chat, a, gid, "g1")
    await chat.store.remove_member(gid, b)

    await router.process([outbox_record(b, receipt("delivered", [gm]))])

    assert await chat.pending(b) == []


async def test_member_added_later_may_mark_older_group_messages_read(chat: Chat, router: Router) -> None:
    """Members may read a group's whole history, so a read receipt from a later member counts."""
    a, b, late = await chat.user(), await chat.user(), await chat.user()
    chat.online(a)
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", a, [b])
    gm = await _group_message(chat, a, gid, "g1")
    await chat.store.add_members(gid, [late])

    await router.process([outbox_record(late, receipt("read", [gm]))])

    assert envs_of(await chat.deliveries(), a) == [{"type": "receipt", "status": "read", "ids": [gm], "from": late}]


# --- receipts from the working set, not from history ------------------------------------


@pytest.fixture
def no_history(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every history read of ``chat.store`` fail the test; returns the reads attempted."""
    reads: list[str] = []

    async def get_messages(server_ids: list[str]) -> list[object]:
        reads.append(f"get_messages {server_ids}")
        raise AssertionError("history read on the hot path")

    async def history(conversation: str, before: str | None, limit: int) -> list[object]:
        reads.append(f"history {conversation}")
        raise AssertionError("history read on the hot path")

    monkeypatch.setattr(chat.store, "get_messages", get_messages)
    monkeypatch.setattr(chat.store, "history", history)
    return reads


async def test_accept_deliver_and_receipts_never_read_history(chat: Chat, router: Router,
                                                              no_history: list[str]) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    for u in (a, b, c):
        chat.online(u)
    gid = ids.group_id()
    await chat.store.create_group(gid, "team", a, [b, c])
    groups = GroupRouter(chat.bus, chat.store, chat.outlet)

    await router.process([outbox_record(a, message("c1", to=b)), outbox_record(a, message("c1", to=b))])
    await groups.process([outbox_record(a, message("g1", group=gid))])
    delivered = await chat.deliveries()
    [m1] = {e["id"] for e in envs_of(delivered, b) if e["client_id"] == "c1"}
    [g1] = {e["id"] for e in envs_of(delivered, c)}
    # b reads a message before confirming it (still pending), then confirms both; c confirms, then reads
    await router.process([outbox_record(b, receipt("read", [m1])), outbox_record(c, receipt("delivered", [g1]))])
    await router.process([outbox_record(b, receipt("delivered", [m1, g1])), outbox_record(c, receipt("read", [g1]))])
    await router.process([outbox_record(b, receipt("read", [g1]))])

    assert envs_of(await chat.deliveries(), a) == [
        {"type": "receipt", "status": "read", "ids": [m1], "from": b},
        {"type": "receipt", "status": "delivered", "ids": [g1], "from": c},
        {"type": "receipt", "status": "delivered", "ids": [m1, g1], "from": b},
        {"type": "receipt", "status": "read", "ids": [g1], "from": c},
        {"type": "receipt", "status": "read", "ids": [g1], "from": b},
    ]
    assert await chat.pending(b) == []
    assert await chat.pending(c) == []
    assert no_history == []


async def test_a_router_that_never_saw_a_message_still_routes_its_receipts(chat: Chat, router: Router) -> None:
    """After a restart (a new router remembers no routes) a ``read`` of a message no longer pending, or
    a repeated ``delivered``, is looked up in history: the sender still hears of it."""
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    m1 = await chat.commit_message(a, b, "c1")
    await router.process([outbox_record(b, receipt("delivered", [m1]))])
    await chat.deliveries()

    restarted = Router(chat.bus, chat.store, chat.outlet)
    await restarted.process([outbox_record(b, receipt("read", [m1])), outbox_record(b, receipt("delivered", [m1]))])

    assert envs_of(await chat.deliveries(), a) == [
        {"type": "receipt", "status": "read", "ids": [m1], "from": b},
        {"type": "receipt", "status": "delivered", "ids": [m1], "from": b},
    ]


async def test_remembered_routes_do_not_widen_who_may_send_a_receipt(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    chat.online(a)
    m1 = await chat.commit_message(a, b, "c1")
    await router.process([outbox_record(b, receipt("delivered", [m1]))])  # remembers m1's route
    await chat.deliveries()

    await router.process([outbox_record(c, receipt("read", [m1])), outbox_record(a, receipt("read", [m1]))])

    assert await chat.deliveries() == []


async def test_a_batch_costs_the_store_one_hand_off_and_one_commit_however_many_it_holds(
    chat: Chat, router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages and ``delivered`` receipts of one batch: one transaction for all of the batch's writes,
    the store's only hand-off: the fixed cost per batch does not grow with it. (That the recipients exist
    was read with the first batch that named them, as who blocks a sender: the store remembers the users it
    found, ``BlockList`` the blocks.)"""
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    chat.online(b)
    earlier = [await chat.commit_message(a, b, f"c{i}") for i in range(3)]
    await router.process([outbox_record(a, message("w1", to=b)), outbox_record(b, message("w2", to=a))])
    await chat.deliveries()
    hops: list[str] = []
    real = chat.store._run

    async def counted(fn: Any) -> Any:
        hops.append(getattr(fn, "__qualname__", "?"))
        return await real(fn)

    statements: list[str] = []
    await chat.store._run(lambda conn: conn.set_trace_callback(statements.append))
    monkeypatch.setattr(chat.store, "_run", counted)

    await router.process([
        outbox_record(a, message("m1", to=b)),
        outbox_record(b, receipt("delivered", earlier[:2])),
        outbox_record(b, message("m2", to=a)),
        outbox_record(b, receipt("delivered", earlier[2:])),
        outbox_record(a, message("m3", to=b)),
    ])

    assert len(hops) == 1
    assert [st for st in statements if st == "COMMIT"] == ["COMMIT"]
    envs = envs_of(await chat.deliveries(), a)
    assert [e["type"] for e in envs] == ["ack", "ack", "message", "receipt"]
    assert envs[-1] == {"type": "receipt", "status": "delivered", "ids": earlier, "from": b}
    assert [orjson.loads(i.envelope)["client_id"] for i in await chat.pending(b)] == ["w1", "m1", "m3"]


def test_routes_forget_the_oldest_beyond_their_size() -> None:
    routes = Routes(size=2)
    r1, r2, r3 = (Route(f"s{i}", "a", "b", None) for i in range(3))
    routes.remember([r1, r2])
    routes.remember([r1])  # seen again: now the newest
    routes.remember([r3])
    assert ("s0" in routes, "s1" in routes, "s2" in routes) == (True, False, True)
    assert routes.get("s2") == r3


def test_routes_kept_add_nothing_to_the_collectors_full_passes() -> None:
    # tens of thousands of tracked routes, long-lived, made the collector's full passes (each a stalled
    # loop of 25-50 ms) come about once a second under load
    routes = Routes(size=20_000)
    gc.collect()
    before = len(gc.get_objects())
    routes.remember(Route(f"s{i}", f"u{i}", f"v{i}" if i % 2 else None, None if i % 2 else f"g{i}")
                    for i in range(20_000))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert routes.get("s7") == Route("s7", "u7", "v7", None)
    assert routes.get("s8") == Route("s8", "u8", None, "g8")
    assert routes.get("s-none") is None


class CountingFiles(LocalFileStore):
    """A ``LocalFileStore`` that counts the calls the router makes."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.calls: list[str] = []

    async def info(self, file_id: str) -> FileInfo | None:
        self.calls.append("info")
        return await super().info(file_id)

    async def add_conversation(self, file_id: str, conversation: str) -> None:
        self.calls.append("add_conversation")
        await super().add_conversation(file_id, conversation)


async def test_a_file_sent_is_recorded_in_its_conversation_and_plain_messages_cost_no_file_call(
    chat: Chat, tmp_path: Path
) -> None:
    files = CountingFiles(tmp_path / "files")
    await files.start()
    router = Router(chat.bus, chat.store, chat.outlet, files)
    a, b, c = await chat.user("alice"), await chat.user("bob"), await chat.user("carl")
    chat.online(a)
    chat.online(c)
    (tmp_path / "doc").write_bytes(b"doc")
    doc = FileInfo(new_file_id(), a, 3, "text/plain", "x", 1)
    await files.put(doc, tmp_path / "doc")

    plain = message("c0", to=b)
    plain["body"] = {"text": "a \"file\" in the text", "files": ["f1"]}
    await router.process([outbox_record(a, plain)])
    assert files.calls == []

    with_file = message("c1", to=b)
    with_file["body"] = {"file": doc.file_id, "name": "doc.txt"}
    foreign = message("c2", to=a)
    foreign["body"] = {"file": doc.file_id}  # carl may not read alice's file
    await router.process([outbox_record(a, with_file), outbox_record(c, foreign)])
    stored = await files.info(doc.file_id)
    assert stored is not None
    assert stored.conversations == (ids.conversation_key(a, b),)
    deliveries = await chat.deliveries()
    assert [(e["type"], e.get("code")) for e in envs_of(deliveries, c)] == [("error", "forbidden")]
    assert [e["type"] for e in envs_of(deliveries, a)] == ["ack", "ack"]  # c0 and c1
