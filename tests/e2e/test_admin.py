"""The operators' API against a running server: ``chatmq admin create``, sessions, kick, disable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from tests.e2e.harness import Deployment, RawClient, Users

TIMEOUT = 15


def poll(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def admin_headers(server: Deployment) -> dict[str, str]:
    args, store_env = server.store_cli()
    env = {**os.environ, **store_env, "CHATMQ_ADMIN_PASSWORD": "operator-secret"}
    made = subprocess.run([sys.executable, "-m", "chatmq.cli", "admin", "create", "operator", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert "admin operator" in made.stdout
    tokens = httpx.post(f"{server.api_url}/api/v1/auth/login",
                        json={"username": "operator", "password": "operator-secret"}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_operator_lists_kicks_and_disables(server: Deployment, users: Users) -> None:
    headers = admin_headers(server)
    api = f"{server.api_url}/api/v1/admin"
    alice, bob = users(transport="websockets"), users()

    sessions = httpx.get(f"{api}/sessions", headers=headers).json()
    mine = {s["client_id"]: s for s in sessions}
    assert mine[alice.client_id]["id"] == alice.uid
    assert mine[alice.client_id]["transport"] == "ws"
    assert mine[bob.client_id]["transport"] == "tcp"
    stats = httpx.get(f"{api}/stats", headers=headers).json()
    assert stats["connections"] >= 2
    assert stats["users"] >= 3

    # kick: the connection closes; the SDK reconnects by itself
    assert httpx.post(f"{api}/sessions/{alice.client_id}/kick", headers=headers).status_code == 204
    poll(lambda: not alice.connected)
    poll(lambda: alice.connected, 40)

    # disable: bob's session closes at once and his token no longer connects
    assert httpx.post(f"{api}/users/{bob.uid}/disable", headers=headers).status_code == 204
    poll(lambda: not bob.connected)
    retry = RawClient(server, bob.uid, bob.access_token)
    try:
        assert retry.wait(lambda: retry.connack).is_failure
    finally:
        retry.close()
    poll(lambda: all(s["id"] != bob.uid for s in httpx.get(f"{api}/sessions", headers=headers).json()))
    # others carry on
    alice.wait_ack(alice.send(bob.uid, "kept for when bob is back"), TIMEOUT)
    assert httpx.post(f"{api}/users/{bob.uid}/enable", headers=headers).status_code == 204


def test_admin_create_refuses_bad_input(server: Deployment) -> None:
    args, store_env = server.store_cli()
    r = subprocess.run([sys.executable, "-m", "chatmq.cli", "admin", "create", "X!", "--password", "short", *args],
                       env={**os.environ, **store_env}, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert "usernames" in r.stderr
