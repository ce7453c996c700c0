"""IoT devices: credentials from the API, device CONNECT, ACL, revocation."""

from __future__ import annotations

import httpx
import orjson

from tests.e2e.harness import Deployment, RawClient, Users


def test_device_credentials_connect_publish_and_revoke(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    headers = {"Authorization": f"Bearer {owner.access_token}"}
    created = httpx.post(f"{server.api_url}/api/v1/devices", json={"name": "thermometer"}, headers=headers)
    assert created.status_code == 201
    device_id, secret = created.json()["device_id"], created.json()["secret"]

    dev = RawClient(server, device_id, secret)
    try:
        assert not dev.wait(lambda: dev.connack).is_failure
        info = dev.client.publish(f"devices/{device_id}/telemetry", orjson.dumps({"temp": 21.5}), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
        dev.client.subscribe(f"users/{owner.uid}/inbox", 1)  # devices may not read inboxes
        assert [rc.value for rc in dev.wait(lambda: dev.granted)] == [0x80]
    finally:
        dev.close()

    wrong = RawClient(server, device_id, secret + "x")
    try:
        assert wrong.wait(lambda: wrong.connack).is_failure
    finally:
        wrong.close()

    listed = httpx.get(f"{server.api_url}/api/v1/devices", headers=headers).json()
    assert [d["device_id"] for d in listed] == [device_id]
    assert httpx.delete(f"{server.api_url}/api/v1/devices/{device_id}", headers=headers).status_code == 204
    revoked = RawClient(server, device_id, secret)
    try:
        assert revoked.wait(lambda: revoked.connack).is_failure
    finally:
        revoked.close()
