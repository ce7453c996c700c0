"""Hostile MQTT clients against the chat node (``chatmq serve``): each attack of issue 12 that the
broker answers, and a chat between other users that carries on meanwhile.

Raw-socket clients (``tests.conformance.raw``) send exactly the packets of each attack.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from chatmq.broker.wire import MQTT_5, MQTT_311, Properties, Will, encode_connect, encode_remaining_length
from tests.conformance.raw import CONNACK, PUBLISH, RawClient, Received
from tests.e2e.harness import Peer, ServerProcess, Users, rss_kib, serve, user_factory
from tests.e2e.test_ops import total

TIMEOUT = 15
ROUND_TRIP_BOUND = 1.0
"""Seconds a chat message may take while the node is under attack (it takes milliseconds when the
loop is free; a loop blocked by the attack misses it by far)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serve(tmp_path_factory.mktemp("hostile"), CHATMQ_CONNECT_TIMEOUT="2")


@pytest.fixture
def users(server: ServerProcess) -> Iterator[Users]:
    yield from user_factory(server)


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[list[RawClient]]:
    made: list[RawClient] = []
    yield made
    for c in made:
        c.close()


_SOURCES = itertools.count(20)
"""The last byte of a loopback address (127.0.0.x) of its own for each stranger: failed logins from it
are delayed by ``auth_failure_delay`` alone, not by what other tests' failures added to 127.0.0.1's."""


def open_raw(server: ServerProcess, made: list[RawClient], level: int = MQTT_311,
             source: str | None = None) -> RawClient:
    made.append(RawClient(server.mqtt_port, server.host, protocol_level=level, source=source))
    return made[-1]


def chat_round_trips(alice: Peer, bob: Peer, count: int, pause: float = 0.0) -> list[float]:
    """Seconds each of ``count`` messages from alice took to reach bob, one at a time."""
    took: list[float] = []
    for i in range(count):
        started = time.monotonic()
        alice.send(bob.uid, f"ping {i}")
        bob.wait_for(lambda: len(bob.messages) > i, TIMEOUT)  # noqa: B023 (called at once)
        took.append(time.monotonic() - started)
        time.sleep(pause)
    return took


def test_40_wrong_secret_device_connects_do_not_stall_other_users_chats(
        server: ServerProcess, users: Users, raw: list[RawClient]) -> None:
    alice, bob = users(), users()
    device = alice.create_device("sensor")
    chat_round_trips(alice, bob, 2)  # warmed up
    attackers = [open_raw(server, raw) for _ in range(40)]
    for attacker in attackers:
        attacker.send(encode_connect(f"guess-{id(attacker)}", username=device["device_id"], password="not-the-secret"))
    took = chat_round_trips(alice, bob, 15, pause=0.2)  # while ~40 argon2 checks run
    assert max(took) < ROUND_TRIP_BOUND, f"chat stalled during the attack: {took}"
    codes = [a.expect(CONNACK, timeout=30).body[1] for a in attackers]
    assert codes == [0x05] * 40  # all refused (after the growing per-address delay)
    assert "failed login of" in server.log()
    owner = open_raw(server, raw)  # the real secret still works from the same address, at once
    started = time.monotonic()
    assert owner.connect("real-device", username=device["device_id"], password=device["secret"]).body[1] == 0
    assert time.monotonic() - started < 2


def test_a_will_on_someone_elses_inbox_is_refused_not_authorized(
        server: ServerProcess, users: Users, raw: list[RawClient]) -> None:
    alice, bob = users(connect=False), users()
    forged = orjson.dumps({"type": "message", "id": "forged", "from": "admin", "body": {"text": "pay me"}})
    for topic in (f"users/{bob.uid}/inbox", f"users/{bob.uid}/outbox", f"devices/d{bob.uid}/telemetry"):
        c = open_raw(server, raw)
        connack = c.connect(f"will-{topic}", username=alice.uid, password=alice.access_token,
                            will=(topic, forged, 1, True))
        assert connack.body[1] == 0x05, topic
        assert c.closed_by_broker(2)
    assert "is not one it may publish to" in server.log()
    time.sleep(0.3)
    assert bob.messages == []


@pytest.mark.parametrize("topic", ["#", "users/+/inbox", ""])
def test_a_will_topic_with_wildcards_or_empty_closes_the_connection_without_a_traceback(
        server: ServerProcess, users: Users, raw: list[RawClient], topic: str) -> None:
    alice = users(connect=False)
    c = open_raw(server, raw)
    c.send(encode_connect(f"bad-will-{topic}", username=alice.uid, password=alice.access_token, will=Will(topic, b"x")))
    assert c.read(3) is None  # no CONNACK: a protocol violation closes the connection
    assert c.closed_by_broker(1)
    assert "invalid will topic" in server.log()  # and no traceback (checked when the server stops)


def test_a_will_on_its_own_outbox_reaches_the_recipient_from_its_owner_and_is_not_retained(
        server: ServerProcess, users: Users, raw: list[RawClient]) -> None:
    alice, bob = users(connect=False), users()
    will = orjson.dumps({"type": "message", "id": "will-1", "to": bob.uid, "body": {"text": "alice dropped"}})
    c = open_raw(server, raw)
    assert c.connect("alice-will", username=alice.uid, password=alice.access_token,
                     will=(f"users/{alice.uid}/outbox", will, 1, True)).body[1] == 0
    c.close()  # no DISCONNECT: the will goes
    message = bob.wait_messages(1, TIMEOUT)[0]
    assert (message["from"], message["body"]) == (alice.uid, {"text": "alice dropped"})
    again = open_raw(server, raw)
    assert again.connect("bob-raw", username=bob.uid, password=bob.access_token).body[1] == 0
    again.subscribe((f"users/{bob.uid}/inbox", 1))
    got: list[Received] = []
    while (packet := again.read(1.0)) is not None:
        got.append(packet)
    # a replay of a copy still pending may come, as a live delivery: never a retained message
    assert [p.retain for p in got if p.kind == PUBLISH] in ([], [False])


def test_a_resumed_chat_session_gets_its_inbox_without_subscribing_again(
        server: ServerProcess, users: Users, raw: list[RawClient]) -> None:
    alice, bob = users(connect=False), users()
    first = open_raw(server, raw)
    assert first.connect("alice-phone", clean=False, username=alice.uid, password=alice.access_token).body[1] == 0
    assert first.subscribe((f"users/{alice.uid}/inbox", 1)) == [1]
    first.disconnect()
    bob.wait_ack(bob.send(alice.uid, "while you were away"), TIMEOUT)
    back = open_raw(server, raw)
    connack = back.connect("alice-phone", clean=False, username=alice.uid, password=alice.access_token)
    assert connack.body == b"\x01\x00"  # session present
    [packet] = back.publishes(1, timeout=TIMEOUT)  # no SUBSCRIBE sent: the session still had it
    message = orjson.loads(packet.payload)
    assert (packet.topic, message["body"]) == (f"users/{alice.uid}/inbox", {"text": "while you were away"})
    bob.send(alice.uid, "and live")  # live deliveries reach the resumed session too
    live = orjson.loads(back.publishes(1, timeout=TIMEOUT)[0].payload)
    assert live["body"] == {"text": "and live"}


def test_a_200_mb_publish_to_the_chat_node_is_refused_without_its_memory_growing(
        server: ServerProcess, users: Users, raw: list[RawClient]) -> None:
    alice, bob, carol = users(connect=False), users(), users()
    attacker = open_raw(server, raw)
    assert attacker.connect("alice-big", username=alice.uid, password=alice.access_token).body[1] == 0
    assert server.proc is not None
    pid = server.proc.pid
    before = rss_kib(pid)
    sent = 0
    with contextlib.suppress(OSError):
        attacker.send(b"\x30" + encode_remaining_length(200 * 1024 * 1024) + struct.pack("!H", 1) + b"t")
        chunk = b"\0" * (256 * 1024)
        while sent < 200 * 1024 * 1024:
            attacker.send(chunk)
            sent += len(chunk)
    assert sent < 64 * 1024 * 1024, f"the node took {sent} bytes of a refused packet"
    assert attacker.closed_by_broker(5)
    assert rss_kib(pid) - before < 16 * 1024
    assert "more than max_packet_size" in server.log()
    assert max(chat_round_trips(carol, bob, 3)) < ROUND_TRIP_BOUND  # everyone else carries on
    assert total(server, "chatmq_broker_disconnects_total", reason="packet_too_large") >= 1


def test_a_socket_that_never_sends_connect_is_closed_and_counted(server: ServerProcess, raw: list[RawClient]) -> None:
    before = total(server, "chatmq_broker_refused_connections_total", reason="connect_timeout")
    silent = open_raw(server, raw)
    assert silent.closed_by_broker(2 + 3)
    assert total(server, "chatmq_broker_refused_connections_total", reason="connect_timeout") == before + 1


def test_connections_past_max_connections_per_address_are_closed_before_their_connect(tmp_path: Path) -> None:
    runs = serve(tmp_path, CHATMQ_MAX_CONNECTIONS_PER_ADDRESS="3")
    server = next(runs)
    made: list[RawClient] = []
    try:
        held = [open_raw(server, made) for _ in range(3)]  # not even a CONNECT: they count from the accept
        extra = open_raw(server, made)
        assert extra.closed_by_broker(3)
        assert total(server, "chatmq_broker_refused_connections_total", reason="address_full") == 1
        held[0].close()
        time.sleep(0.3)
        users = user_factory(server)
        alice = next(users)()  # a real client from the same address gets in again
        alice.send(alice.uid, "note to self")
        assert alice.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "note to self"}
        with contextlib.suppress(StopIteration):
            next(users)
    finally:
        for c in made:
            c.close()
        with contextlib.suppress(StopIteration):
            next(runs)
    assert "address_full" in server.log()


def test_another_user_cannot_take_a_persistent_client_id_nor_its_messages(
        server: ServerProcess, users: Users, raw: list[RawClient]) -> None:
    alice, bob, mallory = users(connect=False), users(), users(connect=False)
    victim = open_raw(server, raw)
    assert victim.connect("shared-id", clean=False, username=alice.uid, password=alice.access_token).body[1] == 0
    victim.subscribe((f"users/{alice.uid}/inbox", 1))
    bob.wait_ack(bob.send(alice.uid, "for alice only"), TIMEOUT)
    victim.publishes(1, timeout=TIMEOUT)  # received, never acknowledged: in flight in alice's session
    victim.close()
    thief = open_raw(server, raw)
    connack = thief.connect("shared-id", clean=False, username=mallory.uid, password=mallory.access_token)
    assert connack.body == b"\x00\x02"  # refused: identifier rejected (the kept session is alice's)
    assert thief.closed_by_broker(TIMEOUT)  # alice's in-flight message is not resent to mallory
    owner = open_raw(server, raw)  # alice's own login resumes her session and gets it
    assert owner.connect("shared-id", clean=False, username=alice.uid, password=alice.access_token).body == b"\x01\x00"
    (again,) = owner.publishes(1, timeout=TIMEOUT)
    assert orjson.loads(again.payload)["body"] == {"text": "for alice only"}


NOT_AUTHORIZED = {MQTT_311: 0x05, MQTT_5: 0x87}
"""The CONNACK code refusing a login, by protocol level (MQTT 5: reason code Not authorized)."""


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5], ids=["v3.1.1", "v5"])
@pytest.mark.parametrize(("clean", "username", "password"), [
    (True, "victim", "not-her-token"), (False, "victim", "not-her-token"), (True, None, None), (False, None, None),
], ids=["clean-wrong-password", "persistent-wrong-password", "clean-no-credentials", "persistent-no-credentials"])
def test_a_wrong_password_with_a_victims_client_id_does_not_disconnect_the_victim(
        server: ServerProcess, users: Users, raw: list[RawClient], level: int, clean: bool, username: str | None,
        password: str | None) -> None:
    alice, bob = users(connect=False), users()
    client_id = f"phone-{alice.uid}"
    kept = Properties(session_expiry_interval=600) if level == MQTT_5 else None  # a persistent session at v5 too
    victim = open_raw(server, raw, level)
    assert victim.connect(client_id, clean=False, username=alice.uid, password=alice.access_token,
                          properties=kept).body[1] == 0
    assert victim.subscribe((f"users/{alice.uid}/inbox", 1)) == [1]
    stranger = open_raw(server, raw, level, source=f"127.0.0.{next(_SOURCES)}")
    refused = stranger.connect(client_id, clean=clean, username=alice.uid if username else None, password=password)
    assert refused.body[:2] == bytes((0, NOT_AUTHORIZED[level]))  # refused, no session present
    assert stranger.closed_by_broker(TIMEOUT)
    bob.wait_ack(bob.send(alice.uid, "still connected"), TIMEOUT)
    (delivered,) = victim.publishes(1, timeout=TIMEOUT)  # the victim's connection is still up, and still served
    assert orjson.loads(delivered.payload)["body"] == {"text": "still connected"}
    owner = open_raw(server, raw, level)  # the victim's own login still takes its session over
    resumed = owner.connect(client_id, clean=False, username=alice.uid, password=alice.access_token, properties=kept)
    assert resumed.body[:2] == b"\x01\x00"  # accepted, session present
    assert victim.closed_by_broker(TIMEOUT)
