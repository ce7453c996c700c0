"""Sessions: a persistent session expires ``broker_session_expiry`` seconds after its client went away
(MQTT 3.1.1 leaves the lifetime to the server, §3.1.2.4: "the Server MAY discard the Session")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from chatmq.broker.wire import Properties
from tests.conformance.conftest import PlainNode, plain_node
from tests.conformance.raw import PUBACK, RawClient

Raw = Callable[[], RawClient]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainNode]:
    yield from plain_node(tmp_path_factory, broker_session_expiry="3")


def _queue_one(raw: Raw, client_id: str, topic: str) -> None:
    sub = raw()
    assert sub.connect(client_id, clean=False).body == b"\x00\x00"
    assert sub.subscribe((topic, 1)) == [1]
    sub.disconnect()
    pub = raw()
    pub.connect(f"{client_id}-pub")
    pub.publish(topic, b"while away", 1)
    pub.expect(PUBACK)


def test_sessions_3_1_2_4_a_session_back_within_the_expiry_keeps_its_queue(raw: Raw) -> None:
    _queue_one(raw, "expiry-1", "expiry/1")
    back = raw()
    assert back.connect("expiry-1", clean=False).body == b"\x01\x00"  # session present
    assert [p.payload for p in back.publishes(1)] == [b"while away"]


def test_sessions_3_1_2_4_a_session_away_longer_than_the_expiry_is_gone(raw: Raw, node: PlainNode) -> None:
    _queue_one(raw, "expiry-2", "expiry/2")
    deadline = time.monotonic() + 10
    while not any("persistent session(s) expired" in line and "expiry-2" in line for line in node.log().splitlines()):
        assert time.monotonic() < deadline, node.log()
        time.sleep(0.1)
    back = raw()
    assert back.connect("expiry-2", clean=False).body == b"\x00\x00"  # no session present: a new one
    assert back.nothing_for(0.5)  # its queue went with it
    pub = raw()  # and its subscription: a new publish does not reach it
    pub.connect("expiry-2-pub2")
    pub.publish("expiry/2", b"after", 1)
    pub.expect(PUBACK)
    assert back.nothing_for(0.5)


def test_v5_3_2_2_3_2_the_connack_caps_a_longer_session_expiry_interval_at_broker_session_expiry(
        raw5: Raw) -> None:
    client = raw5()
    connack = client.connect("v5-capped", clean=False, properties=Properties(session_expiry_interval=300))
    assert connack.reason == 0
    assert connack.properties.session_expiry_interval == 3
    shorter = raw5().connect("v5-shorter", clean=False, properties=Properties(session_expiry_interval=2))
    assert shorter.properties.session_expiry_interval is None  # the client's own stands
