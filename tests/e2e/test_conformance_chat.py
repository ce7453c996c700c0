"""MQTT 3.1.1 conformance points on the chat node (``chatmq serve``), with raw-socket clients that
log in as chat users: the same delivery path as the plain node, behind the per-user ACL."""

from __future__ import annotations

import httpx
import orjson

from tests.conformance.raw import PUBACK, RawClient
from tests.e2e.harness import Deployment, Users

TIMEOUT = 15


def _raw(server: Deployment) -> RawClient:
    return RawClient(server.mqtt_port, host=server.host)


def test_chat_qos_3_8_4_6_an_inbox_subscribed_at_qos0_is_delivered_at_qos0(server: Deployment, users: Users) -> None:
    alice, bob = users(), users(connect=False)
    raw = _raw(server)
    try:
        assert raw.connect(f"{bob.uid}-qos0", username=bob.uid, password=bob.access_token).body[1] == 0
        assert raw.subscribe((f"users/{bob.uid}/inbox", 0)) == [0]
        alice.wait_ack(alice.send(bob.uid, "hi"), TIMEOUT)
        got = raw.publishes(1, timeout=TIMEOUT)[0]
        assert got.qos == 0
        assert b'"hi"' in got.payload
    finally:
        raw.close()


def test_chat_sessions_3_1_4_2_a_second_connection_with_the_client_id_takes_over(
        server: Deployment, users: Users) -> None:
    alice, bob = users(), users(connect=False)
    first, second = _raw(server), _raw(server)
    inbox = f"users/{bob.uid}/inbox"
    try:
        first.connect(f"{bob.uid}-phone", username=bob.uid, password=bob.access_token)
        first.subscribe((inbox, 1))
        assert second.connect(f"{bob.uid}-phone", username=bob.uid, password=bob.access_token).body[1] == 0
        assert first.closed_by_broker(TIMEOUT)
        second.subscribe((inbox, 1))
        alice.wait_ack(alice.send(bob.uid, "to the new connection"), TIMEOUT)
        got = second.publishes(1, timeout=TIMEOUT)[0]
        assert b"to the new connection" in got.payload
        second.ack(PUBACK, got.packet_id)
    finally:
        first.close()
        second.close()


def test_chat_acl_another_users_inbox_is_refused_with_0x80(server: Deployment, users: Users) -> None:
    alice, bob = users(connect=False), users(connect=False)
    raw = _raw(server)
    try:
        raw.connect(f"{bob.uid}-snoop", username=bob.uid, password=bob.access_token)
        codes = raw.subscribe((f"users/{alice.uid}/inbox", 1), ("#", 1), (f"users/{bob.uid}/inbox", 1))
        assert codes == [0x80, 0x80, 1]
    finally:
        raw.close()


def test_chat_acl_a_device_reads_only_its_own_inbox_and_gets_its_errors_there(
        server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    headers = {"Authorization": f"Bearer {owner.access_token}"}
    made = [httpx.post(f"{server.api_url}/api/v1/devices", json={"name": n}, headers=headers).json()
            for n in ("a", "b")]
    device, other = made[0]["device_id"], made[1]["device_id"]
    raw = _raw(server)
    try:
        assert raw.connect(f"{device}-c", username=device, password=made[0]["secret"]).body[1] == 0
        codes = raw.subscribe((f"devices/{other}/inbox", 1), ("devices/+/inbox", 1), ("#", 1),
                              (f"users/{owner.uid}/inbox", 1), (f"devices/{device}/telemetry", 1),
                              (f"devices/{device}/inbox", 1))
        assert codes == [0x80, 0x80, 0x80, 0x80, 0x80, 1]
        raw.publish(f"devices/{device}/telemetry", b'{"temp": "warm"}', 1)
        raw.publish(f"devices/{device}/inbox", b'{"temp": 1}', 1)  # not a topic a device may publish to
        got = [orjson.loads(p.payload) for p in raw.publishes(2, timeout=TIMEOUT)]
        assert [(e["type"], e["code"]) for e in got] == [("error", "invalid_envelope"), ("error", "forbidden")]
        assert "field 'temp' must be a number or a boolean" in got[0]["reason"]
    finally:
        raw.close()
