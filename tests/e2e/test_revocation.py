"""Revocation takes effect at once (issue 12), embedded and clustered: deleting a device,
disabling a user and revoking a user's tokens close the live sessions concerned, on whichever
node holds them, within a second; what they publish afterwards is not taken, and they cannot
connect again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx

from chatmq.core.settings import Settings
from tests.e2e.harness import Deployment, RawClient, Users
from tests.e2e.test_admin import PASSWORD, admin_headers, bearer

WITHIN = 1.0  # seconds from the API's answer to the closed connection
GRACE = Settings.model_fields["refresh_reuse_grace"].default


def connected(server: Deployment, username: str, password: str) -> RawClient:
    client = RawClient(server, username, password)
    assert not client.wait(lambda: client.connack).is_failure
    return client


def seconds_until(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """How long until ``predicate`` holds (polled every 10 ms); fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - start


def refused(server: Deployment, username: str, password: str) -> bool:
    client = RawClient(server, username, password)
    try:
        return bool(client.wait(lambda: client.connack).is_failure)
    finally:
        client.close()


def new_device(server: Deployment, token: str) -> tuple[str, str]:
    made = httpx.post(f"{server.api_url}/api/v1/devices", json={"name": "sensor"}, headers=bearer(token))
    assert made.status_code == 201, made.text
    return made.json()["device_id"], made.json()["secret"]


def test_deleted_device_is_cut_off_within_a_second(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    device_id, secret = new_device(server, owner.access_token)
    kept_id, kept_secret = new_device(server, owner.access_token)
    dev, kept = connected(server, device_id, secret), connected(server, kept_id, kept_secret)
    try:
        deleted = httpx.delete(f"{server.api_url}/api/v1/devices/{device_id}", headers=bearer(owner.access_token))
        assert deleted.status_code == 204
        assert seconds_until(lambda: not dev.client.is_connected()) < WITHIN
        # what it tries to publish now goes nowhere, and it cannot come back
        assert dev.client.publish(f"devices/{device_id}/telemetry", b'{"temp": 1}', qos=1).rc != 0
        assert refused(server, device_id, secret)
        assert kept.client.is_connected()  # the owner's other device stays
    finally:
        dev.close()
        kept.close()


def test_disabled_user_and_their_devices_are_cut_off_within_a_second(server: Deployment, users: Users) -> None:
    operator = admin_headers(server)
    victim, bystander = users(connect=False), users(connect=False)
    device_id, secret = new_device(server, victim.access_token)
    phone = connected(server, victim.uid, victim.access_token)
    dev = connected(server, device_id, secret)
    other = connected(server, bystander.uid, bystander.access_token)
    try:
        r = httpx.post(f"{server.api_url}/api/v1/admin/users/{victim.uid}/disable", headers=operator)
        assert r.status_code == 204
        assert seconds_until(lambda: not phone.client.is_connected() and not dev.client.is_connected()) < WITHIN
        assert refused(server, victim.uid, victim.access_token)
        assert refused(server, device_id, secret)
        assert other.client.is_connected()
    finally:
        for client in (phone, dev, other):
            client.close()


def test_revoked_tokens_cut_the_user_off_within_a_second(server: Deployment, users: Users) -> None:
    operator = admin_headers(server)
    name = f"u{uuid.uuid4().hex[:12]}"
    victim = users(name, connect=False)
    phone = connected(server, victim.uid, victim.access_token)
    try:
        r = httpx.post(f"{server.api_url}/api/v1/admin/users/{victim.uid}/revoke-tokens", headers=operator)
        assert r.status_code == 204
        assert seconds_until(lambda: not phone.client.is_connected()) < WITHIN
        assert refused(server, victim.uid, victim.access_token)
    finally:
        phone.close()


def test_deleted_account_is_cut_off_and_its_username_is_free(server: Deployment, users: Users) -> None:
    name = f"u{uuid.uuid4().hex[:12]}"
    leaver, friend = users(name, connect=False), users()
    device_id, secret = new_device(server, leaver.access_token)
    phone, dev = connected(server, leaver.uid, leaver.access_token), connected(server, device_id, secret)
    friend.wait_ack(friend.send(leaver.uid, "waiting for you"), 15)
    api = f"{server.api_url}/api/v1"
    try:
        wrong = httpx.request("DELETE", f"{api}/users/me", json={"password": "nope"},
                              headers=bearer(leaver.access_token))
        assert wrong.status_code == 403
        r = httpx.request("DELETE", f"{api}/users/me", json={"password": PASSWORD}, headers=bearer(leaver.access_token))
        assert r.status_code == 204
        assert seconds_until(lambda: not phone.client.is_connected() and not dev.client.is_connected()) < WITHIN
        assert refused(server, leaver.uid, leaver.access_token)
        assert refused(server, device_id, secret)
        assert httpx.get(f"{api}/users/me", headers=bearer(leaver.access_token)).status_code == 401
        login = httpx.post(f"{api}/auth/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 401
        again = httpx.post(f"{api}/auth/register", json={"username": name, "password": PASSWORD})
        assert again.status_code == 201
        assert again.json()["user_id"] != leaver.uid
        assert friend.connected
    finally:
        phone.close()
        dev.close()


def test_a_refresh_token_replayed_at_once_revokes_its_login(server: Deployment, users: Users) -> None:
    """Refresh tokens rotate; a spent one shown again (stolen), even right after its use (strict by
    default: no ``refresh_reuse_grace``), is refused and ends its whole login, in whichever API
    process (and store) answers."""
    name = f"u{uuid.uuid4().hex[:12]}"
    users(name, connect=False)
    api = f"{server.api_url}/api/v1"
    login = httpx.post(f"{api}/auth/login", json={"username": name, "password": PASSWORD}).json()
    rotated = httpx.post(f"{api}/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert rotated.status_code == 200
    assert GRACE == 0
    stolen = httpx.post(f"{api}/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert (stolen.status_code, stolen.json()["type"]) == (401, "/api/v1/problems/unauthorized")
    newest = httpx.post(f"{api}/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]})
    assert newest.status_code == 401
    fresh = httpx.post(f"{api}/auth/login", json={"username": name, "password": PASSWORD}).json()
    assert httpx.post(f"{api}/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 200
