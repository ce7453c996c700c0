"""The operators' API under /api/v1/admin, and token revocation (also /auth/logout)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chatmq.broker.authenticator import Authenticator
from chatmq.services.registry.sessions import Connection
from chatmq.services.store.base import NewMessage
from tests.unit.conftest import PASSWORD, ApiHarness

V1 = "/api/v1"


async def _login(api: ApiHarness, username: str) -> dict[str, Any]:
    r = await api.client.post(f"{V1}/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_admin_routes_need_an_admin(api: ApiHarness) -> None:
    alice = await api.user("alice")
    for method, path in (("GET", "/admin/sessions"), ("GET", "/admin/stats"), ("GET", "/admin/users"),
                         ("POST", f"/admin/users/{alice}/disable"), ("POST", "/admin/sessions/x/kick"),
                         ("POST", f"/admin/users/{alice}/revoke-tokens"), ("GET", "/admin/groups"),
                         ("GET", "/admin/groups/g1"), ("DELETE", "/admin/groups/g1")):
        assert (await api.client.request(method, f"{V1}{path}")).status_code == 401
        r = await api.client.request(method, f"{V1}{path}", headers=api.auth(alice))
        assert r.status_code == 403
        assert r.json()["detail"] == "admin only"


async def test_sessions_and_kick(api: ApiHarness) -> None:
    root = await api.user("root", admin=True)
    api.control.connections = [Connection("user", "ua", "phone-1", "n1", "tcp", 10),
                               Connection("device", "d1", "d1", "n1", "ws", 20)]
    r = await api.client.get(f"{V1}/admin/sessions", headers=api.auth(root))
    assert r.status_code == 200
    assert r.json() == [
        {"kind": "user", "id": "ua", "client_id": "phone-1", "node": "n1", "transport": "tcp", "since": 10},
        {"kind": "device", "id": "d1", "client_id": "d1", "node": "n1", "transport": "ws", "since": 20}]
    assert (await api.client.post(f"{V1}/admin/sessions/phone-1/kick", headers=api.auth(root))).status_code == 204
    assert [c.client_id for c in api.control.connections] == ["d1"]
    assert (await api.client.post(f"{V1}/admin/sessions/phone-1/kick", headers=api.auth(root))).status_code == 404


async def test_disable_closes_sessions_and_refuses_the_user_until_enabled(api: ApiHarness) -> None:
    root, alice = await api.user("root", admin=True), await api.user("alice")
    api.control.connections = [Connection("user", alice, "laptop", "n1", "tcp", 1)]
    r = await api.client.post(f"{V1}/admin/users/{alice}/disable", headers=api.auth(root))
    assert r.status_code == 204
    assert api.control.connections == []
    assert (await api.client.get(f"{V1}/users/me", headers=api.auth(alice))).status_code == 403
    login = await api.client.post(f"{V1}/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 401
    assert await Authenticator(api.store, api.tokens).authenticate(alice, api.tokens.issue(alice).access_token) is None
    assert (await api.client.post(f"{V1}/admin/users/{alice}/enable", headers=api.auth(root))).status_code == 204
    assert (await api.client.get(f"{V1}/users/me", headers=api.auth(alice))).status_code == 200
    assert await Authenticator(api.store, api.tokens).authenticate(alice, api.tokens.issue(alice).access_token)
    unknown = await api.client.post(f"{V1}/admin/users/u0000000000000000/disable", headers=api.auth(root))
    assert unknown.status_code == 404
    myself = await api.client.post(f"{V1}/admin/users/{root}/disable", headers=api.auth(root))
    assert myself.status_code == 409


async def test_stats(api: ApiHarness) -> None:
    root = await api.user("root", admin=True)
    alice = await api.user("alice")
    api.control.connections = [Connection("user", root, "c1", "n1", "tcp", 1),
                               Connection("user", root, "c2", "n2", "ws", 2),
                               Connection("device", "d1", "d1", "n2", "tcp", 3)]
    await api.store.create_device("d1", alice, "sensor", "h")
    await api.store.accept_messages([NewMessage("s1", "c1", root, alice, None, f"{alice}:{root}", b'{"t":1}', 1,
                                                {alice: b'{"type":"message"}'})])
    r = await api.client.get(f"{V1}/admin/stats", headers=api.auth(root))
    assert r.json() == {"users": 2, "connections": 3, "online_users": 1, "pending_messages": 1,
                        "messages_stored": 1, "devices": 1, "user_connections": 2, "device_connections": 1,
                        "connections_by_node": {"n1": 1, "n2": 2}, "connections_by_transport": {"tcp": 2, "ws": 1}}


async def test_users_are_listed_by_username_with_flags_and_pages(api: ApiHarness) -> None:
    root = await api.user("root", admin=True)
    ids = {name: await api.user(name, display_name=name.title()) for name in ("alice", "alina", "bob")}
    await api.store.set_user_flags(ids["alina"], disabled=True)
    r = await api.client.get(f"{V1}/admin/users", params={"prefix": "Ali"}, headers=api.auth(root))
    page = r.json()
    assert [(u["username"], u["disabled"], u["admin"]) for u in page["users"]] == [
        ("alice", False, False), ("alina", True, False)]
    assert page["users"][0]["user_id"] == ids["alice"]
    assert page["users"][0]["display_name"] == "Alice"
    assert page["next_after"] is None
    first = (await api.client.get(f"{V1}/admin/users", params={"limit": 2}, headers=api.auth(root))).json()
    assert ([u["username"] for u in first["users"]], first["next_after"]) == (["alice", "alina"], "alina")
    rest = (await api.client.get(f"{V1}/admin/users", params={"after": "alina", "limit": 2},
                                 headers=api.auth(root))).json()
    assert [(u["username"], u["admin"]) for u in rest["users"]] == [("bob", False), ("root", True)]
    bad = await api.client.get(f"{V1}/admin/users", params={"limit": 0}, headers=api.auth(root))
    assert bad.status_code == 422


# token revocation ----------------------------------------------------------------
async def test_revoked_tokens_stop_working_everywhere_and_sessions_close(api: ApiHarness) -> None:
    root, alice = await api.user("root", admin=True), await api.user("alice")
    old = await _login(api, "alice")
    api.control.connections = [Connection("user", alice, "phone", "n1", "tcp", 1),
                               Connection("user", root, "console", "n1", "tcp", 2)]
    r = await api.client.post(f"{V1}/admin/users/{alice}/revoke-tokens", headers=api.auth(root))
    assert r.status_code == 204
    assert [c.client_id for c in api.control.connections] == ["console"]
    me = await api.client.get(f"{V1}/users/me", headers=_bearer(old))
    assert (me.status_code, me.json()["detail"]) == (401, "token revoked")
    refresh = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert (refresh.status_code, refresh.json()["detail"]) == (401, "token revoked")
    mqtt = Authenticator(api.store, api.tokens)
    assert await mqtt.authenticate(alice, old["access_token"]) is None
    # logging in again gives tokens that work: on REST, on refresh and on MQTT
    new = await _login(api, "alice")
    assert (await api.client.get(f"{V1}/users/me", headers=_bearer(new))).status_code == 200
    assert await mqtt.authenticate(alice, new["access_token"]) is not None
    again = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert again.status_code == 200
    assert (await api.client.get(f"{V1}/users/me", headers=_bearer(again.json()))).status_code == 200
    unknown = await api.client.post(f"{V1}/admin/users/u0000000000000000/revoke-tokens", headers=api.auth(root))
    assert unknown.status_code == 404


async def test_a_token_issued_in_the_same_second_as_the_revocation(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens from just before and just after a revocation carry the same ``iat``: the one from before
    is refused, the one from after accepted (revocation goes by version, not by time)."""
    root, alice = await api.user("root", admin=True), await api.user("alice")
    second = float(int(time.time()))  # every token below is issued in this second
    monkeypatch.setattr(time, "time", lambda: second)
    before = await _login(api, "alice")
    assert (await api.client.post(f"{V1}/admin/users/{alice}/revoke-tokens", headers=api.auth(root))).status_code == 204
    after = await _login(api, "alice")
    assert api.tokens.verify_access(before["access_token"]).expires_at == \
        api.tokens.verify_access(after["access_token"]).expires_at
    assert (await api.client.get(f"{V1}/users/me", headers=_bearer(before))).status_code == 401
    assert (await api.client.get(f"{V1}/users/me", headers=_bearer(after))).status_code == 200
    mqtt = Authenticator(api.store, api.tokens)
    assert await mqtt.authenticate(alice, before["access_token"]) is None
    assert await mqtt.authenticate(alice, after["access_token"]) is not None


async def test_logout_revokes_the_callers_tokens_only(api: ApiHarness) -> None:
    await api.user("alice")
    await api.user("bob")
    alice, bob = await _login(api, "alice"), await _login(api, "bob")
    assert (await api.client.post(f"{V1}/auth/logout")).status_code == 401
    assert (await api.client.post(f"{V1}/auth/logout", headers=_bearer(alice))).status_code == 204
    assert (await api.client.get(f"{V1}/users/me", headers=_bearer(alice))).status_code == 401
    refresh = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": alice["refresh_token"]})
    assert refresh.status_code == 401
    assert (await api.client.get(f"{V1}/users/me", headers=_bearer(bob))).status_code == 200


# groups ------------------------------------------------------------------------------
async def test_operators_administer_groups_they_are_not_in(api: ApiHarness) -> None:
    root = await api.user("root", admin=True)
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    made = await api.client.post(f"{V1}/groups", headers=api.auth(alice), json={"name": "team", "members": [bob]})
    gid = made.json()["group_id"]
    other = (await api.client.post(f"{V1}/groups", headers=api.auth(bob), json={"name": "other"})).json()["group_id"]
    admin = api.auth(root)

    listed = (await api.client.get(f"{V1}/admin/groups", headers=admin)).json()
    assert sorted(g["group_id"] for g in listed["groups"]) == sorted([gid, other])
    assert listed["next_after"] is None
    first = (await api.client.get(f"{V1}/admin/groups", params={"limit": 1}, headers=admin)).json()
    rest = (await api.client.get(f"{V1}/admin/groups", params={"after": first["next_after"]}, headers=admin)).json()
    assert [g["group_id"] for g in first["groups"] + rest["groups"]] == sorted([gid, other])

    assert (await api.client.get(f"{V1}/admin/groups/{gid}", headers=admin)).json()["name"] == "team"
    api.notifier.calls.clear()
    renamed = await api.client.patch(f"{V1}/admin/groups/{gid}", headers=admin, json={"name": "crew"})
    assert renamed.json()["name"] == "crew"
    assert api.notifier.events("group_renamed") == [
        ([alice, bob], {"type": "event", "event": "group_renamed", "group_id": gid, "name": "crew", "by": root})]

    added = await api.client.post(f"{V1}/admin/groups/{gid}/members", headers=admin, json={"members": [carol]})
    assert [m["user_id"] for m in added.json()["members"]] == [alice, bob, carol]
    assert api.notifier.events("member_added")[0][1]["members"] == [carol]
    unknown = await api.client.post(f"{V1}/admin/groups/{gid}/members", headers=admin,
                                    json={"members": ["u00000000000000ff"]})
    assert unknown.json()["unknown_user_ids"] == ["u00000000000000ff"]

    removed = await api.client.delete(f"{V1}/admin/groups/{gid}/members/{alice}", headers=admin)
    assert removed.status_code == 204
    (recipients, event), = api.notifier.events("member_removed")
    assert (sorted(recipients), event["new_admin"], event["by"]) == (sorted([alice, bob, carol]), bob, root)
    gone = await api.client.delete(f"{V1}/admin/groups/{gid}/members/{alice}", headers=admin)
    assert gone.status_code == 404

    assert (await api.client.delete(f"{V1}/admin/groups/{gid}", headers=admin)).status_code == 204
    assert api.notifier.events("group_deleted") == [
        ([bob, carol], {"type": "event", "event": "group_deleted", "group_id": gid, "by": root})]
    assert (await api.client.get(f"{V1}/groups/{gid}", headers=api.auth(bob))).status_code == 404
    assert [g["group_id"] for g in (await api.client.get(f"{V1}/groups", headers=api.auth(bob))).json()] == [other]
    for method, path in (("GET", f"/admin/groups/{gid}"), ("DELETE", f"/admin/groups/{gid}"),
                         ("PATCH", f"/admin/groups/{gid}")):
        r = await api.client.request(method, f"{V1}{path}", headers=admin, json={"name": "x"})
        assert (r.status_code, r.json()["detail"]) == (404, "no such group")
