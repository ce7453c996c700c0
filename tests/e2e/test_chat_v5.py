"""The chat node with MQTT 5 clients (paho-mqtt ``protocol=MQTTv5``): chat works as over 3.1.1, and
refusals carry MQTT 5 reason codes besides the contract's ``error`` envelope."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.devices.sdk import release_sockets
from tests.e2e.harness import Deployment, Users

TIMEOUT = 15.0


class V5Chat:
    """A paho MQTT 5 client logged in as a user, its events on queues."""

    def __init__(self, server: Deployment, username: str, password: str, transport: str,
                 properties: Properties | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"v5-{username}",
                                  protocol=MQTTProtocolVersion.MQTTv5, transport=transport)  # type: ignore[arg-type]
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.username_pw_set(username, password)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.pubacks: queue.Queue[tuple[int, ReasonCode, Any]] = queue.Queue()
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.put(rc)
        self.client.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(list(rcs))
        self.client.on_publish = lambda _c, _u, mid, rc, props: self.pubacks.put((mid, rc, props))
        self.client.on_message = lambda _c, _u, msg: self.inbox.put(orjson.loads(msg.payload))
        port = server.ws_port if transport == "websockets" else server.mqtt_port
        self.client.connect(server.host, port, properties=properties)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


@pytest.fixture
def v5(server: Deployment) -> Iterator[Any]:
    made: list[V5Chat] = []

    def make(username: str, password: str, transport: str = "tcp", properties: Properties | None = None) -> V5Chat:
        made.append(V5Chat(server, username, password, transport, properties))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_v5_bad_token_gets_connack_0x87_not_authorized(users: Users, v5: Any) -> None:
    alice = users(connect=False)
    client = v5(alice.uid, "not-a-token")
    assert client.connacks.get(timeout=TIMEOUT).value == 0x87


def test_v5_chat_and_refusals_with_reason_codes(users: Users, v5: Any, transport: str) -> None:
    alice, bob = users(connect=False), users()
    client = v5(alice.uid, alice.access_token, transport)
    assert client.connacks.get(timeout=TIMEOUT).value == 0
    client.client.subscribe([(f"users/{alice.uid}/inbox", 1), (f"users/{bob.uid}/inbox", 1)])
    assert [rc.value for rc in client.subacks.get(timeout=TIMEOUT)] == [1, 0x87]
    # a message to bob: acknowledged as usual, and bob gets it
    envelope = {"type": "message", "id": "v5-1", "to": bob.uid, "body": {"text": "hi over v5"}}
    info = client.client.publish(f"users/{alice.uid}/outbox", orjson.dumps(envelope), qos=1)
    mid, rc, _props = client.pubacks.get(timeout=TIMEOUT)
    assert (mid, rc.value) == (info.mid, 0)
    ack = client.inbox.get(timeout=TIMEOUT)
    assert (ack["type"], ack["client_id"]) == ("ack", "v5-1")
    got = bob.wait_messages(1, TIMEOUT)
    assert got[0]["body"] == {"text": "hi over v5"}
    # publishing to bob's outbox: PUBACK 0x87 with the code as a user property, and the error envelope
    info = client.client.publish(f"users/{bob.uid}/outbox", orjson.dumps(envelope), qos=1)
    mid, rc, props = client.pubacks.get(timeout=TIMEOUT)
    assert (mid, rc.value) == (info.mid, 0x87)
    assert ("code", "forbidden") in props.UserProperty
    error = client.inbox.get(timeout=TIMEOUT)
    while error["type"] != "error":  # bob's receipt may come first
        error = client.inbox.get(timeout=TIMEOUT)
    assert error["code"] == "forbidden"


def test_v5_3_1_2_29_no_problem_information_means_no_reason_string_or_user_properties(users: Users, v5: Any) -> None:
    alice, bob = users(connect=False), users(connect=False)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.RequestProblemInformation = 0
    client = v5(alice.uid, alice.access_token, properties=props)
    assert client.connacks.get(timeout=TIMEOUT).value == 0
    info = client.client.publish(f"users/{bob.uid}/outbox", b'{"type":"receipt"}', qos=1)
    mid, rc, ack_props = client.pubacks.get(timeout=TIMEOUT)
    assert (mid, rc.value) == (info.mid, 0x87)  # the reason code still says it
    assert not hasattr(ack_props, "UserProperty")
    assert not hasattr(ack_props, "ReasonString")
