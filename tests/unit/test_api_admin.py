"""The operators' API under /api/v1/admin."""

from __future__ import annotations

from chatmq.services.sessions import Connection
from tests.unit.conftest import ApiHarness

V1 = "/api/v1"


async def test_admin_routes_need_an_admin(api: ApiHarness) -> None:
    alice = await api.user("alice")
    for method, path in (("GET", "/admin/sessions"), ("GET", "/admin/stats"),
                         ("POST", f"/admin/users/{alice}/disable"), ("POST", "/admin/sessions/x/kick")):
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
    login = await api.client.post(f"{V1}/auth/login", json={"username": "alice", "password": "correct horse battery"})
    assert login.status_code == 401
    assert (await api.client.post(f"{V1}/admin/users/{alice}/enable", headers=api.auth(root))).status_code == 204
    assert (await api.client.get(f"{V1}/users/me", headers=api.auth(alice))).status_code == 200
    unknown = await api.client.post(f"{V1}/admin/users/u0000000000000000/disable", headers=api.auth(root))
    assert unknown.status_code == 404
    myself = await api.client.post(f"{V1}/admin/users/{root}/disable", headers=api.auth(root))
    assert myself.status_code == 409


async def test_stats(api: ApiHarness) -> None:
    root = await api.user("root", admin=True)
    await api.user("alice")
    api.control.connections = [Connection("user", root, "c1", "n1", "tcp", 1),
                               Connection("user", root, "c2", "n1", "ws", 2)]
    r = await api.client.get(f"{V1}/admin/stats", headers=api.auth(root))
    assert r.json() == {"users": 2, "connections": 2, "online_users": 1, "pending_messages": 0}
