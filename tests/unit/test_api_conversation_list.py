"""``GET /conversations`` (newest activity first, unread, muted), ``POST /conversations/{id}/read`` (a read
marker and a ``read`` receipt) and the ``status`` of the caller's own messages in history."""

from __future__ import annotations

import asyncio
from typing import Any

from chatmq.core import ids
from tests.unit.conftest import ApiHarness
from tests.unit.test_api_conversations import _send
from tests.unit.test_store_actions import action

V1 = "/api/v1"


async def listing(api: ApiHarness, caller: str, **params: Any) -> dict[str, Any]:
    r = await api.client.get(f"{V1}/conversations", headers=api.auth(caller), params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_newest_activity_first_with_unread_counts(api: ApiHarness) -> None:
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    gid = (await api.client.post(f"{V1}/groups", headers=api.auth(alice), json={"name": "team", "members": [bob]})
           ).json()["group_id"]
    await _send(api, bob, to=alice, n=3)
    await _send(api, alice, group=gid, recipients=[bob])
    [last] = await _send(api, carol, to=alice)
    await _send(api, bob, to=carol)  # not alice's

    got = await listing(api, alice)
    assert [(c["id"], c["kind"], c["unread"]) for c in got["conversations"]] == [
        (carol, "direct", 1), (gid, "group", 0), (bob, "direct", 3)]
    first = got["conversations"][0]
    assert (first["peer"], first["group"], first["muted"]) == (carol, None, False)
    assert first["last_message"] == {"id": last, "from": carol, "body": {"text": "hello 0"},
                                     "ts": first["last_message"]["ts"], "edited_at": None, "deleted": False}
    assert got["conversations"][1]["group"] == {"group_id": gid, "name": "team"}
    assert got["next_before"] is None
    # paging
    page = await listing(api, alice, limit=2)
    assert [c["id"] for c in page["conversations"]] == [carol, gid]
    rest = await listing(api, alice, limit=2, before=page["next_before"])
    assert [c["id"] for c in rest["conversations"]] == [bob]
    assert (await listing(api, carol))["conversations"][0]["unread"] == 1


async def test_the_list_shows_the_last_message_as_edited_and_as_deleted(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    [older, last] = await _send(api, alice, to=bob, n=2)
    edit = action(alice, "edit", last, body=b'{"text": "fixed typo"}', to=[bob])
    await api.store.apply_actions([edit, action(alice, "edit", older, body=b'{"text": "not the last"}')])
    [item] = (await listing(api, bob))["conversations"]
    assert item["last_message"] == {"id": last, "from": alice, "body": {"text": "fixed typo"},
                                    "ts": item["last_message"]["ts"], "edited_at": edit.ts, "deleted": False}

    await api.store.apply_actions([action(alice, "delete", last, to=[bob])])
    [item] = (await listing(api, alice))["conversations"]
    assert (item["last_message"]["id"], item["last_message"]["body"], item["last_message"]["deleted"]) == (
        last, {}, True)


async def test_marking_read_clears_unread_and_sends_a_read_receipt(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    sids = await _send(api, bob, to=alice, n=3)
    mine = await _send(api, alice, to=bob)
    r = await api.client.post(f"{V1}/conversations/{bob}/read", headers=api.auth(alice), json={"up_to": sids[1]})
    assert r.status_code == 204
    assert api.feed.reads == [(alice, sids[:2])]  # others' messages only
    assert [c["unread"] for c in (await listing(api, alice))["conversations"]] == [1]
    # a marker never goes back, and a repeat tells nobody again
    await api.client.post(f"{V1}/conversations/{bob}/read", headers=api.auth(alice), json={"up_to": sids[0]})
    await api.client.post(f"{V1}/conversations/{bob}/read", headers=api.auth(alice), json={"up_to": mine[0]})
    assert api.feed.reads == [(alice, sids[:2]), (alice, sids[2:])]
    assert [c["unread"] for c in (await listing(api, alice))["conversations"]] == [0]
    bad = await api.client.post(f"{V1}/conversations/{bob}/read", headers=api.auth(alice), json={"up_to": "x y"})
    assert bad.status_code == 422
    unknown = await api.client.post(f"{V1}/conversations/u_nobody/read", headers=api.auth(alice),
                                    json={"up_to": sids[0]})
    assert unknown.status_code == 404


async def test_mute_shows_in_the_list(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    await _send(api, bob, to=alice)
    assert (await api.client.put(f"{V1}/conversations/{bob}/mute", headers=api.auth(alice))).status_code == 204
    assert [c["muted"] for c in (await listing(api, alice))["conversations"]] == [True]
    assert [c["muted"] for c in (await listing(api, bob))["conversations"]] == [False]
    assert (await api.client.delete(f"{V1}/conversations/{bob}/mute", headers=api.auth(alice))).status_code == 204
    assert [c["muted"] for c in (await listing(api, alice))["conversations"]] == [False]


async def test_history_status_of_own_messages_sent_delivered_read(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    first, second = await _send(api, alice, to=bob, n=2)

    async def statuses() -> list[Any]:
        r = await api.client.get(f"{V1}/conversations/{bob}/messages", headers=api.auth(alice))
        return [m["status"] for m in r.json()["messages"]]

    assert await statuses() == ["sent", "sent"]
    await api.store.remove_pending(bob, [first])  # bob's client confirmed the first
    assert await statuses() == ["sent", "delivered"]
    await api.client.post(f"{V1}/conversations/{alice}/read", headers=api.auth(bob), json={"up_to": first})
    assert await statuses() == ["sent", "read"]
    await api.client.post(f"{V1}/conversations/{alice}/read", headers=api.auth(bob), json={"up_to": second})
    assert await statuses() == ["read", "read"]  # read implies delivered


async def test_group_history_counts_receipts_per_recipient(api: ApiHarness) -> None:
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    gid = (await api.client.post(f"{V1}/groups", headers=api.auth(alice),
                                 json={"name": "team", "members": [bob, carol]})).json()["group_id"]
    [sid] = await _send(api, alice, group=gid, recipients=[bob, carol])
    await api.store.remove_pending(bob, [sid])
    await api.client.post(f"{V1}/conversations/{gid}/read", headers=api.auth(bob), json={"up_to": sid})
    [m] = (await api.client.get(f"{V1}/conversations/{gid}/messages", headers=api.auth(alice))).json()["messages"]
    assert (m["status"], m["receipts"]) == ("sent", {"recipients": 2, "delivered": 1, "read": 1})
    await api.store.remove_pending(carol, [sid])
    [m] = (await api.client.get(f"{V1}/conversations/{gid}/messages", headers=api.auth(alice))).json()["messages"]
    assert (m["status"], m["receipts"]) == ("delivered", {"recipients": 2, "delivered": 2, "read": 1})
    [seen] = (await api.client.get(f"{V1}/conversations/{gid}/messages", headers=api.auth(bob))).json()["messages"]
    assert (seen["status"], seen["receipts"]) == (None, None)


async def test_group_receipts_count_every_member_of_a_message_sent_in_the_creations_ms(api: ApiHarness) -> None:
    """Members created together share the group's ``joined_at`` (their order is a position, not a spread of
    ``joined_at``): a message stamped in that very ms is for all of them; a later member's is not."""
    alice, bob, carol, dave = (await api.user("alice"), await api.user("bob"), await api.user("carol"),
                               await api.user("dave"))
    group = await api.store.create_group(ids.group_id(), "team", alice, [bob, carol])
    [sid] = await _send(api, alice, group=group.group_id, recipients=[bob, carol], ts=group.created_at)
    await asyncio.sleep(0.002)  # dave joins in a later ms than the message's
    assert await api.store.add_members(group.group_id, [dave]) == [dave]
    await api.store.remove_pending(bob, [sid])
    r = await api.client.get(f"{V1}/conversations/{group.group_id}/messages", headers=api.auth(alice))
    [m] = r.json()["messages"]
    assert (m["status"], m["receipts"]) == ("sent", {"recipients": 2, "delivered": 1, "read": 0})
    await api.store.remove_pending(carol, [sid])
    [m] = (await api.client.get(f"{V1}/conversations/{group.group_id}/messages",
                                headers=api.auth(alice))).json()["messages"]
    assert (m["status"], m["receipts"]) == ("delivered", {"recipients": 2, "delivered": 2, "read": 0})
