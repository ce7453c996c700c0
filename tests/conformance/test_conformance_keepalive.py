"""Keepalive and the will message (MQTT 3.1.1 §3.1.2.5, §3.1.2.10)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.raw import RawClient

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
