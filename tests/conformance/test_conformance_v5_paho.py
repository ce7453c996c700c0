"""Interoperability: paho-mqtt's MQTT 5 client (``protocol=MQTTv5``) against the plain node."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode

from chatmq.devices.sdk import release_sockets
from tests.conformance.conftest import PlainNode


class V5Client:
    """A paho MQTT 5 client with its events on queues (no sleeps: each wait has its own timeout)."""

    def __init__(self, node: PlainNode, client_id: str) -> None:
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        self.connacks: queue.Queue[tuple[PahoReasonCode, Any]] = queue.Queue()
        self.subacks: queue.Queue[list[PahoReasonCode]] = queue.Queue()
        self.unsubacks: queue.Queue[list[PahoReasonCode]] = queue.Queue()
        self.messages: queue.Queue[MQTTMessage] = queue.Queue()
        self.published: queue.Queue[int] = queue.Queue()
        self.disconnects: queue.Queue[PahoReasonCode] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, rc, props: self.connacks.put((rc, props))
        self.client.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(list(rcs))
        self.client.on_unsubscribe = lambda _c, _u, _mid, rcs, _p: self.unsubacks.put(list(rcs))
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.published.put(mid)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.put(rc)
        self.client.connect("127.0.0.1", node.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)  # paho's wake-up socket pair, else closed only by the GC (a ResourceWarning)


@pytest.fixture
def paho5(node: PlainNode) -> Iterator[Any]:
    made: list[V5Client] = []
    lock = threading.Lock()

    def make(client_id: str) -> V5Client:
        client = V5Client(node, client_id)
        with lock:
            made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


def test_v5_paho_connects_subscribes_and_relays_qos0_and_qos1(paho5: Any) -> None:
    sub = paho5("paho5-sub")
    rc, props = sub.connacks.get(timeout=10)
    assert rc.value == 0
    assert props.MaximumPacketSize > 0
    sub.client.subscribe([("paho5/t", 1), ("$share/g/paho5/t", 1)])
    codes = sub.subacks.get(timeout=10)
    assert [c.value for c in codes] == [1, 1]
    pub = paho5("paho5-pub")
    assert pub.connacks.get(timeout=10)[0].value == 0
    pub.client.publish("paho5/t", b"zero", qos=0)
    info = pub.client.publish("paho5/t", b"one", qos=1)
    assert info.mid in {pub.published.get(timeout=10), pub.published.get(timeout=10)}
    got = [sub.messages.get(timeout=10) for _ in range(4)]  # by the plain and the shared subscription
    assert sorted((m.payload, m.qos) for m in got) == [(b"one", 1), (b"one", 1), (b"zero", 0), (b"zero", 0)]
    sub.client.unsubscribe(["paho5/t", "paho5/none"])
    assert [c.value for c in sub.unsubacks.get(timeout=10)] == [0, 0x11]


def test_v5_paho_empty_client_id_gets_the_assigned_identifier(node: PlainNode) -> None:
    client = V5Client(node, "")
    try:
        rc, props = client.connacks.get(timeout=10)
        assert rc.value == 0
        assert props.AssignedClientIdentifier
    finally:
        client.stop()


def test_v5_paho_a_takeover_is_reported_as_session_taken_over(paho5: Any) -> None:
    first = paho5("paho5-taken")
    assert first.connacks.get(timeout=10)[0].value == 0
    first.client.reconnect_delay_set(60, 120)  # do not come straight back and take it again
    second = paho5("paho5-taken")
    assert second.connacks.get(timeout=10)[0].value == 0
    assert first.disconnects.get(timeout=10).value == 0x8E


def test_v5_paho_publish_properties_are_accepted(paho5: Any) -> None:
    pub = paho5("paho5-props")
    assert pub.connacks.get(timeout=10)[0].value == 0
    props = PahoProperties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("k", "v")
    props.ContentType = "text/plain"
    props.MessageExpiryInterval = 60
    info = pub.client.publish("paho5/props", b"x", qos=1, properties=props)
    assert pub.published.get(timeout=10) == info.mid
