"""``GET /presence`` and ``presence_visibility`` on ``PATCH /users/me``: the REST side of presence."""

from __future__ import annotations

from tests.unit.conftest import ApiHarness

V1 = "/api/v1"


async def test_presence_shows_mutual_contacts_and_hides_the_rest(api: ApiHarness) -> None:
    me, bob, carol, dave = [await api.user(n) for n in ("alice", "bob", "carol", "dave")]
    for a, b in ((me, bob), (bob, me), (me, dave), (dave, me), (me, carol)):  # carol has not added alice
        await api.store.add_contact(a, b)
    await api.store.set_presence_state(bob, "away", 1000)
    await api.store.set_presence_state(dave, "online", 2000)
    await api.store.set_presence_visibility(dave, "nobody")
    r = await api.client.get(f"{V1}/presence", params={"users": f"{bob},{carol},{dave},{me},nobody,{bob}"},
                             headers=api.auth(me))
    assert r.status_code == 200
    assert r.json() == {"presence": [
        {"user": bob, "state": "away", "last_seen": 1000},
        {"user": carol, "state": None, "last_seen": None},
        {"user": dave, "state": "offline", "last_seen": None},
        {"user": me, "state": "offline", "last_seen": None},
        {"user": "nobody", "state": None, "last_seen": None},
    ]}


async def test_presence_takes_1_to_100_ids(api: ApiHarness) -> None:
    me = await api.user("alice")
    for users in (",", ",".join(f"u{i}" for i in range(101))):
        r = await api.client.get(f"{V1}/presence", params={"users": users}, headers=api.auth(me))
        assert r.status_code == 422
        assert "1 to 100" in r.json()["detail"]


async def test_visibility_is_set_by_patch_and_told_once_per_change(api: ApiHarness) -> None:
    me = await api.user("alice")
    assert (await api.client.get(f"{V1}/users/me", headers=api.auth(me))).json()["presence_visibility"] == "contacts"
    for value in ("nobody", "nobody", "contacts"):
        r = await api.client.patch(f"{V1}/users/me", json={"presence_visibility": value}, headers=api.auth(me))
        assert r.status_code == 200
        assert r.json()["presence_visibility"] == value
    assert api.feed.visibility == [(me, "nobody"), (me, "contacts")]
    bad = await api.client.patch(f"{V1}/users/me", json={"presence_visibility": "friends"}, headers=api.auth(me))
    assert bad.status_code == 422
