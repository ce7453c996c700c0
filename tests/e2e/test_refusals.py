"""Refusals: ACL denials, bad tokens at CONNECT, and each bad envelope's ``error`` while everyone carries on."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import jwt
import orjson
import pytest

from tests.e2e.harness import Deployment, RawClient, Users

TIMEOUT = 15


@pytest.fixture
def raw(server: Deployment) -> Any:
    made: list[RawClient] = []

    def make(username: str, password: str, transport: str = "tcp") -> RawClient:
        made.append(RawClient(server, username, password, transport))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_bad_and_expired_tokens_are_refused_at_connect(server: Deployment, users: Users, raw: Any,
                                                       transport: str) -> None:
    alice = users(connect=False)
    bad = raw(alice.uid, "not-a-token", transport)
    assert bad.wait(lambda: bad.connack).is_failure
    assert "authorized" in str(bad.connack).lower()
    expired = jwt.encode({"sub": alice.uid, "typ": "access", "adm": False, "exp": int(time.time()) - 5},
                         server.signing_key(), algorithm="HS256")
    late = raw(alice.uid, expired, transport)
    assert late.wait(lambda: late.connack).is_failure
    other = users(connect=False)
    stolen = raw(alice.uid, other.access_token, transport)  # someone else's valid token
    assert stolen.wait(lambda: stolen.connack).is_failure
    good = raw(alice.uid, alice.access_token, transport)
    assert not good.wait(lambda: good.connack).is_failure


def test_subscribing_to_someone_elses_inbox_is_denied(users: Users, raw: Any) -> None:
    alice, bob = users(connect=False), users()
    c = raw(alice.uid, alice.access_token)
    c.wait(lambda: c.connack)
    c.client.subscribe([(f"users/{bob.uid}/inbox", 1), ("#", 1), (f"users/{alice.uid}/inbox", 1)])
    codes = c.wait(lambda: c.granted)
    assert [rc.value for rc in codes] == [0x80, 0x80, 1]
    # bob's messages never reach alice
    carol = users()
    carol.wait_ack(carol.send(bob.uid, "for bob only"), TIMEOUT)
    bob.wait_messages(1, TIMEOUT)
    time.sleep(0.3)
    assert all(m.get("type") != "message" for m in c.inbox)


def test_publishing_to_someone_elses_outbox_is_answered_with_forbidden(users: Users) -> None:
    alice, bob = users(), users()
    alice.mqtt.publish(f"users/{bob.uid}/outbox", orjson.dumps(
        {"type": "message", "id": "x1", "to": alice.uid, "body": {"text": "spoof"}}), qos=1)
    err = alice.wait_for(lambda: alice.errors, TIMEOUT)[0]
    assert err["code"] == "forbidden"
    time.sleep(0.3)
    assert (alice.messages, bob.messages) == ([], [])
    # the connection carries on
    alice.wait_ack(alice.send(bob.uid, "still here"), TIMEOUT)
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "still here"}


@pytest.mark.parametrize(("payload", "code", "client_id"), [
    (b"{not json", "invalid_envelope", None),
    (b'{"type":"message","id":"bad-to","to":42,"body":{}}', "invalid_envelope", "bad-to"),
    (b'{"type":"message","id":"bad-body","to":"u1","body":[1]}', "invalid_envelope", "bad-body"),
    (b'{"type":"receipt","status":"seen","ids":["x"]}', "invalid_envelope", None),
    (b'{"type":"message","id":"nobody","to":"u0000000000000000","body":{}}', "unknown_recipient", "nobody"),
    (b'{"type":"message","id":"nogroup","group":"g0000000000000000","body":{}}', "unknown_recipient", "nogroup"),
])
def test_bad_envelopes_get_their_error_and_others_carry_on(users: Users, payload: bytes, code: str,
                                                           client_id: str | None) -> None:
    alice, bob = users(), users()
    alice.send_raw(payload)
    err = alice.wait_for(lambda: alice.errors, TIMEOUT)[0]
    assert (err["type"], err["code"], err["client_id"]) == ("error", code, client_id)
    assert err["reason"]
    alice.wait_ack(alice.send(bob.uid, "after the error"), TIMEOUT)
    bob.wait_ack(bob.send(alice.uid, "bob unaffected"), TIMEOUT)
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "after the error"}
    assert alice.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "bob unaffected"}


def test_group_send_by_a_non_member_is_refused(users: Users) -> None:
    alice, bob, eve = users(), users(), users()
    gid = alice.create_group("club", [bob.uid])["group_id"]
    cid = eve.send_group(gid, "let me in")
    err = eve.wait_for(lambda: eve.errors, TIMEOUT)[0]
    assert (err["code"], err["client_id"]) == ("not_member", cid)
    alice.wait_ack(alice.send_group(gid, "members only"), TIMEOUT)
    assert [m["body"]["text"] for m in bob.wait_messages(1, TIMEOUT)] == ["members only"]
    time.sleep(0.3)
    assert eve.messages == []


def test_payload_over_the_limit_is_too_large(users: Users) -> None:
    alice, bob = users(), users()
    cid = alice.send(bob.uid, {"blob": "x" * (64 * 1024)})
    err = alice.wait_for(lambda: alice.errors, TIMEOUT)[0]
    assert (err["code"], err["client_id"]) == ("too_large", cid)  # the id is read even from a payload too large
    assert cid not in alice.acks
    alice.wait_ack(alice.send(bob.uid, "small"), TIMEOUT)
    assert [m["body"] for m in bob.wait_messages(1, TIMEOUT)] == [{"text": "small"}]


def _nested(levels: int) -> bytes:
    """A JSON object nesting ``levels`` deep (the object itself is level 1)."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


@pytest.mark.parametrize("levels", [251, 252, 300, 8000])
def test_poison_deeply_nested_body_is_refused_not_acked(server: Deployment, users: Users, levels: int) -> None:
    """A body nested past ``envelope_max_depth`` (orjson cannot encode past 254 levels): an error, no ack,
    nothing stored, and the recipient's other messages still arrive, on replay and live."""
    alice, bob = users(), users(connect=False)  # bob is offline: a stored poison would block his replay
    alice.wait_ack(alice.send(bob.uid, "before"), TIMEOUT)
    cid = f"poison-{levels}"
    alice.send_raw(b'{"type":"message","id":"%s","to":"%s","body":%s}' % (cid.encode(), bob.uid.encode(),
                                                                          _nested(levels)))
    err = alice.wait_for(lambda: [e for e in alice.errors if e.get("client_id") == cid], TIMEOUT)[0]
    assert err["code"] == "invalid_envelope"
    assert "deeper than 32 levels" in err["reason"]
    alice.wait_ack(alice.send(bob.uid, "after"), TIMEOUT)
    assert cid not in alice.acks
    assert cid not in {m["client_id"] for m in alice.history(bob.uid)["messages"]}

    bob.connect()  # replay
    assert [m["body"]["text"] for m in bob.wait_messages(2, TIMEOUT)] == ["before", "after"]
    alice.wait_ack(alice.send(bob.uid, "live"), TIMEOUT)
    assert [m["body"]["text"] for m in bob.wait_messages(3, TIMEOUT)][2:] == ["live"]
    assert "Traceback" not in server.log()


def test_garbage_on_the_mqtt_and_websocket_ports_harms_no_one(server: Deployment, users: Users) -> None:
    import socket

    alice, bob = users(), users()
    junk = [b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", b"\x30\xff\xff\xff\xff\x0f", bytes(range(256)),
            b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",  # CONNECT, no credentials
            b"\x82\x08\x00\x01\x00\x03a/b\x01"]  # SUBSCRIBE before CONNECT
    for port in (server.mqtt_port, server.ws_port):
        for payload in junk:
            with socket.create_connection((server.host, port), timeout=5) as s:
                s.sendall(payload)
                s.settimeout(0.5)
                with contextlib.suppress(OSError):
                    s.recv(64)
    alice.wait_ack(alice.send(bob.uid, "still fine"), TIMEOUT)
    assert [m["body"] for m in bob.wait_messages(1, TIMEOUT)] == [{"text": "still fine"}]
