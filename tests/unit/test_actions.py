"""Message actions in the router (``chatmq.services.chat.actions``): the store read only for actions and
replies, resends acked once with the first server id, group actions fanned out once per node."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatmq.core import ids
from chatmq.core.records import DELIVERIES
from chatmq.services.chat.group_router import GroupRouter
from chatmq.services.chat.router import Router
from chatmq.services.store.base import StoredMessage
from tests.unit.chat_fixtures import NODE, OTHER_NODE, Chat, envs_of, message, outbox_record


@pytest.fixture
def history_reads(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The server ids of every ``Store.get_messages`` call (history read by primary key)."""
    calls: list[list[str]] = []
    real = chat.store.get_messages

    async def spy(server_ids: list[str]) -> list[StoredMessage]:
        calls.append(list(server_ids))
        return await real(server_ids)

    monkeypatch.setattr(chat.store, "get_messages", spy)
    return calls


def reaction(client_id: str, target: str, emoji: str = "👍") -> dict[str, Any]:
    return {"type": "reaction", "id": client_id, "target": target, "emoji": emoji}


async def test_plain_messages_never_read_history(chat: Chat, router: Router, history_reads: list[list[str]]) -> None:
    a, b = await chat.user(), await chat.user()
    await router.process([outbox_record(a, message(f"c{i}", to=b)) for i in range(5)])
    assert history_reads == []
    sid = (await chat.pending(b))[0].item_id
    await router.process([outbox_record(a, {**message("r1", to=b), "reply_to": sid}),
                          outbox_record(b, reaction("x1", sid))])
    assert history_reads == [[sid], [sid]]  # the reply's check, then the action's target: by primary key


async def test_a_resent_action_is_acked_with_its_first_server_id_and_pending_again(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a, NODE)
    chat.online(b, OTHER_NODE)
    sid = await chat.commit_message(a, b, "m1")
    await router.process([outbox_record(b, reaction("x1", sid))])
    await router.process([outbox_record(b, reaction("x1", sid))])  # no ack came: the client resends
    got = await chat.deliveries()
    acks = [e for e in envs_of(got, b) if e["type"] == "ack"]
    assert len(acks) == 2
    assert acks[0]["id"] == acks[1]["id"]
    reactions = [e for e in envs_of(got, a) if e["type"] == "reaction"]
    assert [e["id"] for e in reactions] == [acks[0]["id"]] * 2  # the pending copy again; the client drops it
    [stored] = await chat.store.history(f"{min(a, b)}:{max(a, b)}", None, 10)
    assert stored.reactions == {"👍": [b]}


async def test_a_group_action_is_fanned_out_to_the_members_but_the_sender(chat: Chat, router: Router) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    group = await chat.store.create_group("g-actions", "team", a, [b, c])
    for user, node in ((a, NODE), (b, NODE), (c, OTHER_NODE)):
        chat.online(user, node)
    await GroupRouter(chat.bus, chat.store, chat.outlet).process(
        [outbox_record(a, message("m1", group=group.group_id))])
    [sid] = {e["id"] for e in envs_of(await chat.deliveries(), b) if e["type"] == "message"}
    await router.process([outbox_record(b, {"type": "edit", "id": "e1", "target": sid, "body": {"t": 1}})])
    await router.process([outbox_record(a, {"type": "edit", "id": "e2", "target": sid, "body": {"t": 2}})])
    got = await chat.deliveries()
    [refused] = [e for e in envs_of(got, b) if e["type"] == "error"]
    assert (refused["client_id"], refused["code"]) == ("e1", "forbidden")
    for member in (b, c):
        [edit] = [e for e in envs_of(got, member) if e["type"] == "edit"]
        assert (edit["to"], edit["group"], edit["target"], edit["body"]) == (member, group.group_id, sid, {"t": 2})
    assert [e["type"] for e in envs_of(got, a)] == ["ack"]


async def test_a_group_reply_must_answer_a_message_of_that_group(chat: Chat) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a, NODE)
    one = await chat.store.create_group("g-one", "one", a, [b])
    two = await chat.store.create_group("g-two", "two", a, [b])
    groups = GroupRouter(chat.bus, chat.store, chat.outlet)
    await groups.process([outbox_record(a, message("m1", group=one.group_id))])
    [sid] = [e["id"] for e in envs_of(await chat.deliveries(), a) if e["type"] == "ack"]
    await groups.process([outbox_record(a, {**message("r1", group=two.group_id), "reply_to": sid}),
                          outbox_record(a, {**message("r2", group=one.group_id), "reply_to": sid})])
    answers = envs_of(await chat.deliveries(), a)
    assert [(e["type"], e["client_id"]) for e in answers] == [("error", "r1"), ("ack", "r2")]
    assert (answers[0]["code"], answers[0]["reason"]) == (
        "not_found", f"reply_to {sid!r} names no message of this conversation")
    [reply] = await chat.store.history(one.group_id, None, 1)
    assert reply.reply_to == sid


async def test_an_action_of_one_device_is_copied_to_the_senders_other_devices_only(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    for device in ("phone", "laptop"):
        await chat.store.touch_session(a, device, ids.now_ms())
    chat.online(a, NODE)
    chat.online(b, OTHER_NODE)
    sid = await chat.commit_message(a, b, "m1")
    await router.process([outbox_record(a, {"type": "edit", "id": "e1", "target": sid, "body": {"text": "new"}},
                                        client="phone")])

    sent = [DELIVERIES.read(r) for r in await chat.probe.drain()]
    to_a = [(d.client, d.skip, [orjson.loads(bytes(e)) for e in d.envs]) for d in sent if d.user == a]
    [(ack_to, _, [ack]), (only, skip, [copy])] = to_a
    assert (ack_to, ack["type"], ack["client_id"]) == ("phone", "ack", "e1")
    # the laptop gets the very edit bob gets (``to`` bob); the phone, which made it, does not
    assert (only, skip) == (None, "phone")
    [for_b] = [orjson.loads(bytes(e)) for d in sent if d.user == b for e in d.envs]
    assert copy == for_b
    assert (copy["type"], copy["from"], copy["to"], copy["body"]) == ("edit", a, b, {"text": "new"})
    # pending for a's devices but the phone: the laptop gets it on its next connect
    [item] = [i for i in await chat.pending(a) if i.item_id == ack["id"]]
    assert await chat.store.device_has(a, "phone", [item.item_id]) == {item.item_id}
    assert await chat.store.device_has(a, "laptop", [item.item_id]) == set()


async def test_an_action_of_a_users_only_device_is_not_sent_back(chat: Chat, router: Router) -> None:
    a, b = await chat.user(), await chat.user()
    await chat.store.touch_session(a, "phone", ids.now_ms())
    chat.online(a, NODE)
    sid = await chat.commit_message(a, b, "m1")
    await router.process([outbox_record(a, reaction("x1", sid), client="phone")])
    assert [e["type"] for e in envs_of(await chat.deliveries(), a)] == ["ack"]
    assert [i.item_id for i in await chat.pending(a)] == []
