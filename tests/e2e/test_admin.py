"""The operators' API against a running server, embedded and clustered: ``chatmq admin create``,
sessions, kick, disable/enable, token revocation and logout, users, groups, stats, problem
details and the failed-login limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatmq.devices.sdk import MessageRejectedError
from tests.e2e.harness import Deployment, Peer, RawClient, Users

TIMEOUT = 15
PASSWORD = "correct horse battery"


def poll(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def admin_create(server: Deployment, *args: str, password: str = "operator-secret") -> subprocess.CompletedProcess[str]:
    cli, store_env = server.store_cli()
    env = {**os.environ, **store_env, "CHATMQ_ADMIN_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "chatmq.run.cli", "admin", "create", *args, *cli],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def admin_headers(server: Deployment) -> dict[str, str]:
    """Headers of the admin ``operator``, made with ``chatmq admin create`` in the deployment's store
    unless it is there already."""
    made = admin_create(server, "operator")
    assert made.returncode == 0, made.stderr
    assert "admin" in made.stdout
    assert "operator (u" in made.stdout
    tokens = httpx.post(f"{server.api_url}/api/v1/auth/login",
                        json={"username": "operator", "password": "operator-secret"}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@dataclass(frozen=True)
class Operator:
    headers: dict[str, str]
    user_id: str


@pytest.fixture(scope="module")
def operator(server: Deployment) -> Operator:
    """The admin made with ``chatmq admin create`` (run twice: the second time changes nothing)."""
    made = admin_create(server, "operator")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("created admin operator")
    again = admin_create(server, "operator", password="not-used-at-all")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already an admin (nothing changed): operator")
    headers = admin_headers(server)
    return Operator(headers, httpx.get(f"{server.api_url}/api/v1/users/me", headers=headers).json()["user_id"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mqtt_accepts(server: Deployment, user_id: str, token: str) -> bool:
    """Whether a fresh MQTT connection with these credentials gets a successful CONNACK."""
    raw = RawClient(server, user_id, token)
    try:
        return not raw.wait(lambda: raw.connack).is_failure
    finally:
        raw.close()


def sessions_of(server: Deployment, operator: Operator, user_id: str) -> list[dict[str, Any]]:
    url = f"{server.api_url}/api/v1/admin/sessions"
    all_sessions: list[dict[str, Any]] = httpx.get(url, headers=operator.headers).json()
    return [s for s in all_sessions if s["id"] == user_id]


def test_sessions_stats_and_kick(server: Deployment, operator: Operator, users: Users) -> None:
    api = f"{server.api_url}/api/v1/admin"
    before = time.time() * 1000
    alice, bob = users(transport="websockets"), users()
    poll(lambda: [len(sessions_of(server, operator, p.uid)) for p in (alice, bob)] == [1, 1])
    (a,), (b,) = sessions_of(server, operator, alice.uid), sessions_of(server, operator, bob.uid)
    assert (a["kind"], a["client_id"], a["transport"]) == ("user", alice.client_id, "ws")
    assert (b["kind"], b["client_id"], b["transport"]) == ("user", bob.client_id, "tcp")
    for s in (a, b):
        assert before - 5000 <= s["since"] <= time.time() * 1000 + 5000
        assert s["node"]

    stats = httpx.get(f"{api}/stats", headers=operator.headers).json()
    assert stats["users"] >= 3
    assert stats["connections"] == sum(stats["connections_by_node"].values()) >= 2
    assert stats["connections"] == sum(stats["connections_by_transport"].values())
    assert stats["connections_by_transport"]["ws"] >= 1
    assert stats["connections_by_transport"]["tcp"] >= 1
    assert {a["node"], b["node"]} <= set(stats["connections_by_node"])
    assert stats["user_connections"] >= 2
    assert stats["online_users"] >= 1
    sent = alice.send(bob.uid, "counted")
    alice.wait_ack(sent, TIMEOUT)
    bob.wait_messages(1, TIMEOUT)
    assert httpx.get(f"{api}/stats", headers=operator.headers).json()["messages_stored"] >= 1

    # kick: the connection closes; the SDK reconnects by itself
    assert httpx.post(f"{api}/sessions/{alice.client_id}/kick", headers=operator.headers).status_code == 204
    poll(lambda: not alice.connected)
    poll(lambda: alice.connected, 40)
    missing = httpx.post(f"{api}/sessions/no-such-client/kick", headers=operator.headers)
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/problem+json")


def test_disable_closes_sessions_refuses_everything_and_enable_restores(
    server: Deployment, operator: Operator, users: Users
) -> None:
    api = f"{server.api_url}/api/v1"
    bob_name = f"u{uuid.uuid4().hex[:12]}"
    alice, bob = users(), users(bob_name)
    poll(lambda: len(sessions_of(server, operator, bob.uid)) == 1)
    assert httpx.post(f"{api}/admin/users/{bob.uid}/disable", headers=operator.headers).status_code == 204
    poll(lambda: not bob.connected)
    poll(lambda: not sessions_of(server, operator, bob.uid))
    assert not mqtt_accepts(server, bob.uid, bob.access_token)
    me = httpx.get(f"{api}/users/me", headers=bearer(bob.access_token))
    assert (me.status_code, me.json()["detail"]) == (403, "account disabled")
    login = httpx.post(f"{api}/auth/login", json={"username": bob_name, "password": PASSWORD})
    assert (login.status_code, login.json()["detail"]) == (401, "account disabled")
    listed = httpx.get(f"{api}/admin/users", headers=operator.headers, params={"limit": 1000}).json()["users"]
    assert {u["user_id"]: u["disabled"] for u in listed}[bob.uid] is True
    # others carry on, and what is sent to bob waits for him
    alice.wait_ack(alice.send(bob.uid, "kept for when bob is back"), TIMEOUT)

    assert httpx.post(f"{api}/admin/users/{bob.uid}/enable", headers=operator.headers).status_code == 204
    assert httpx.get(f"{api}/users/me", headers=bearer(bob.access_token)).status_code == 200
    assert mqtt_accepts(server, bob.uid, bob.access_token)
    myself = httpx.post(f"{api}/admin/users/{operator.user_id}/disable", headers=operator.headers)
    assert myself.status_code == 409


def _login(server: Deployment, username: str) -> dict[str, Any]:
    r = httpx.post(f"{server.api_url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_revoked_tokens_are_refused_and_sessions_close(
    server: Deployment, operator: Operator, users: Users
) -> None:
    api = f"{server.api_url}/api/v1"
    name = f"u{uuid.uuid4().hex[:12]}"
    carol = users(name)
    old_refresh = carol.tokens.refresh_token if carol.tokens else ""
    poll(lambda: len(sessions_of(server, operator, carol.uid)) == 1)
    r = httpx.post(f"{api}/admin/users/{carol.uid}/revoke-tokens", headers=operator.headers)
    assert r.status_code == 204
    poll(lambda: not carol.connected)
    assert not mqtt_accepts(server, carol.uid, carol.access_token)
    me = httpx.get(f"{api}/users/me", headers=bearer(carol.access_token))
    assert (me.status_code, me.json()["detail"]) == (401, "token revoked")
    assert httpx.post(f"{api}/auth/refresh", json={"refresh_token": old_refresh}).status_code == 401
    # logging in again works at once, on REST and MQTT
    fresh = _login(server, name)
    assert httpx.get(f"{api}/users/me", headers=bearer(fresh["access_token"])).status_code == 200
    assert mqtt_accepts(server, carol.uid, fresh["access_token"])
    unknown = httpx.post(f"{api}/admin/users/u0000000000000000/revoke-tokens", headers=operator.headers)
    assert unknown.status_code == 404


def test_logout_signs_the_caller_out_everywhere(server: Deployment, users: Users) -> None:
    api = f"{server.api_url}/api/v1"
    dave, erin = users(), users()
    assert httpx.post(f"{api}/auth/logout", headers=bearer(dave.access_token)).status_code == 204
    poll(lambda: not dave.connected)
    assert httpx.get(f"{api}/users/me", headers=bearer(dave.access_token)).status_code == 401
    assert not mqtt_accepts(server, dave.uid, dave.access_token)
    assert erin.connected
    assert httpx.get(f"{api}/users/me", headers=bearer(erin.access_token)).status_code == 200


def _event(peer: Peer, name: str, group_id: str) -> dict[str, Any]:
    def found() -> list[dict[str, Any]]:
        return [e for e in peer.events if e.get("event") == name and e.get("group_id") == group_id]

    return peer.wait_for(found, TIMEOUT)[0]


def test_operators_administer_groups(server: Deployment, operator: Operator, users: Users) -> None:
    api = f"{server.api_url}/api/v1"
    admin_id = operator.user_id
    alice, bob, carol = users(), users(), users()
    group = alice.create_group("team", [bob.uid])
    gid = group["group_id"]
    listed: list[str] = []
    after: str | None = None
    while True:  # every group, a page at a time
        page = httpx.get(f"{api}/admin/groups", headers=operator.headers,
                         params={"limit": 2, **({"after": after} if after else {})}).json()
        listed += [g["group_id"] for g in page["groups"]]
        if (after := page["next_after"]) is None:
            break
    assert gid in listed
    assert listed == sorted(listed)

    renamed = httpx.patch(f"{api}/admin/groups/{gid}", headers=operator.headers, json={"name": "crew"}).json()
    assert renamed["name"] == "crew"
    for peer in (alice, bob):
        assert _event(peer, "group_renamed", gid)["by"] == admin_id
    added = httpx.post(f"{api}/admin/groups/{gid}/members", headers=operator.headers, json={"members": [carol.uid]})
    assert [m["user_id"] for m in added.json()["members"]] == [alice.uid, bob.uid, carol.uid]
    assert _event(carol, "member_added", gid)["members"] == [carol.uid]
    assert httpx.delete(f"{api}/admin/groups/{gid}/members/{bob.uid}", headers=operator.headers).status_code == 204
    assert _event(bob, "member_removed", gid)["user_id"] == bob.uid
    members = httpx.get(f"{api}/admin/groups/{gid}", headers=operator.headers).json()["members"]
    assert [m["user_id"] for m in members] == [alice.uid, carol.uid]

    assert httpx.delete(f"{api}/admin/groups/{gid}", headers=operator.headers).status_code == 204
    for peer in (alice, carol):
        assert _event(peer, "group_deleted", gid)["by"] == admin_id
    gone = httpx.get(f"{api}/groups/{gid}", headers=bearer(alice.access_token))
    assert (gone.status_code, gone.headers["content-type"]) == (404, "application/problem+json")
    assert gone.json()["type"] == "/api/v1/problems/not-found"
    # a message to the deleted group is refused; the chat goes on
    refused = alice.send_group(gid, "anyone?")
    with pytest.raises(MessageRejectedError, match="unknown_recipient"):
        alice.wait_ack(refused, TIMEOUT)
    alice.wait_ack(alice.send(carol.uid, "still here"), TIMEOUT)


def test_errors_are_problem_details(server: Deployment, users: Users) -> None:
    api = f"{server.api_url}/api/v1"
    bad = httpx.post(f"{api}/auth/register", json={"username": "NO!", "password": "x"})
    assert (bad.status_code, bad.headers["content-type"]) == (422, "application/problem+json")
    body = bad.json()
    assert body["instance"] == "/api/v1/auth/register"
    assert {e["field"] for e in body["errors"]} == {"body.username", "body.password"}
    nowhere = httpx.get(f"{api}/no/such/route")
    assert (nowhere.status_code, nowhere.json()["type"]) == (404, "/api/v1/problems/not-found")
    wrong_method = httpx.put(f"{api}/auth/login")
    assert (wrong_method.status_code, wrong_method.json()["status"]) == (405, 405)
    doc = httpx.get(f"{server.api_url}/openapi.json").json()
    assert "Problem" in doc["components"]["schemas"]
    for path in ("/admin/users", "/admin/groups/{group_id}", "/admin/users/{user_id}/revoke-tokens"):
        assert f"/api/v1{path}" in doc["paths"]


def test_failed_logins_of_a_username_are_limited(server: Deployment, users: Users) -> None:
    """Ten failed logins use up a username's allowance (one API copy here): the next login, even
    with the right password, gets 429 with Retry-After; other usernames are not affected."""
    api = f"{server.api_url}/api/v1"
    victim, bystander = users(connect=False), users(connect=False)
    name = victim.me()["username"]
    for _ in range(10):
        assert httpx.post(f"{api}/auth/login", json={"username": name, "password": "guess"}).status_code == 401
    r = httpx.post(f"{api}/auth/login", json={"username": name, "password": PASSWORD})
    assert (r.status_code, r.headers["content-type"]) == (429, "application/problem+json")
    assert int(r.headers["retry-after"]) == r.json()["retry_after"] >= 1
    assert r.json()["type"] == "/api/v1/problems/rate-limited"
    assert httpx.post(f"{api}/auth/login", json={"username": bystander.me()["username"],
                                                 "password": PASSWORD}).status_code == 200
