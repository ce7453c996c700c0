"""End to end: ``chatmq serve`` as a subprocess, real paho clients (TCP and WebSocket), real HTTP."""

from __future__ import annotations

import httpx

from tests.e2e.harness import Deployment, RawClient, Users

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
