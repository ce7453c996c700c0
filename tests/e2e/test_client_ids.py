"""End to end, both modes: an MQTT client id belongs to the user (or device) whose session holds it.

Another account holder who knows it and CONNECTs with it, with their own valid credentials, is refused
(CONNACK 0x02 identifier rejected; MQTT 5: 0x85 Client Identifier not valid): the owner's connection
stays up, with its session and subscription, and so does a persistent session kept for later. The
owner itself still takes its session over by connecting again (tests/e2e/test_conformance_chat.py).
In a cluster the owner is on node n1 and the other account holder tries n1 and n2 (through
``chat.connections`` n2 knows who holds the client id on n1; n1 ignores a takeover by anyone else).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from chatmq.broker.wire import MQTT_5, MQTT_311, PINGREQ_BYTES, Properties
from tests.conformance.raw import PINGRESP, PUBACK, RawClient
from tests.e2e.harness import ClusterDeployment, Deployment, Peer, Users

TIMEOUT = 15
REFUSED = {MQTT_311: 0x02, MQTT_5: 0x85}
"""The CONNACK code for a client id held by another principal, by protocol level."""
KEPT = Properties(session_expiry_interval=300)
"""An MQTT 5 CONNECT's properties for a session kept after its connection (clean session 0 below 5)."""


def owner_port(server: Deployment) -> int:
    """Where the owner connects: ``chatmq serve``, or node n1 of the cluster itself (not nginx)."""
    return server.node_port("n1") if isinstance(server, ClusterDeployment) else server.mqtt_port


def other_ports(server: Deployment) -> list[int]:
    """Where another account holder tries the owner's client id: the owner's node and, in a cluster,
    the other node too."""
    if isinstance(server, ClusterDeployment):
        return [server.node_port("n1"), server.node_port("n2")]
    return [server.mqtt_port]


@pytest.fixture
def raw(server: Deployment) -> Iterator[list[RawClient]]:
    made: list[RawClient] = []
    yield made
    for c in made:
        c.close()


def open_raw(server: Deployment, made: list[RawClient], port: int, level: int) -> RawClient:
    made.append(RawClient(port, server.host, protocol_level=level))
    return made[-1]


def wait_until_listed(server: Deployment, owner: Peer, path: str, listed: Callable[[Any], bool]) -> None:
    """Until the owner's ``GET path`` shows the connection (``listed``): in a cluster ``chat.connections``
    then carried it, and the other node reads it from the same topic (its table may lag the API's by a
    moment, hence the short pause after)."""
    headers = {"Authorization": f"Bearer {owner.access_token}"}
    deadline = time.monotonic() + TIMEOUT
    while not listed(httpx.get(f"{server.api_url}/api/v1{path}", headers=headers).json()):
        assert time.monotonic() < deadline, f"{path} never showed the connection"
        time.sleep(0.05)
    if isinstance(server, ClusterDeployment):
        time.sleep(0.5)


def wait_known_online(server: Deployment, owner: Peer, client_id: str) -> None:
    wait_until_listed(server, owner, "/users/me/sessions", lambda body: any(
        s["client_id"] == client_id and s["online"] for s in body["sessions"]))


def receives(conn: RawClient, text: str) -> None:
    got = conn.publishes(1, timeout=TIMEOUT)[0]
    assert text.encode() in got.payload
    conn.ack(PUBACK, got.packet_id)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5], ids=["3.1.1", "5"])
def test_another_users_client_id_is_refused_and_the_owner_stays_connected(
        server: Deployment, users: Users, raw: list[RawClient], level: int) -> None:
    alice, bob, mallory = users(), users(connect=False), users(connect=False)
    client_id = f"bobs-phone-{uuid.uuid4().hex[:8]}"
    owner = open_raw(server, raw, owner_port(server), level)
    assert owner.connect(client_id, username=bob.uid, password=bob.access_token).body[1] == 0
    assert owner.subscribe((f"users/{bob.uid}/inbox", 1)) == [1]
    wait_known_online(server, bob, client_id)
    for port in other_ports(server):
        stranger = open_raw(server, raw, port, level)
        connack = stranger.connect(client_id, username=mallory.uid, password=mallory.access_token)
        assert list(connack.body[:2]) == [0, REFUSED[level]]  # session present 0, identifier rejected
        assert stranger.closed_by_broker(TIMEOUT)
    assert owner.is_open()
    text = f"still yours {level}"
    alice.wait_ack(alice.send(bob.uid, text), TIMEOUT)
    receives(owner, text)  # the owner's connection and subscription are untouched
    assert owner.is_open()
    assert f"client id '{client_id}' is held by a session of another user" in server.log()


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5], ids=["3.1.1", "5"])
def test_another_users_client_id_cannot_take_a_kept_session(
        server: Deployment, users: Users, raw: list[RawClient], level: int) -> None:
    alice, bob, mallory = users(), users(connect=False), users(connect=False)
    client_id = f"bobs-laptop-{uuid.uuid4().hex[:8]}"
    port = owner_port(server)  # a persistent session is kept on the node it was on
    props = KEPT if level == MQTT_5 else None
    first = open_raw(server, raw, port, level)
    assert first.connect(client_id, clean=False, username=bob.uid, password=bob.access_token,
                         properties=props).body[1] == 0
    assert first.subscribe((f"users/{bob.uid}/inbox", 1)) == [1]
    first.disconnect()  # the session stays, with its subscription, for its next connection
    stranger = open_raw(server, raw, port, level)
    connack = stranger.connect(client_id, clean=False, username=mallory.uid, password=mallory.access_token,
                               properties=props)
    assert list(connack.body[:2]) == [0, REFUSED[level]]
    text = f"kept for bob {level}"
    alice.wait_ack(alice.send(bob.uid, text), TIMEOUT)
    again = open_raw(server, raw, port, level)
    resumed = again.connect(client_id, clean=False, username=bob.uid, password=bob.access_token, properties=props)
    assert list(resumed.body[:2]) == [1, 0]  # session present: nobody else ended or took it
    receives(again, text)  # on the kept subscription, without subscribing again


def test_a_devices_client_id_is_refused_to_other_devices_and_users(
        server: Deployment, users: Users, raw: list[RawClient]) -> None:
    bob, mallory = users(connect=False), users(connect=False)

    def device_of(user: Peer) -> tuple[str, str]:
        made = httpx.post(f"{server.api_url}/api/v1/devices", json={"name": "sensor"},
                          headers={"Authorization": f"Bearer {user.access_token}"})
        assert made.status_code == 201
        return made.json()["device_id"], made.json()["secret"]

    bobs_id, bobs_secret = device_of(bob)
    strangers_id, strangers_secret = device_of(mallory)
    client_id = f"sensor-{uuid.uuid4().hex[:8]}"
    sensor = open_raw(server, raw, owner_port(server), MQTT_311)
    assert sensor.connect(client_id, username=bobs_id, password=bobs_secret).body[1] == 0
    assert sensor.subscribe((f"devices/{bobs_id}/inbox", 1)) == [1]
    wait_until_listed(server, bob, f"/devices/{bobs_id}", lambda body: body["online"])
    for port in other_ports(server):
        for username, password in ((strangers_id, strangers_secret), (mallory.uid, mallory.access_token),
                                   (bob.uid, bob.access_token)):  # the device's owner is not the device either
            stranger = open_raw(server, raw, port, MQTT_311)
            assert list(stranger.connect(client_id, username=username, password=password).body[:2]) == [0, 0x02]
    assert sensor.is_open()
    sensor.send(PINGREQ_BYTES)  # the device's connection still answers
    assert sensor.expect(PINGRESP, timeout=TIMEOUT).body == b""
    again = open_raw(server, raw, owner_port(server), MQTT_311)
    assert again.connect(client_id, username=bobs_id, password=bobs_secret).body[1] == 0  # the device itself may
    assert sensor.closed_by_broker(TIMEOUT)


@pytest.mark.cluster
def test_the_same_user_takes_its_client_id_over_on_another_node(
        server: Deployment, users: Users, raw: list[RawClient]) -> None:
    if not isinstance(server, ClusterDeployment):
        pytest.skip("two nodes: the cluster")
    alice, bob = users(), users(connect=False)
    client_id = f"bobs-tablet-{uuid.uuid4().hex[:8]}"
    first = open_raw(server, raw, server.node_port("n1"), MQTT_311)
    assert first.connect(client_id, username=bob.uid, password=bob.access_token).body[1] == 0
    assert first.subscribe((f"users/{bob.uid}/inbox", 1)) == [1]
    wait_known_online(server, bob, client_id)
    second = open_raw(server, raw, server.node_port("n2"), MQTT_311)
    assert second.connect(client_id, username=bob.uid, password=bob.access_token).body[1] == 0
    assert second.subscribe((f"users/{bob.uid}/inbox", 1)) == [1]
    assert first.closed_by_broker(TIMEOUT)  # n1 closed bob's own older connection ([MQTT-3.1.4-2])
    alice.wait_ack(alice.send(bob.uid, "on n2 now"), TIMEOUT)
    receives(second, "on n2 now")
