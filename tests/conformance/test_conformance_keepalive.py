"""Keepalive and the will message (MQTT 3.1.1 §3.1.2.5, §3.1.2.10)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from chatmq.broker.wire import MQTT_5, ReasonCode
from tests.conformance.conftest import PlainNode, plain_node
from tests.conformance.raw import DISCONNECT, RawClient

Raw = Callable[[], RawClient]


def test_keepalive_3_1_2_24_silence_past_one_and_a_half_keepalives_publishes_the_will(raw: Raw) -> None:
    watcher = raw()
    watcher.connect("will-watch-1")
    watcher.subscribe(("wills/1", 1))
    silent = raw()
    assert silent.connect("will-1", keepalive=1, will=("wills/1", b"gone", 1, False)).body[1] == 0
    will = watcher.publishes(1, timeout=5)[0]  # no PINGREQ: closed after 1.5 s
    assert (will.topic, will.payload, will.qos) == ("wills/1", b"gone", 1)
    assert silent.closed_by_broker(1)


def test_keepalive_3_1_2_23_pingreq_keeps_the_connection_open(raw: Raw) -> None:
    client = raw()
    client.connect("ping-1", keepalive=1)
    for _ in range(3):
        client.send(b"\xc0\x00")
        assert client.read(0.8) is not None  # PINGRESP
    assert client.is_open()


def test_keepalive_3_1_2_10_a_clean_disconnect_discards_the_will(raw: Raw) -> None:
    watcher = raw()
    watcher.connect("will-watch-2")
    watcher.subscribe(("wills/2", 0))
    client = raw()
    client.connect("will-2", keepalive=60, will=("wills/2", b"gone", 0, False))
    client.disconnect()
    got = watcher.read(0.5)
    assert got is None, got
    assert watcher.is_open()


def test_keepalive_3_1_2_8_a_dropped_connection_publishes_the_will_with_its_retain_flag(raw: Raw) -> None:
    watcher = raw()
    watcher.connect("will-watch-3")
    watcher.subscribe(("wills/3", 0))
    client = raw()
    client.connect("will-3", will=("wills/3", b"lost", 0, True))
    client.close()
    assert watcher.publishes(1)[0].payload == b"lost"
    late = raw()
    late.connect("will-late-3")
    late.subscribe(("wills/3", 0))
    replay = late.publishes(1)[0]
    assert (replay.payload, replay.retain) == (b"lost", True)


@pytest.fixture(scope="module")
def capped_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainNode]:
    yield from plain_node(tmp_path_factory, max_keepalive="1")


def test_v5_3_2_2_21_a_longer_or_no_keep_alive_is_replaced_by_the_server_keep_alive(capped_node: PlainNode) -> None:
    client = RawClient(capped_node.port, protocol_level=MQTT_5)
    try:
        connack = client.connect("capped-v5", keepalive=0)
        assert connack.properties.server_keep_alive == 1
        assert client.expect(DISCONNECT, timeout=10).reason == ReasonCode.KEEP_ALIVE_TIMEOUT  # silent past 1.5 s
        assert client.closed_by_broker()
    finally:
        client.close()
    within = RawClient(capped_node.port, protocol_level=MQTT_5)
    try:
        assert within.connect("within-v5", keepalive=1).properties.server_keep_alive is None
    finally:
        within.close()
    old = RawClient(capped_node.port)
    try:
        assert old.connect("capped-311", keepalive=0).body == b"\x00\x00"  # 3.1.1: unchanged
        assert old.nothing_for(2.0)  # and its keep alive of 0 stands
    finally:
        old.close()
