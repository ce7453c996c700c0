"""Blocking and contacts end to end, embedded and clustered (issue 15): a blocked sender is refused with
``blocked`` and the blocker gets nothing (1:1), or only the others' messages (groups); contact lists and
address-book sync by phone, with numbers that are no user's kept only as keyed hashes."""

from __future__ import annotations

import hmac
import uuid

import httpx
import pytest

from chatmq.devices.sdk import MessageRejectedError
from chatmq.services.api.phones import phone_hash
from chatmq.services.store.base import Store
from tests.e2e.harness import Deployment, Peer, Users, read_store

TIMEOUT = 15


def api(server: Deployment, peer: Peer, method: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, f"{server.api_url}/api/v1{path}",
                         headers={"Authorization": f"Bearer {peer.access_token}"}, **kw)  # type: ignore[arg-type]


def test_a_blocked_sender_is_refused_and_the_blocker_gets_nothing(server: Deployment, users: Users) -> None:
    alice, bob = users(), users()
    assert api(server, alice, "PUT", f"/blocks/{bob.uid}").status_code == 204
    assert api(server, alice, "GET", "/blocks").json() == {"blocked": [bob.uid]}
    with pytest.raises(MessageRejectedError) as refused:
        bob.wait_ack(bob.send(alice.uid, "hello?"), TIMEOUT)
    assert refused.value.code == "blocked"
    assert alice.uid in refused.value.reason
    alice.wait_ack(alice.send(bob.uid, "I may still write"), TIMEOUT)  # one way only
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "I may still write"}

    assert api(server, alice, "DELETE", f"/blocks/{bob.uid}").status_code == 204
    bob.wait_ack(bob.send(alice.uid, "and now?"), TIMEOUT)
    # the refused message comes before this one in the conversation: had it been kept, it would show first
    assert [m["body"] for m in alice.wait_messages(1, TIMEOUT)] == [{"text": "and now?"}]
    history = api(server, alice, "GET", f"/conversations/{bob.uid}/messages").json()["messages"]
    assert [m["body"] for m in history] == [{"text": "and now?"}, {"text": "I may still write"}]


def test_in_a_group_the_blocker_does_not_get_the_blocked_members_messages(server: Deployment, users: Users) -> None:
    alice, bob, carol = users(), users(), users()
    assert api(server, alice, "PUT", f"/blocks/{bob.uid}").status_code == 204
    gid = alice.create_group("team", [bob.uid, carol.uid])["group_id"]
    bob.wait_ack(bob.send_group(gid, "from bob"), TIMEOUT)  # acked: bob is not told
    carol.wait_ack(carol.send_group(gid, "from carol"), TIMEOUT)
    assert [m["body"]["text"] for m in carol.wait_messages(1, TIMEOUT)] == ["from bob"]
    # the same group keeps its order: bob's message was routed before carol's
    assert [m["body"]["text"] for m in alice.wait_messages(1, TIMEOUT)] == ["from carol"]


def test_contact_list_and_sync_by_phone(server: Deployment, users: Users) -> None:
    alice, bob = users(connect=False), users(connect=False)
    bobs_phone = "+4915" + str(uuid.uuid4().int)[:9]
    stranger = "+4916" + str(uuid.uuid4().int)[:9]
    assert api(server, bob, "PATCH", "/users/me", json={"phone": bobs_phone}).json()["phone"] == bobs_phone
    carol = httpx.post(f"{server.api_url}/api/v1/auth/register", json={
        "username": f"c{uuid.uuid4().hex[:12]}", "password": "correct horse battery", "phone": bobs_phone})
    assert carol.status_code == 409  # one number, one user

    synced = api(server, alice, "POST", "/contacts/sync", json={"phones": [bobs_phone, stranger]})
    assert synced.status_code == 200
    assert synced.json()["phones"] == {bobs_phone: bob.uid}
    assert api(server, alice, "PUT", f"/contacts/{bob.uid}").status_code == 204
    assert [c["user_id"] for c in api(server, alice, "GET", "/contacts").json()["contacts"]] == [bob.uid]
    assert api(server, bob, "PUT", f"/contacts/{alice.uid}").status_code == 204

    key = hmac.digest(server.signing_key().encode(), b"chatmq phone hash key", "sha256")  # phone_hash_secret unset

    async def read(store: Store) -> tuple[list[str], dict[str, str], set[str]]:
        return (await store.phone_hashes(alice.uid), await store.user_ids_by_phones([stranger]),
                await store.mutual_contacts(alice.uid))

    hashes, found, mutual = read_store(server, read)
    assert hashes == [phone_hash(key, stranger)]  # only its keyed hash
    assert found == {}
    assert mutual == {bob.uid}
    assert api(server, alice, "DELETE", f"/contacts/{bob.uid}").status_code == 204
    assert api(server, alice, "GET", "/contacts").json() == {"contacts": []}


def test_conversation_list_unread_and_read(server: Deployment, users: Users) -> None:
    alice, bob, carol = users(), users(), users()
    gid = carol.create_group("club", [alice.uid])["group_id"]
    sent = [bob.send(alice.uid, f"b{i}") for i in range(3)]
    acks = [bob.wait_ack(cid, TIMEOUT) for cid in sent]
    carol.wait_ack(carol.send_group(gid, "club news"), TIMEOUT)
    alice.wait_messages(4, TIMEOUT)

    listed = api(server, alice, "GET", "/conversations").json()["conversations"]
    assert [(c["id"], c["kind"], c["unread"]) for c in listed] == [(gid, "group", 1), (bob.uid, "direct", 3)]
    assert listed[1]["last_message"]["id"] == acks[-1]["id"]
    assert listed[1]["last_message"]["body"] == {"text": "b2"}

    marked = api(server, alice, "POST", f"/conversations/{bob.uid}/read", json={"up_to": acks[1]["id"]})
    assert marked.status_code == 204
    # the read receipt reaches bob like one from alice's client
    bob.wait_for(lambda: [r for r in bob.receipts if r["status"] == "read"], TIMEOUT)
    assert [r["ids"] for r in bob.receipts if r["status"] == "read"] == [[a["id"] for a in acks[:2]]]
    assert [c["unread"] for c in api(server, alice, "GET", "/conversations").json()["conversations"]] == [1, 1]
    bob.wait_for(lambda: sum(len(r["ids"]) for r in bob.receipts if r["status"] == "delivered") >= 3, TIMEOUT)
    history = api(server, bob, "GET", f"/conversations/{alice.uid}/messages").json()["messages"]
    assert [m["status"] for m in history] == ["delivered", "read", "read"]  # alice's client confirmed all


def test_search_finds_only_the_callers_conversations(server: Deployment, users: Users) -> None:
    alice, bob, carol = users(), users(), users()
    word = f"zebra{uuid.uuid4().hex[:8]}"  # unique to this test: the deployment is shared
    mine = alice.wait_ack(alice.send(bob.uid, f"a {word} crossing"), TIMEOUT)
    bob.wait_ack(bob.send(carol.uid, f"another {word}, not alice's"), TIMEOUT)
    gid = carol.create_group("zoo", [alice.uid])["group_id"]
    in_group = carol.wait_ack(carol.send_group(gid, f"{word} at the zoo"), TIMEOUT)

    found = api(server, alice, "GET", "/search", params={"q": word.upper()}).json()["messages"]
    assert [m["id"] for m in found] == [in_group["id"], mine["id"]]
    only_bob = api(server, alice, "GET", "/search", params={"q": f"{word} crossing", "conversation": bob.uid})
    assert [m["body"]["text"] for m in only_bob.json()["messages"]] == [f"a {word} crossing"]
    assert len(api(server, carol, "GET", "/search", params={"q": word}).json()["messages"]) == 2


def test_an_edit_or_delete_shows_in_the_conversation_list_and_in_search(server: Deployment, users: Users) -> None:
    alice, bob = users(), users()
    old, new = f"walrus{uuid.uuid4().hex[:8]}", f"otter{uuid.uuid4().hex[:8]}"  # unique: the deployment is shared
    sid = alice.wait_ack(alice.send(bob.uid, f"the {old} is here"), TIMEOUT)["id"]
    assert [m["id"] for m in api(server, bob, "GET", "/search", params={"q": old}).json()["messages"]] == [sid]

    edit = alice.wait_ack(alice.edit(sid, f"the {new} is here"), TIMEOUT)
    [head] = api(server, bob, "GET", "/conversations").json()["conversations"]
    assert (head["last_message"]["id"], head["last_message"]["body"], head["last_message"]["edited_at"]) == (
        sid, {"text": f"the {new} is here"}, edit["ts"])
    assert api(server, bob, "GET", "/search", params={"q": old}).json()["messages"] == []
    [found] = api(server, bob, "GET", "/search", params={"q": new}).json()["messages"]
    assert (found["id"], found["body"]) == (sid, {"text": f"the {new} is here"})

    alice.wait_ack(alice.delete(sid), TIMEOUT)
    [head] = api(server, alice, "GET", "/conversations").json()["conversations"]
    assert (head["last_message"]["id"], head["last_message"]["body"], head["last_message"]["deleted"]) == (
        sid, {}, True)
    assert api(server, bob, "GET", "/search", params={"q": new}).json()["messages"] == []
