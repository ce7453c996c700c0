"""``/contacts``, ``/blocks``, phone numbers at register and ``PATCH /users/me``: the REST side of
contact lists, address-book sync (numbers that are no user's kept only as keyed hashes) and blocking."""

from __future__ import annotations

import sqlite3

import pytest

from chatmq.services.api.phones import phone_hash
from tests.unit.conftest import PHONE_KEY, ApiHarness

V1 = "/api/v1"


async def test_contact_list_put_get_delete(api: ApiHarness) -> None:
    me, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    for who in (bob, carol, bob):
        assert (await api.client.put(f"{V1}/contacts/{who}", headers=api.auth(me))).status_code == 204
    got = (await api.client.get(f"{V1}/contacts", headers=api.auth(me))).json()
    assert [c["user_id"] for c in got["contacts"]] == [bob, carol]
    assert all(isinstance(c["added_at"], int) for c in got["contacts"])
    assert (await api.client.delete(f"{V1}/contacts/{bob}", headers=api.auth(me))).status_code == 204
    assert (await api.client.delete(f"{V1}/contacts/{bob}", headers=api.auth(me))).status_code == 404
    assert [c["user_id"] for c in (await api.client.get(f"{V1}/contacts", headers=api.auth(me))).json()["contacts"]
            ] == [carol]
    assert (await api.client.get(f"{V1}/contacts", headers=api.auth(bob))).json() == {"contacts": []}


async def test_contacts_refuse_unknown_users_and_oneself(api: ApiHarness) -> None:
    me = await api.user("alice")
    nobody = await api.client.put(f"{V1}/contacts/u_nobody", headers=api.auth(me))
    assert nobody.status_code == 404
    assert nobody.json()["detail"] == "no such user"
    myself = await api.client.put(f"{V1}/contacts/{me}", headers=api.auth(me))
    assert myself.status_code == 422
    assert (await api.client.get(f"{V1}/contacts")).status_code == 401


async def test_phone_at_register_and_by_patch_and_sync_by_phone(api: ApiHarness) -> None:
    r = await api.client.post(f"{V1}/auth/register", json={"username": "bob", "password": "correct horse battery",
                                                           "phone": "+4915112345678"})
    assert r.status_code == 201
    bob = r.json()["user_id"]
    taken = await api.client.post(f"{V1}/auth/register", json={
        "username": "bobby", "password": "correct horse battery", "phone": "+4915112345678"})
    assert taken.status_code == 409
    assert "phone" in taken.json()["detail"]
    assert await api.store.get_user_by_username("bobby") is None
    me = await api.user("alice")
    patched = await api.client.patch(f"{V1}/users/me", headers=api.auth(me), json={"phone": "+12025550100"})
    assert patched.status_code == 200
    assert patched.json()["phone"] == "+12025550100"
    assert (await api.client.get(f"{V1}/users/me", headers=api.auth(me))).json()["phone"] == "+12025550100"
    clash = await api.client.patch(f"{V1}/users/me", headers=api.auth(me), json={"phone": "+4915112345678"})
    assert clash.status_code == 409

    synced = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me), json={
        "usernames": ["bob"], "phones": ["+4915112345678", "+4915199999999", "+4915199999999"]})
    assert synced.status_code == 200
    assert synced.json() == {"registered": {"bob": bob}, "phones": {"+4915112345678": bob}}
    assert (await api.client.get(f"{V1}/contacts", headers=api.auth(me))).json() == {"contacts": []}  # only a lookup

    cleared = await api.client.patch(f"{V1}/users/me", headers=api.auth(me), json={"phone": None})
    assert cleared.json()["phone"] is None
    kept = await api.client.patch(f"{V1}/users/me", headers=api.auth(bob), json={})
    assert kept.json()["phone"] == "+4915112345678"  # a field not given does not change


async def test_numbers_that_are_no_users_are_kept_only_as_keyed_hashes(api: ApiHarness) -> None:
    me = await api.user("alice")
    stranger = "+4915199999999"
    r = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me), json={"phones": [stranger]})
    assert r.json() == {"registered": {}, "phones": {}}
    assert await api.store.phone_hashes(me) == [phone_hash(PHONE_KEY, stranger)]
    assert phone_hash(PHONE_KEY, stranger) != phone_hash(b"another key" * 3, stranger)
    await api.store.stop()  # the number is nowhere in the database file
    for path in api.store.path.parent.glob("db.sqlite*"):
        assert b"15199999999" not in path.read_bytes()
    with sqlite3.connect(api.store.path) as conn:
        assert conn.execute("SELECT count(*) FROM phone_hashes").fetchone() == (1,)
    await api.store.start()


@pytest.mark.parametrize("bad", ["4915112345678", "+0915112345678", "+49 151 1234", "+12345", "+1234567890123456"])
async def test_sync_refuses_numbers_not_in_e164(api: ApiHarness, bad: str) -> None:
    me = await api.user("alice")
    r = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me), json={"phones": [bad]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.phones.0"


async def test_block_and_unblock_tell_the_routers(api: ApiHarness) -> None:
    me, bob = await api.user("alice"), await api.user("bob")
    gid = (await api.client.post(f"{V1}/groups", headers=api.auth(me), json={"name": "g", "members": [bob]})
           ).json()["group_id"]
    assert (await api.client.put(f"{V1}/blocks/{bob}", headers=api.auth(me))).status_code == 204
    assert (await api.client.get(f"{V1}/blocks", headers=api.auth(me))).json() == {"blocked": [bob]}
    assert await api.store.blockers_of([bob]) == {bob: {me}}
    assert api.feed.changes == [(me, bob, [gid])]
    assert (await api.client.delete(f"{V1}/blocks/{bob}", headers=api.auth(me))).status_code == 204
    assert (await api.client.delete(f"{V1}/blocks/{bob}", headers=api.auth(me))).status_code == 404
    assert (await api.client.get(f"{V1}/blocks", headers=api.auth(me))).json() == {"blocked": []}
    assert api.feed.changes == [(me, bob, [gid]), (me, bob, [gid])]
    assert (await api.client.put(f"{V1}/blocks/{me}", headers=api.auth(me))).status_code == 422
    assert (await api.client.put(f"{V1}/blocks/u_nobody", headers=api.auth(me))).status_code == 404
