"""REST API: /devices (register with a one-time secret, list, revoke)."""

from __future__ import annotations

import pytest

from chatmq.core.auth import verify_secret
from chatmq.services.registry.sessions import Connection
from tests.unit.conftest import ApiHarness

V1 = "/api/v1"


async def test_create_device_returns_credentials_once(api: ApiHarness) -> None:
    me = await api.user("alice")
    r = await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "thermostat"})
    assert r.status_code == 201
    body = r.json()
    assert body["device_id"].startswith("d")
    assert body["name"] == "thermostat"
    assert len(body["secret"]) >= 32
    device = await api.store.get_device(body["device_id"])
    assert device is not None
    assert device.owner_id == me
    assert device.revoked is False
    assert body["secret"] not in device.secret_hash
    assert verify_secret(device.secret_hash, body["secret"])
    assert not verify_secret(device.secret_hash, body["secret"] + "x")


async def test_each_device_gets_its_own_secret(api: ApiHarness) -> None:
    me = await api.user("alice")
    a = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "a"})).json()
    b = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "b"})).json()
    assert a["device_id"] != b["device_id"]
    assert a["secret"] != b["secret"]


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "x" * 101}, {}, {"name": 5}])
async def test_create_device_bad_name_is_422(api: ApiHarness, body: dict[str, object]) -> None:
    me = await api.user("alice")
    r = await api.client.post(f"{V1}/devices", headers=api.auth(me), json=body)
    assert r.status_code == 422
    assert await api.store.list_devices(me) == []


async def test_list_devices_shows_only_mine_without_secrets(api: ApiHarness) -> None:
    me = await api.user("alice")
    bob = await api.user("bob")
    first = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "one"})).json()
    second = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "two"})).json()
    await api.client.post(f"{V1}/devices", headers=api.auth(bob), json={"name": "bobs"})
    r = await api.client.get(f"{V1}/devices", headers=api.auth(me))
    assert r.status_code == 200
    listed = r.json()
    assert [d["device_id"] for d in listed] == [first["device_id"], second["device_id"]]
    assert [d["name"] for d in listed] == ["one", "two"]
    assert all(set(d) == {"device_id", "name", "created_at"} for d in listed)


async def test_delete_device_revokes_it(api: ApiHarness) -> None:
    me = await api.user("alice")
    dev = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "one"})).json()
    r = await api.client.delete(f"{V1}/devices/{dev['device_id']}", headers=api.auth(me))
    assert r.status_code == 204
    assert r.content == b""
    stored = await api.store.get_device(dev["device_id"])
    assert stored is None or stored.revoked
    assert (await api.client.get(f"{V1}/devices", headers=api.auth(me))).json() == []
    again = await api.client.delete(f"{V1}/devices/{dev['device_id']}", headers=api.auth(me))
    assert again.status_code == 404


async def test_delete_unknown_or_foreign_device_is_404(api: ApiHarness) -> None:
    me = await api.user("alice")
    bob = await api.user("bob")
    dev = (await api.client.post(f"{V1}/devices", headers=api.auth(bob), json={"name": "bobs"})).json()
    r = await api.client.delete(f"{V1}/devices/{dev['device_id']}", headers=api.auth(me))
    assert r.status_code == 404
    assert r.json()["detail"]
    stored = await api.store.get_device(dev["device_id"])
    assert stored is not None
    assert stored.revoked is False
    r = await api.client.delete(f"{V1}/devices/d0000000000000000", headers=api.auth(me))
    assert r.status_code == 404


async def test_deleted_device_session_is_closed_at_once(api: ApiHarness) -> None:
    """Deleting a device closes its live session (session control, by device id); another
    device's, the owner's and a foreign delete attempt leave theirs alone."""
    me = await api.user("alice")
    bob = await api.user("bob")
    dev = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "one"})).json()
    other = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "two"})).json()
    api.control.connections = [Connection("device", dev["device_id"], "sensor-1", "n1", "tcp", 1),
                               Connection("device", other["device_id"], "sensor-2", "n2", "tcp", 2),
                               Connection("user", me, "phone", "n1", "ws", 3)]
    refused = await api.client.delete(f"{V1}/devices/{dev['device_id']}", headers=api.auth(bob))
    assert refused.status_code == 404
    assert len(api.control.connections) == 3
    assert (await api.client.delete(f"{V1}/devices/{dev['device_id']}", headers=api.auth(me))).status_code == 204
    assert [c.client_id for c in api.control.connections] == ["sensor-2", "phone"]
