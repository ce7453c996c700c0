"""REST API: /groups (create, list, read, rename, add and remove members) and their events."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import ApiHarness

V1 = "/api/v1"


async def _group(api: ApiHarness, creator: str, members: list[str], name: str = "friends") -> dict[str, Any]:
    body = {"name": name, "members": members}
    r = await api.client.post(f"{V1}/groups", headers=api.auth(creator), json=body)
    assert r.status_code == 201, r.text
    group: dict[str, Any] = r.json()
    return group


def _roles(group: dict[str, Any]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in group["members"]}


@pytest.fixture
async def trio(api: ApiHarness) -> tuple[str, str, str]:
    return await api.user("alice"), await api.user("bob"), await api.user("carol")


# create ------------------------------------------------------------------------
async def test_create_group_makes_creator_admin_and_announces_it(
    api: ApiHarness, trio: tuple[str, str, str]
) -> None:
    alice, bob, carol = trio
    group = await _group(api, alice, [bob, carol, bob, alice])
    assert group["group_id"].startswith("g")
    assert group["name"] == "friends"
    assert group["members"] == [{"user_id": alice, "role": "admin"}, {"user_id": bob, "role": "member"},
                                {"user_id": carol, "role": "member"}]
    stored = await api.store.get_group(group["group_id"])
    assert stored is not None
    assert stored.is_admin(alice)
    assert sorted(stored.member_ids()) == sorted([alice, bob, carol])
    [(recipients, env)] = api.notifier.events("group_created")
    assert sorted(recipients) == sorted([alice, bob, carol])
    assert env["type"] == "event"
    assert env["by"] == alice
    assert env["group"]["group_id"] == group["group_id"]
    assert env["group"]["members"] == group["members"]


async def test_create_group_alone(api: ApiHarness) -> None:
    alice = await api.user("alice")
    group = await _group(api, alice, [])
    assert group["members"] == [{"user_id": alice, "role": "admin"}]
    [(recipients, _)] = api.notifier.events("group_created")
    assert recipients == [alice]


async def test_create_group_with_unknown_members_is_422(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, _ = trio
    r = await api.client.post(f"{V1}/groups", headers=api.auth(alice),
                              json={"name": "x", "members": [bob, "u00000000000000ff"]})
    assert r.status_code == 422
    body = r.json()
    assert "unknown" in body["detail"]
    assert "u00000000000000ff" in body["detail"]
    assert body["unknown_user_ids"] == ["u00000000000000ff"]
    assert await api.store.groups_of(alice) == []
    assert api.notifier.calls == []


@pytest.mark.parametrize("body", [{"name": "", "members": []}, {"name": "x" * 101, "members": []},
                                  {"members": []}, {"name": "ok", "members": "u1"}])
async def test_create_group_bad_body_is_422(api: ApiHarness, body: dict[str, Any]) -> None:
    alice = await api.user("alice")
    r = await api.client.post(f"{V1}/groups", headers=api.auth(alice), json=body)
    assert r.status_code == 422
    assert await api.store.groups_of(alice) == []


async def test_create_group_name_of_100_chars(api: ApiHarness) -> None:
    alice = await api.user("alice")
    assert (await _group(api, alice, [], name="n" * 100))["name"] == "n" * 100


# read --------------------------------------------------------------------------
async def test_list_my_groups(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    g1 = await _group(api, alice, [bob], name="one")
    g2 = await _group(api, bob, [alice], name="two")
    await _group(api, bob, [carol], name="three")
    r = await api.client.get(f"{V1}/groups", headers=api.auth(alice))
    assert r.status_code == 200
    assert [g["group_id"] for g in r.json()] == [g1["group_id"], g2["group_id"]]
    assert (await api.client.get(f"{V1}/groups", headers=api.auth(carol))).json()[0]["name"] == "three"


async def test_get_group_member_nonmember_unknown(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    group = await _group(api, alice, [bob])
    r = await api.client.get(f"{V1}/groups/{group['group_id']}", headers=api.auth(bob))
    assert r.status_code == 200
    assert r.json() == group
    r = await api.client.get(f"{V1}/groups/{group['group_id']}", headers=api.auth(carol))
    assert r.status_code == 403
    r = await api.client.get(f"{V1}/groups/g0000000000000000", headers=api.auth(alice))
    assert r.status_code == 404


# rename ------------------------------------------------------------------------
async def test_admin_renames_and_members_hear_of_it(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, _ = trio
    group = await _group(api, alice, [bob])
    gid = group["group_id"]
    r = await api.client.patch(f"{V1}/groups/{gid}", headers=api.auth(alice), json={"name": "renamed"})
    assert r.status_code == 200
    assert r.json()["name"] == "renamed"
    stored = await api.store.get_group(gid)
    assert stored is not None
    assert stored.name == "renamed"
    [(recipients, env)] = api.notifier.events("group_renamed")
    assert sorted(recipients) == sorted([alice, bob])
    assert env == {"type": "event", "event": "group_renamed", "group_id": gid, "name": "renamed", "by": alice}


async def test_rename_refused_for_members_and_outsiders(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob]))["group_id"]
    for who in (bob, carol):
        r = await api.client.patch(f"{V1}/groups/{gid}", headers=api.auth(who), json={"name": "mine"})
        assert r.status_code == 403
    r = await api.client.patch(f"{V1}/groups/g0000000000000000", headers=api.auth(alice), json={"name": "x"})
    assert r.status_code == 404
    r = await api.client.patch(f"{V1}/groups/{gid}", headers=api.auth(alice), json={"name": ""})
    assert r.status_code == 422
    stored = await api.store.get_group(gid)
    assert stored is not None
    assert stored.name == "friends"
    assert api.notifier.events("group_renamed") == []


# add members -------------------------------------------------------------------
async def test_admin_adds_members(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    dave = await api.user("dave")
    gid = (await _group(api, alice, [bob]))["group_id"]
    r = await api.client.post(f"{V1}/groups/{gid}/members", headers=api.auth(alice),
                              json={"members": [carol, bob, dave, carol]})
    assert r.status_code == 200
    body = r.json()
    assert body["group_id"] == gid
    assert _roles(body) == {alice: "admin", bob: "member", carol: "member", dave: "member"}
    [(recipients, env)] = api.notifier.events("member_added")
    assert sorted(recipients) == sorted([alice, bob, carol, dave])
    assert env == {"type": "event", "event": "member_added", "group_id": gid, "members": [carol, dave],
                   "by": alice}


async def test_adding_existing_members_changes_nothing_and_says_nothing(
    api: ApiHarness, trio: tuple[str, str, str]
) -> None:
    alice, bob, _ = trio
    gid = (await _group(api, alice, [bob]))["group_id"]
    r = await api.client.post(f"{V1}/groups/{gid}/members", headers=api.auth(alice), json={"members": [bob]})
    assert r.status_code == 200
    assert _roles(r.json()) == {alice: "admin", bob: "member"}
    assert api.notifier.events("member_added") == []


async def test_add_members_errors(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob]))["group_id"]
    for who in (bob, carol):  # a plain member, an outsider
        url = f"{V1}/groups/{gid}/members"
        r = await api.client.post(url, headers=api.auth(who), json={"members": [carol]})
        assert r.status_code == 403
    r = await api.client.post(f"{V1}/groups/{gid}/members", headers=api.auth(alice),
                              json={"members": [carol, "u00000000000000ff"]})
    assert r.status_code == 422
    assert r.json()["unknown_user_ids"] == ["u00000000000000ff"]
    r = await api.client.post(f"{V1}/groups/{gid}/members", headers=api.auth(alice), json={"members": []})
    assert r.status_code == 422
    r = await api.client.post(f"{V1}/groups/g0000000000000000/members", headers=api.auth(alice),
                              json={"members": [carol]})
    assert r.status_code == 404
    stored = await api.store.get_group(gid)
    assert stored is not None
    assert sorted(stored.member_ids()) == sorted([alice, bob])
    assert api.notifier.events("member_added") == []


# remove members ----------------------------------------------------------------
async def test_member_leaves(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob, carol]))["group_id"]
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{bob}", headers=api.auth(bob))
    assert r.status_code == 204
    assert r.content == b""
    stored = await api.store.get_group(gid)
    assert stored is not None
    assert sorted(stored.member_ids()) == sorted([alice, carol])
    [(recipients, env)] = api.notifier.events("member_removed")
    assert sorted(recipients) == sorted([alice, bob, carol])
    assert env == {"type": "event", "event": "member_removed", "group_id": gid, "user_id": bob, "by": bob}
    assert (await api.client.get(f"{V1}/groups/{gid}", headers=api.auth(bob))).status_code == 403


async def test_admin_removes_someone_else(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob, carol]))["group_id"]
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{carol}", headers=api.auth(alice))
    assert r.status_code == 204
    stored = await api.store.get_group(gid)
    assert stored is not None
    assert not stored.is_member(carol)
    [(recipients, env)] = api.notifier.events("member_removed")
    assert sorted(recipients) == sorted([alice, bob, carol])
    assert env["user_id"] == carol
    assert env["by"] == alice
    assert "new_admin" not in env


async def test_only_an_admin_removes_someone_else(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    dave = await api.user("dave")
    gid = (await _group(api, alice, [bob, carol]))["group_id"]
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{carol}", headers=api.auth(bob))
    assert r.status_code == 403
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{alice}", headers=api.auth(bob))
    assert r.status_code == 403
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{carol}", headers=api.auth(dave))
    assert r.status_code == 403
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{dave}", headers=api.auth(dave))
    assert r.status_code == 403
    stored = await api.store.get_group(gid)
    assert stored is not None
    assert sorted(stored.member_ids()) == sorted([alice, bob, carol])
    assert api.notifier.events("member_removed") == []


async def test_remove_unknown_member_or_group_is_404(api: ApiHarness, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob]))["group_id"]
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{carol}", headers=api.auth(alice))
    assert r.status_code == 404
    r = await api.client.delete(f"{V1}/groups/g0000000000000000/members/{alice}", headers=api.auth(alice))
    assert r.status_code == 404
    assert api.notifier.events("member_removed") == []


async def test_last_admin_leaving_promotes_the_longest_standing_member(
    api: ApiHarness, trio: tuple[str, str, str]
) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob, carol]))["group_id"]
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{alice}", headers=api.auth(alice))
    assert r.status_code == 204
    group = (await api.client.get(f"{V1}/groups/{gid}", headers=api.auth(bob))).json()
    assert _roles(group) == {bob: "admin", carol: "member"}
    [(recipients, env)] = api.notifier.events("member_removed")
    assert sorted(recipients) == sorted([alice, bob, carol])
    assert env == {"type": "event", "event": "member_removed", "group_id": gid, "user_id": alice, "by": alice,
                   "new_admin": bob}
    # the new admin may now do admin things
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{carol}", headers=api.auth(bob))
    assert r.status_code == 204


async def test_a_member_leaving_after_a_promotion_promotes_no_one(
    api: ApiHarness, trio: tuple[str, str, str]
) -> None:
    alice, bob, carol = trio
    gid = (await _group(api, alice, [bob, carol]))["group_id"]
    # alice (the only admin) leaves: bob is promoted; then carol leaves while bob is admin
    for who in (alice, carol):
        r = await api.client.delete(f"{V1}/groups/{gid}/members/{who}", headers=api.auth(who))
        assert r.status_code == 204
    removed = api.notifier.events("member_removed")
    assert removed[0][1]["new_admin"] == bob
    assert "new_admin" not in removed[1][1]
    group = await api.store.get_group(gid)
    assert group is not None
    assert group.is_admin(bob)


async def test_last_member_leaving_deletes_the_group(api: ApiHarness) -> None:
    alice = await api.user("alice")
    gid = (await _group(api, alice, []))["group_id"]
    r = await api.client.delete(f"{V1}/groups/{gid}/members/{alice}", headers=api.auth(alice))
    assert r.status_code == 204
    assert await api.store.get_group(gid) is None
    assert (await api.client.get(f"{V1}/groups/{gid}", headers=api.auth(alice))).status_code == 404
    [(recipients, env)] = api.notifier.events("member_removed")
    assert recipients == [alice]
    assert "new_admin" not in env


async def test_a_failing_notifier_does_not_fail_the_committed_change(
    api: ApiHarness, trio: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob, _ = trio

    async def broken(user_ids: list[str], envelope: dict[str, Any]) -> None:
        raise RuntimeError("bus down")

    api.notifier.notify = broken  # type: ignore[method-assign]
    r = await api.client.post(f"{V1}/groups", headers=api.auth(alice), json={"name": "n", "members": [bob]})
    assert r.status_code == 201
    assert await api.store.get_group(r.json()["group_id"]) is not None
    assert "notifier failed" in caplog.text
