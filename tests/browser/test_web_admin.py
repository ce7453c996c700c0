"""The web client and the operators: a group an operator deletes leaves its members' lists
(the ``group_deleted`` event), on every ``target`` (conftest.py)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import PASSWORD, Target
from tests.browser.conftest import Users
from tests.e2e.harness import Deployment
from tests.e2e.test_admin import admin_headers

pytestmark = pytest.mark.browser


def _login(target: Target, username: str) -> dict[str, str]:
    r = httpx.post(f"{target.base_url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    tokens: dict[str, str] = r.json()
    return tokens


def test_a_deleted_group_leaves_the_members_lists(users: Users, target: Target,
                                                  request: pytest.FixtureRequest) -> None:
    deployment: Deployment = request.getfixturevalue(f"{target.name}_server")
    operator = admin_headers(deployment)
    alice, bob = users("alice"), users("bob")
    alice_tokens, bob_tokens = _login(target, alice.username), _login(target, bob.username)
    made = httpx.post(f"{target.base_url}/api/v1/groups", json={"name": "Doomed", "members": [bob_tokens["user_id"]]},
                      headers={"Authorization": f"Bearer {alice_tokens['access_token']}"})
    gid = made.json()["group_id"]
    for member in (alice, bob):  # group_created puts it into both lists
        expect(member.conversation("Doomed")).to_be_visible()
    bob.open("Doomed")

    deleted = httpx.delete(f"{target.base_url}/api/v1/admin/groups/{gid}", headers=operator)
    assert deleted.status_code == 204
    for member in (alice, bob):
        expect(member.conversation("Doomed")).to_have_count(0)
    expect(bob.page.get_by_role("heading", level=2, name="Doomed")).to_have_count(0)  # closed where it was open
