"""Hostile clients against the plain node: every input bounded before it is buffered.

Packet size from the fixed header (MQTT 3.1.1 §2.2.3, ``max_packet_size``), the CONNECT timeout
(§3.1: the first packet must be a CONNECT; ``connect_timeout``), the node's connection limit
(``max_connections``), the per-subscriber queue in bytes (``broker_queue_bytes``), will topics
(§3.1.2.5, §4.7) and MQTT over WebSocket (§6: binary frames only, on ``ws_path``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.connection import Connection as WsConnection

from chatmq.broker.wire import (
    MQTT_5,
    MQTT_31,
    NO_PROPERTIES,
    ReasonCode,
    Will,
    encode_connect,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
    encode_topic,
)
from tests.conformance.conftest import PlainNode, plain_node
from tests.conformance.raw import DISCONNECT, PUBACK, RawClient
from tests.e2e.harness import rss_kib

Raw = Callable[[], RawClient]

CONNECT_TIMEOUT = 1.0
MAX_PACKET = 128 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainNode]:
    yield from plain_node(tmp_path_factory, ws=True, connect_timeout=str(CONNECT_TIMEOUT),
                          max_packet_size=str(MAX_PACKET), broker_queue_bytes=str(1024 * 1024))


def round_trip(raw: Raw, topic: str) -> None:
    """A publish reaches its subscriber: the node still works for everyone else."""
    sub, pub = raw(), raw()
    sub.connect(f"{topic}-sub".replace("/", "-"))
    sub.subscribe((topic, 1))
    pub.connect(f"{topic}-pub".replace("/", "-"))
    pub.publish(topic, b"still here", 1)
    pub.expect(PUBACK)
    assert sub.publishes(1, timeout=5)[0].payload == b"still here"


def test_2_2_3_a_200_mb_publish_announced_is_refused_before_its_body_is_buffered(
        node: PlainNode, raw: Raw) -> None:
    attacker = raw()
    attacker.connect("huge-publisher")
    before = rss_kib(node.proc.pid)
    header = b"\x30" + encode_remaining_length(200 * 1024 * 1024) + struct.pack("!H", 1) + b"t"
    sent = 0
    chunk = b"\0" * (256 * 1024)
    try:
        attacker.send(header)
        while sent < 200 * 1024 * 1024:
            attacker.send(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the node closed the connection: the rest is never sent
    assert sent < 64 * 1024 * 1024, f"the node took {sent} bytes of a refused packet"
    assert attacker.closed_by_broker(5)
    assert rss_kib(node.proc.pid) - before < 16 * 1024, "the node's memory grew while refusing the packet"
    assert "more than max_packet_size" in node.log()
    round_trip(raw, "after/huge")


def test_2_2_3_a_connect_announcing_more_than_max_packet_size_is_closed_unanswered(
        node: PlainNode, raw: Raw) -> None:
    attacker = raw()
    attacker.send(b"\x10" + encode_remaining_length(MAX_PACKET + 1) + b"\0" * 64)
    assert attacker.read(3) is None  # no CONNACK
    assert attacker.closed_by_broker(1)


def test_a_packet_of_exactly_max_packet_size_is_still_delivered(node: PlainNode, raw: Raw) -> None:
    sub, pub = raw(), raw()
    sub.connect("edge-sub")
    sub.subscribe(("edge/t", 0))
    pub.connect("edge-pub")
    payload = b"e" * (MAX_PACKET - 2 - len("edge/t") - 2)  # topic length, topic, packet id
    pub.publish("edge/t", payload, 1)
    pub.expect(PUBACK)
    assert sub.publishes(1)[0].payload == payload


def test_3_1_0_a_socket_that_never_sends_connect_is_closed_after_connect_timeout(
        node: PlainNode, raw: Raw) -> None:
    silent = raw()
    started = time.monotonic()
    assert silent.closed_by_broker(CONNECT_TIMEOUT + 3)
    assert time.monotonic() - started >= CONNECT_TIMEOUT * 0.9


def test_3_1_0_half_a_connect_is_closed_after_connect_timeout(node: PlainNode, raw: Raw) -> None:
    half = raw()
    packet = encode_connect("half-a-connect")
    half.send(packet[:len(packet) // 2])
    assert half.read(CONNECT_TIMEOUT * 0.5) is None
    assert half.is_open()
    assert half.closed_by_broker(CONNECT_TIMEOUT + 3)
    round_trip(raw, "after/half")


def test_a_slow_connect_that_completes_in_time_is_accepted(node: PlainNode, raw: Raw) -> None:
    slow = raw()
    packet = encode_connect("slow-but-in-time")
    slow.send(packet[:5])
    time.sleep(CONNECT_TIMEOUT * 0.4)
    slow.send(packet[5:])
    assert slow.read(3) is not None  # CONNACK


@pytest.mark.parametrize("topic", ["wills/#", "wills/+/x", ""])
def test_3_1_2_9_a_will_topic_that_is_no_topic_name_closes_the_connection(
        node: PlainNode, raw: Raw, topic: str) -> None:
    bad = raw()
    bad.send(encode_connect("bad-will", will=Will(topic, b"gone")))  # not connect(): no CONNACK may come
    assert bad.read(3) is None  # closed, no CONNACK
    assert bad.closed_by_broker(1)
    assert "invalid will topic" in node.log()


def test_a_subscriber_past_broker_queue_bytes_is_disconnected_as_too_slow(
        node: PlainNode, raw: Raw) -> None:
    slow = raw()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect("never-reads")
    slow.subscribe(("flood/t", 1))
    publisher = raw()
    publisher.connect("flooder")
    stop = threading.Event()

    def flood() -> None:
        payload = b"f" * (32 * 1024)
        with contextlib.suppress(OSError):
            while not stop.is_set():
                publisher.publish("flood/t", payload, 1)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while "subscriber too slow" not in node.log():
            assert time.monotonic() < deadline, "the slow subscriber was never closed"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert "bytes queued): closing its connection" in node.log()
    round_trip(raw, "after/flood")


# --- MQTT over WebSocket (§6) ------------------------------------------------------------
def read_until_closed(ws: WsConnection) -> None:
    """Read frames until the connection closes (``ConnectionClosed``) or 5 s pass with none."""
    while True:
        ws.recv(timeout=5)


def test_6_0_a_websocket_upgrade_on_another_path_gets_404(node: PlainNode) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://127.0.0.1:{node.ws_port}/not-mqtt", subprotocols=["mqtt"], open_timeout=5)  # type: ignore[list-item]
    assert refused.value.response.status_code == 404


def test_6_0_0_1_a_connect_in_a_text_frame_closes_the_connection(node: PlainNode) -> None:
    with ws_connect(f"ws://127.0.0.1:{node.ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:  # type: ignore[list-item]
        ws.send(encode_connect("text-frame").decode("latin-1"))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1003


def test_6_0_0_1_a_text_frame_after_the_connect_closes_the_connection(node: PlainNode) -> None:
    with ws_connect(f"ws://127.0.0.1:{node.ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:  # type: ignore[list-item]
        ws.send(encode_connect("text-later"))
        assert ws.recv(timeout=5)[:1] == b"\x20"  # CONNACK
        ws.send("\xc0\x00")  # a PINGREQ, as text
        with pytest.raises(ConnectionClosed):
            read_until_closed(ws)


def test_3_1_0_a_websocket_that_upgrades_and_goes_quiet_is_closed_after_connect_timeout(node: PlainNode) -> None:
    with ws_connect(f"ws://127.0.0.1:{node.ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:  # type: ignore[list-item]
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=CONNECT_TIMEOUT + 5)
        assert time.monotonic() - started < CONNECT_TIMEOUT + 3


def test_a_websocket_frame_larger_than_max_packet_size_closes_the_connection(node: PlainNode) -> None:
    with ws_connect(f"ws://127.0.0.1:{node.ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5,  # type: ignore[list-item]
                    max_size=None) as ws:
        ws.send(encode_connect("big-frame"))
        assert ws.recv(timeout=5)[:1] == b"\x20"
        ws.send(b"\x30" + encode_remaining_length(4 * MAX_PACKET) + b"\0" * (4 * MAX_PACKET))
        with pytest.raises(ConnectionClosed) as closed:
            read_until_closed(ws)
    assert closed.value.sent is not None
    assert closed.value.sent.code == 1009  # message too big


# --- the node's connection limit ---------------------------------------------------------
@pytest.fixture(scope="module")
def small_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainNode]:
    yield from plain_node(tmp_path_factory, max_connections="3")


def test_connections_past_max_connections_are_closed_before_their_connect(small_node: PlainNode) -> None:
    held = [RawClient(small_node.port) for _ in range(3)]
    try:
        for i, c in enumerate(held):
            assert c.connect(f"held-{i}").body[1] == 0
        extra = RawClient(small_node.port)
        held.append(extra)
        assert extra.closed_by_broker(3)
        assert "node_full" in small_node.log()
        held[0].disconnect()
        time.sleep(0.2)
        again = RawClient(small_node.port)
        held.append(again)
        assert again.connect("held-again").body[1] == 0
    finally:
        for c in held:
            c.close()


# --- MQTT 5 and 3.1 ----------------------------------------------------------------------------------
def test_v5_3_2_2_the_connack_tells_a_v5_client_the_maximum_packet_size(raw5: Raw) -> None:
    connack = raw5().connect("v5-max-packet")
    assert connack.properties.maximum_packet_size == MAX_PACKET


def test_v5_3_14_2_a_packet_over_max_packet_size_gets_disconnect_packet_too_large(raw5: Raw) -> None:
    client = raw5()
    assert client.connect("v5-too-large").reason == 0
    client.send(b"\x30" + encode_remaining_length(MAX_PACKET + 1) + b"\0" * 64)
    assert client.expect(DISCONNECT).reason == ReasonCode.PACKET_TOO_LARGE
    assert client.closed_by_broker()


@pytest.mark.parametrize("level", [MQTT_31, MQTT_5])
def test_6_0_mqtt_5_and_3_1_over_websocket(node: PlainNode, level: int) -> None:
    """The same CONNECT handling on the WebSocket listener: accepted, and a publish comes back."""
    with ws_connect(f"ws://127.0.0.1:{node.ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:  # type: ignore[list-item]
        ws.send(encode_connect(f"ws-level-{level}", protocol_level=level))
        connack = ws.recv(timeout=5)
        assert isinstance(connack, bytes)
        if level == MQTT_5:
            assert connack[0] == 0x20
            assert connack[2:4] == b"\x00\x00"  # session present 0, success
            assert connack[1] > 3  # with properties
        else:
            assert connack == b"\x20\x02\x00\x00"
        ws.send(encode_subscribe(1, [("ws/level", 0)], protocol_level=level))
        suback = ws.recv(timeout=5)
        assert isinstance(suback, bytes)
        assert suback[0] == 0x90
        assert suback[-1] == 0
        ws.send(encode_publish(encode_topic("ws/level"), b"hi", 0, None,
                               properties=NO_PROPERTIES if level == MQTT_5 else b""))
        publish = ws.recv(timeout=5)
        assert publish == encode_publish(encode_topic("ws/level"), b"hi", 0, None,
                                         properties=NO_PROPERTIES if level == MQTT_5 else b"")
