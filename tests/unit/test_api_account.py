"""``DELETE /api/v1/users/me``: users delete their own account, confirmed with the password."""

from __future__ import annotations

import httpx

from chatmq.services.registry.sessions import Connection
from chatmq.services.store.base import NewMessage
from tests.unit.conftest import PASSWORD, ApiHarness

V1 = "/api/v1"


async def _delete_me(api: ApiHarness, user_id: str, password: str | None = PASSWORD) -> httpx.Response:
    body = {} if password is None else {"password": password}
    return await api.client.request("DELETE", f"{V1}/users/me", json=body, headers=api.auth(user_id))


async def test_account_deletion_removes_everything_and_frees_the_username(api: ApiHarness) -> None:
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    device = (await api.client.post(f"{V1}/devices", headers=api.auth(alice), json={"name": "sensor"})).json()
    await api.client.post(f"{V1}/push-tokens", headers=api.auth(alice), json={"platform": "android", "token": "t-a"})
    made = await api.client.post(f"{V1}/groups", headers=api.auth(alice), json={"name": "g", "members": [bob, carol]})
    group_id = made.json()["group_id"]
    await api.store.accept_messages([NewMessage("s1", "c1", bob, alice, None, f"{alice}:{bob}", b'{"text": "hi"}', 1,
                                                {alice: b'{"type": "message", "id": "s1"}'})])
    token = api.auth(alice)
    api.control.connections = [Connection("user", alice, "phone", "n1", "tcp", 1),
                               Connection("user", bob, "bobs", "n1", "tcp", 2)]
    api.notifier.calls.clear()

    r = await api.client.request("DELETE", f"{V1}/users/me", json={"password": PASSWORD}, headers=token)
    assert (r.status_code, r.content) == (204, b"")

    assert await api.store.get_user(alice) is None
    assert await api.store.get_device(device["device_id"]) is None
    assert await api.store.push_tokens(alice) == []
    assert await api.store.pending(alice, 0, 100) == []
    # its sessions closed, others' not
    assert [c.client_id for c in api.control.connections] == ["bobs"]
    # its tokens stop working
    me = await api.client.get(f"{V1}/users/me", headers=token)
    assert me.status_code == 401
    # it left the group as the last admin: bob (longest standing) took over, and the others heard so
    group = (await api.client.get(f"{V1}/groups/{group_id}", headers=api.auth(bob))).json()
    assert {m["user_id"]: m["role"] for m in group["members"]} == {bob: "admin", carol: "member"}
    [(recipients, event)] = api.notifier.events("member_removed")
    assert sorted(recipients) == sorted([bob, carol])
    assert (event["user_id"], event["new_admin"], event["by"]) == (alice, bob, alice)
    # the username is free again
    again = await api.client.post(f"{V1}/auth/register", json={"username": "alice", "password": PASSWORD})
    assert again.status_code == 201
    assert again.json()["user_id"] != alice


async def test_account_deletion_with_a_stolen_token_but_wrong_password_is_refused(api: ApiHarness) -> None:
    alice = await api.user("alice")
    r = await _delete_me(api, alice, "not the password")
    assert (r.status_code, r.headers["content-type"]) == (403, "application/problem+json")
    assert r.json()["detail"] == "the password does not match"
    assert await api.store.get_user(alice) is not None
    missing = await _delete_me(api, alice, None)
    assert missing.status_code == 422
    # guessing the password this way counts as failed logins: soon refused outright
    for _ in range(9):
        assert (await _delete_me(api, alice, "guess")).status_code == 403
    limited = await _delete_me(api, alice)
    assert limited.status_code == 429
    assert await api.store.get_user(alice) is not None
