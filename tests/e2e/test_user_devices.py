"""End to end, both modes: the devices of a user (issue 15): every MQTT client id a user connects with
gets what is pending until that client confirms it, a new one first gets the last ``sync_window`` days of
its conversations, the sender's other devices get copies of what it sent and of its receipts, and
``/users/me/sessions`` lists and signs out devices."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import httpx
import pytest

from tests.e2e.harness import Deployment, Peer

TIMEOUT = 15
PASSWORD = "correct horse battery"


class Device(Protocol):
    """``devices(username, register=False, connect=True, client_id=None)``: a device (client) of that user."""

    def __call__(self, username: str, *, register: bool = False, connect: bool = True,
                 client_id: str | None = None, auto_delivered: bool = True) -> Peer: ...


@pytest.fixture
def devices(server: Deployment) -> Iterator[Device]:
    made: list[Peer] = []

    def device(username: str, *, register: bool = False, connect: bool = True, client_id: str | None = None,
               auto_delivered: bool = True) -> Peer:
        c = Peer(server.api_url, server.host, server.mqtt_port, client_id=client_id, auto_delivered=auto_delivered)
        made.append(c)
        if register:
            c.register(username, PASSWORD)
        c.login(username, PASSWORD)
        if connect:
            c.connect()
        return c

    yield device
    for c in made:
        c.close()


def name() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


def sessions(server: Deployment, peer: Peer) -> list[dict[str, object]]:
    r = httpx.get(f"{server.api_url}/api/v1/users/me/sessions",
                  headers={"Authorization": f"Bearer {peer.access_token}"})
    assert r.status_code == 200, r.text
    return list(r.json()["sessions"])


def known_sessions(server: Deployment, peer: Peer, count: int) -> list[dict[str, object]]:
    """The caller's sessions once ``count`` are recorded (at most ``TIMEOUT`` seconds)."""
    deadline = time.monotonic() + TIMEOUT
    while len(listed := sessions(server, peer)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return listed


def test_one_device_confirms_the_other_still_gets_it(devices: Device) -> None:
    a, b = name(), name()
    alice = devices(a, register=True)
    phone = devices(b, register=True)
    laptop = devices(b)
    laptop.disconnect()  # a known device of bob's, away
    sent = [alice.send(phone.uid, {"n": i}) for i in range(3)]
    acks = [alice.wait_ack(cid, TIMEOUT) for cid in sent]
    assert [m["body"] for m in phone.wait_messages(3, TIMEOUT)] == [{"n": i} for i in range(3)]
    phone.flush()  # its delivered receipts are on their way
    alice.wait_for(lambda: len({i for r in alice.receipts if r["status"] == "delivered" for i in r["ids"]}) == 3,
                   TIMEOUT)
    laptop.connect()
    got = laptop.wait_messages(3, TIMEOUT)
    assert [m["id"] for m in got] == [a["id"] for a in acks]
    laptop.flush()
    # both confirmed: a third device of bob's that is not new gets nothing more
    laptop.disconnect()
    phone.disconnect()
    phone.clear()
    phone.connect()
    with pytest.raises(TimeoutError):
        phone.wait_messages(1, 2)


def test_the_senders_other_devices_get_its_messages_and_receipts(devices: Device) -> None:
    a, b = name(), name()
    phone = devices(a, register=True)
    laptop = devices(a)
    bob = devices(b, register=True)
    bob_tablet = devices(b)
    cid = phone.send(bob.uid, "from my phone")
    ack = phone.wait_ack(cid, TIMEOUT)
    [copy] = laptop.wait_messages(1, TIMEOUT)
    assert (copy["id"], copy["from"], copy["to"], copy["body"]) == (ack["id"], phone.uid, bob.uid,
                                                                     {"text": "from my phone"})
    assert bob.wait_messages(1, TIMEOUT)[0]["id"] == ack["id"]
    bob_tablet.wait_messages(1, TIMEOUT)
    # bob's receipts: alice's devices get them from bob; bob's other device gets each as from bob himself
    bob.mark_read([ack["id"]])
    laptop.wait_for(lambda: [r for r in laptop.receipts if r["status"] == "read" and r["from"] == bob.uid], TIMEOUT)
    bob_tablet.wait_for(lambda: [r for r in bob_tablet.receipts if r["status"] == "read" and r["from"] == bob.uid
                                 and r["ids"] == [ack["id"]]], TIMEOUT)
    assert phone.messages == []  # the sending device has its ack, not a copy
    # the laptop, away, gets the phone's next message when it comes back
    laptop.disconnect()
    later = phone.wait_ack(phone.send(bob.uid, "while the laptop sleeps"), TIMEOUT)
    laptop.clear()
    laptop.connect()
    assert [m["id"] for m in laptop.wait_messages(1, TIMEOUT)] == [later["id"]]


def test_the_senders_other_devices_get_its_actions(devices: Device) -> None:
    a, b = name(), name()
    phone = devices(a, register=True)
    laptop = devices(a)
    tablet = devices(a)
    tablet.disconnect()  # away: gets them on its next connect
    bob = devices(b, register=True)
    sid = phone.wait_ack(phone.send(bob.uid, "helo"), TIMEOUT)["id"]
    laptop.wait_messages(1, TIMEOUT)
    edit = phone.wait_ack(phone.edit(sid, "hello"), TIMEOUT)
    react = phone.wait_ack(phone.react(sid, "👍"), TIMEOUT)
    gone = phone.wait_ack(phone.delete(sid, "me"), TIMEOUT)
    laptop.wait_for(lambda: len(laptop.actions) >= 3, TIMEOUT)
    got = list(laptop.actions)
    assert [(x["type"], x["id"], x["from"], x["to"], x["target"]) for x in got] == [
        ("edit", edit["id"], phone.uid, bob.uid, sid), ("reaction", react["id"], phone.uid, bob.uid, sid),
        ("delete", gone["id"], phone.uid, bob.uid, sid)]
    assert (got[0]["body"], got[1]["emoji"], got[2]["for"]) == ({"text": "hello"}, "👍", "me")
    # bob gets the edit and the reaction, never the delete for me
    bob.wait_for(lambda: len(bob.actions) >= 2, TIMEOUT)
    tablet.clear()
    tablet.connect()
    tablet.wait_for(lambda: len(tablet.actions) >= 3, TIMEOUT)
    back = list(tablet.actions)
    assert [x["id"] for x in back] == [edit["id"], react["id"], gone["id"]]
    time.sleep(1)  # anything sent back to the phone would have come by now
    assert (phone.actions, [x["type"] for x in bob.actions]) == ([], ["edit", "reaction"])


def test_a_new_device_gets_the_recent_conversations_first(devices: Device) -> None:
    a, b = name(), name()
    alice = devices(a, register=True)
    bob = devices(b, register=True)
    sent = [alice.wait_ack(alice.send(bob.uid, {"n": i}), TIMEOUT)["id"] for i in range(3)]
    sent.append(bob.wait_ack(bob.send(alice.uid, {"n": 3}), TIMEOUT)["id"])
    bob.wait_messages(3, TIMEOUT)
    bob.flush()
    alice.wait_messages(1, TIMEOUT)
    alice.flush()
    reply = alice.wait_ack(alice.send(bob.uid, {"n": 4}, reply_to=sent[0]), TIMEOUT)["id"]
    alice.wait_ack(alice.delete(sent[1]), TIMEOUT)  # deleted for everyone: not sent to a new device
    bob.wait_for(lambda: len(bob.messages) >= 4 and len(bob.actions) >= 1, TIMEOUT)
    bob.flush()
    tablet = devices(b)  # bob's new device: the window's messages both ways, in order
    got = tablet.wait_messages(4, TIMEOUT)
    assert [m["id"] for m in got] == [sent[0], sent[2], sent[3], reply]
    assert [m["from"] for m in got] == [alice.uid, alice.uid, bob.uid, alice.uid]
    assert got[-1]["reply_to"] == sent[0]


def test_sessions_list_and_sign_out(server: Deployment, devices: Device) -> None:
    a, b = name(), name()
    alice = devices(a, register=True)
    phone = devices(b, register=True)
    laptop = devices(b)
    listed = known_sessions(server, phone, 2)  # (recorded as each connect's presence record is taken)
    assert [s["client_id"] for s in listed] == [phone.client_id, laptop.client_id]
    assert all(isinstance(s["first_seen"], int) and isinstance(s["last_seen"], int) for s in listed)
    changes: list[bool] = []
    laptop.on_connection_change = changes.append
    r = httpx.delete(f"{server.api_url}/api/v1/users/me/sessions/{laptop.client_id}",
                     headers={"Authorization": f"Bearer {phone.access_token}"})
    assert r.status_code == 204, r.text
    assert [s["client_id"] for s in sessions(server, phone)] == [phone.client_id]
    laptop.wait_for(lambda: False in changes, TIMEOUT)  # its live session closed
    laptop.disconnect()  # (the SDK would connect again: as a new device)
    r = httpx.delete(f"{server.api_url}/api/v1/users/me/sessions/{laptop.client_id}",
                     headers={"Authorization": f"Bearer {phone.access_token}"})
    assert r.status_code == 404
    r = httpx.delete(f"{server.api_url}/api/v1/users/me/sessions/{alice.client_id}",  # not bob's
                     headers={"Authorization": f"Bearer {phone.access_token}"})
    assert r.status_code == 404
    assert alice.connected
