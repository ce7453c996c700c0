"""End to end: ``chatmq serve`` as a subprocess, real paho clients (TCP and WebSocket), real HTTP."""

from __future__ import annotations

import contextlib
import sqlite3

import httpx
import pytest

from chatmq.devices.sdk import MessageRejectedError
from tests.e2e.harness import ClusterDeployment, Deployment, Peer, RawClient, ServerProcess, Users

TIMEOUT = 15


def bodies(messages: list[dict[str, object]]) -> list[object]:
    return [m["body"] for m in messages]


def test_one_to_one_both_online(users: Users, transport: str) -> None:
    alice, bob = users(transport=transport), users(transport=transport)
    sent = [alice.send(bob.uid, {"n": i}) for i in range(20)]
    acks = [alice.wait_ack(cid, TIMEOUT) for cid in sent]
    got = bob.wait_messages(20, TIMEOUT)
    assert bodies(got) == [{"n": i} for i in range(20)]
    assert [m["id"] for m in got] == [a["id"] for a in acks]
    assert all(m["from"] == alice.uid and m["to"] == bob.uid and m["group"] is None for m in got)
    assert [m["client_id"] for m in got] == sent
    assert alice.messages == []


def test_both_ways_mixed_transports(users: Users) -> None:
    alice, bob = users(transport="tcp"), users(transport="websockets")
    alice.wait_ack(alice.send(bob.uid, "hi bob"), TIMEOUT)
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "hi bob"}
    bob.wait_ack(bob.send(alice.uid, "hi alice"), TIMEOUT)
    assert alice.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "hi alice"}


def test_group_of_three(users: Users, transport: str) -> None:
    alice, bob, carol = (users(transport=transport) for _ in range(3))
    group = alice.create_group("friends", [bob.uid, carol.uid])
    gid = group["group_id"]
    for member in (alice, bob, carol):
        created = member.wait_for(lambda m=member: [e for e in m.events if e["event"] == "group_created"],  # type: ignore[misc]
                                  TIMEOUT)
        assert created[0]["group"]["group_id"] == gid
    alice.wait_ack(alice.send_group(gid, "hello all"), TIMEOUT)
    bob.wait_ack(bob.send_group(gid, "hi from bob"), TIMEOUT)
    for member, expected in ((bob, ["hello all"]), (carol, ["hello all", "hi from bob"]),
                             (alice, ["hi from bob"])):
        got = member.wait_messages(len(expected), TIMEOUT)
        assert [m["body"]["text"] for m in got] == expected
        assert all(m["group"] == gid and m["to"] == member.uid for m in got)


def test_offline_recipient_gets_exactly_its_pending_in_order(users: Users) -> None:
    alice = users()
    bob = users(connect=False)
    sent = [alice.send(bob.uid, {"n": i}) for i in range(50)]
    for cid in sent:
        alice.wait_ack(cid, TIMEOUT)
    bob.connect()
    got = bob.wait_messages(50, TIMEOUT)
    assert bodies(got) == [{"n": i} for i in range(50)]
    # delivered receipts flow back and empty the queue: a later connection gets nothing again
    alice.wait_for(lambda: sum(len(r["ids"]) for r in alice.receipts if r["status"] == "delivered") == 50,
                   TIMEOUT)
    bob.disconnect()
    bob.clear()
    bob._seen.clear()
    bob.connect()
    alice.wait_ack(alice.send(bob.uid, {"n": "after"}), TIMEOUT)
    assert bodies(bob.wait_messages(1, TIMEOUT)) == [{"n": "after"}]


def test_disconnect_in_the_middle_of_replay_loses_nothing(users: Users) -> None:
    alice = users()
    bob = users(connect=False, auto_delivered=False)
    n = 400
    sent = [alice.send(bob.uid, {"n": i}) for i in range(n)]
    for cid in sent:
        alice.wait_ack(cid, TIMEOUT)
    bob.connect()
    bob.wait_messages(20, TIMEOUT)
    bob.disconnect()  # in the middle of the replay, nothing confirmed
    first = list(bob.messages)
    assert len(first) < n, "replay finished before the disconnect; test proves nothing"
    bob.auto_delivered = True
    bob.clear()
    bob._seen.clear()
    bob.connect()
    got = bob.wait_messages(n, TIMEOUT)
    assert bodies(got) == [{"n": i} for i in range(n)]
    assert len({m["id"] for m in got}) == n


def test_receipts_flow_back_to_the_sender(users: Users) -> None:
    alice, bob = users(), users()
    cid = alice.send(bob.uid, "read me")
    sid = alice.wait_ack(cid, TIMEOUT)["id"]
    bob.wait_messages(1, TIMEOUT)
    delivered = alice.wait_for(lambda: [r for r in alice.receipts if r["status"] == "delivered"], TIMEOUT)
    assert (delivered[0]["ids"], delivered[0]["from"]) == ([sid], bob.uid)
    bob.mark_read([sid])
    read = alice.wait_for(lambda: [r for r in alice.receipts if r["status"] == "read"], TIMEOUT)
    assert (read[0]["ids"], read[0]["from"]) == ([sid], bob.uid)


def test_receipt_for_someone_elses_message_is_ignored(users: Users) -> None:
    alice, bob, mallory = users(), users(), users()
    sid = alice.wait_ack(alice.send(bob.uid, "private"), TIMEOUT)["id"]
    bob.wait_messages(1, TIMEOUT)
    mallory.mark_read([sid])
    bob.mark_read([sid])
    read = alice.wait_for(lambda: [r for r in alice.receipts if r["status"] == "read"], TIMEOUT)
    assert [r["from"] for r in read] == [bob.uid]


def test_repeated_client_id_is_delivered_once(server: Deployment, users: Users) -> None:
    alice, bob = users(), users(connect=False)
    first = alice.wait_ack(alice.send(bob.uid, "once", client_id="fixed-1"), TIMEOUT)
    alice.acks.clear()
    second = alice.wait_ack(alice.send(bob.uid, "once", client_id="fixed-1"), TIMEOUT)
    assert first["id"] == second["id"]
    alice.wait_ack(alice.send(bob.uid, "marker"), TIMEOUT)
    # a bare subscriber sees every PUBLISH the server sends, with no client-side de-duplication
    inbox = RawClient(server, bob.uid, bob.access_token)
    try:
        inbox.wait(lambda: inbox.connack)
        inbox.client.subscribe(f"users/{bob.uid}/inbox", 1)
        inbox.wait(lambda: any(m.get("body") == {"text": "marker"} for m in inbox.inbox))
        messages = [m for m in inbox.inbox if m["type"] == "message"]
        assert [m["body"]["text"] for m in messages] == ["once", "marker"]
    finally:
        inbox.close()
    history = bob.history(alice.uid)["messages"]
    assert [m["body"] for m in history] == [{"text": "marker"}, {"text": "once"}]


def test_history_pages_newest_first(users: Users) -> None:
    alice, bob = users(), users()
    ids = [alice.wait_ack(alice.send(bob.uid, {"n": i}), TIMEOUT)["id"] for i in range(7)]
    page1 = bob.history(alice.uid, limit=4)
    assert [m["id"] for m in page1["messages"]] == ids[::-1][:4]
    page2 = bob.history(alice.uid, before=page1["next_before"], limit=4)
    assert [m["id"] for m in page2["messages"]] == ids[::-1][4:]
    assert page2["next_before"] is None


def test_unauthenticated_rest_is_refused(server: Deployment) -> None:
    r = httpx.get(f"{server.api_url}/api/v1/users/me")
    assert r.status_code == 401


# --- message actions: edit, delete, reaction, reply_to ----------------------------------------------------------


def age_message(server: Deployment, server_id: str, ms: int) -> None:
    """Make a stored message ``ms`` older, in the deployment's own store (an edit window passing)."""
    if isinstance(server, ClusterDeployment):
        with server._database() as db:
            assert db.messages.update_one({"_id": server_id}, {"$inc": {"ts": -ms}}).modified_count == 1
        return
    assert isinstance(server, ServerProcess)
    with contextlib.closing(sqlite3.connect(server.data_dir / "chatmq.db", timeout=10)) as conn, conn:
        assert conn.execute("UPDATE messages SET ts = ts - ? WHERE server_id = ?", (ms, server_id)).rowcount == 1


def refusal(client: Peer, client_id: str) -> dict[str, object]:
    """The ``error`` the server answered ``client_id`` with (``MessageRejectedError``'s envelope)."""
    with pytest.raises(MessageRejectedError) as err:
        client.wait_ack(client_id, TIMEOUT)
    return err.value.envelope


def test_edit_reaction_delete_arrive_live_and_show_in_history(users: Users) -> None:
    alice, bob = users(), users()
    sid = alice.wait_ack(alice.send(bob.uid, "helo"), TIMEOUT)["id"]
    bob.wait_messages(1, TIMEOUT)
    react = bob.wait_ack(bob.react(sid, "👍"), TIMEOUT)
    edit = alice.wait_ack(alice.edit(sid, "hello"), TIMEOUT)
    [reaction] = alice.wait_for(lambda: alice.actions, TIMEOUT)
    assert {k: reaction[k] for k in ("type", "id", "from", "to", "group", "target", "emoji", "remove")} == {
        "type": "reaction", "id": react["id"], "from": bob.uid, "to": alice.uid, "group": None, "target": sid,
        "emoji": "👍", "remove": False}
    [edited] = bob.wait_for(lambda: bob.actions, TIMEOUT)
    assert (edited["type"], edited["id"], edited["target"], edited["body"]) == ("edit", edit["id"], sid,
                                                                               {"text": "hello"})
    for viewer, peer in ((alice, bob), (bob, alice)):
        [item] = viewer.history(peer.uid)["messages"]
        assert (item["body"], item["edited_at"], item["deleted"], item["reactions"]) == (
            {"text": "hello"}, edit["ts"], False, {"👍": [bob.uid]})
    bob.wait_ack(bob.react(sid, "👍", remove=True), TIMEOUT)
    alice.wait_ack(alice.delete(sid), TIMEOUT)
    gone = bob.wait_for(lambda: [a for a in bob.actions if a["type"] == "delete"], TIMEOUT)
    assert [(a["target"], a["for"], a["from"]) for a in gone] == [(sid, "everyone", alice.uid)]
    [item] = bob.history(alice.uid)["messages"]
    assert (item["id"], item["body"], item["deleted"], item["reactions"]) == (sid, {}, True, {})


def test_group_actions_reach_an_offline_member_on_replay_in_order(users: Users) -> None:
    alice, bob = users(), users()
    carol = users(connect=False)
    gid = alice.create_group("actions", [bob.uid, carol.uid])["group_id"]
    sid = alice.wait_ack(alice.send_group(gid, "draft"), TIMEOUT)["id"]
    reply = bob.wait_ack(bob.send_group(gid, "nice", reply_to=sid), TIMEOUT)["id"]
    alice.wait_ack(alice.edit(sid, "final"), TIMEOUT)
    bob.wait_ack(bob.react(sid, "🎉"), TIMEOUT)
    gone = alice.wait_ack(alice.send_group(gid, "oops"), TIMEOUT)["id"]
    alice.wait_ack(alice.edit(gone, "oops, secret"), TIMEOUT)
    alice.wait_ack(alice.delete(gone), TIMEOUT)
    carol.connect()
    carol.wait_for(lambda: len(carol.actions) >= 3 and len(carol.messages) >= 2, TIMEOUT)
    got = list(carol.actions)
    # the deleted message and its edit never reach carol: their bodies left storage with the delete
    assert [(m["id"], m["body"], m.get("reply_to")) for m in carol.messages] == [
        (sid, {"text": "draft"}, None), (reply, {"text": "nice"}, sid)]
    assert [(a["type"], a["target"], a["group"], a["to"]) for a in got] == [
        ("edit", sid, gid, carol.uid), ("reaction", sid, gid, carol.uid), ("delete", gone, gid, carol.uid)]
    assert "secret" not in str(carol.history(gid))
    history = {m["id"]: m for m in carol.history(gid)["messages"]}
    assert (history[sid]["body"], history[sid]["reactions"]) == ({"text": "final"}, {"🎉": [bob.uid]})
    assert history[reply]["reply_to"] == sid
    assert (history[gone]["body"], history[gone]["deleted"]) == ({}, True)


def test_actions_that_are_not_the_senders_to_make_are_refused(server: Deployment, users: Users) -> None:
    alice, bob, mallory = users(), users(), users()
    sid = alice.wait_ack(alice.send(bob.uid, "mine"), TIMEOUT)["id"]
    elsewhere = mallory.wait_ack(mallory.send(bob.uid, "other conversation"), TIMEOUT)["id"]
    codes = {
        "edit someone else's": refusal(bob, bob.edit(sid, "yours now"))["code"],
        "delete someone else's for everyone": refusal(bob, bob.delete(sid))["code"],
        "react outside the conversation": refusal(mallory, mallory.react(sid, "👎"))["code"],
        "edit an unknown id": refusal(alice, alice.edit("01NOSUCHMESSAGE", "x"))["code"],
        "reply into another conversation": refusal(alice, alice.send(bob.uid, "re", reply_to=elsewhere))["code"],
    }
    assert codes == {"edit someone else's": "forbidden", "delete someone else's for everyone": "forbidden",
                     "react outside the conversation": "not_found", "edit an unknown id": "not_found",
                     "reply into another conversation": "not_found"}
    age_message(server, sid, 49 * 3600 * 1000)
    late = refusal(alice, alice.edit(sid, "too late"))
    assert (late["code"], sid in str(late["reason"])) == ("edit_window_passed", True)
    # for me: gone from bob's history only; nothing reaches alice
    bob.wait_ack(bob.delete(sid, "me"), TIMEOUT)
    assert [m["id"] for m in bob.history(alice.uid)["messages"]] == []
    [kept] = alice.history(bob.uid)["messages"]
    assert (kept["id"], kept["body"], kept["deleted"]) == (sid, {"text": "mine"}, False)
    assert alice.actions == []
