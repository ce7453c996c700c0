"""The web client and the operators: a group an operator deletes leaves its members' lists
(the ``group_deleted`` event), on every ``target`` (conftest.py). Also the Devices page (issue 14)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from chatmq.devices.device_client import DeviceClient
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


# --- the Devices page (issue 14; here to share this module's servers) ---------------------------------------
def test_the_devices_page_shows_status_sends_commands_edits_the_shadow_and_starts_jobs(
        users: Users, target: Target, request: pytest.FixtureRequest) -> None:
    deployment: Deployment = request.getfixturevalue(f"{target.name}_server")
    alice = users("alice")
    tokens = _login(target, alice.username)
    made = httpx.post(f"{target.base_url}/api/v1/devices", json={"name": "lamp <b>1</b>"},
                      headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    device = DeviceClient(deployment.host, deployment.mqtt_port, made["device_id"], made["secret"])
    device.on_command = lambda name, params: {"did": name, **params}
    device.on_job = lambda job_id, document: {"ran": document}
    device.shadow.on_delta = lambda state, _version: device.shadow.report(state)
    page = alice.page
    try:
        device.connect(30)
        page.get_by_role("button", name="Devices").click()
        row = page.locator(f'[data-device="{made["device_id"]}"]')
        expect(row).to_contain_text("lamp <b>1</b>")  # the name as text, not markup
        expect(row).to_contain_text("online", timeout=20_000)
        row.click()
        expect(page.get_by_text("Telemetry read-back is not available on this server.")).to_be_visible()

        page.get_by_label("Name", exact=True).fill("blink")
        page.get_by_label("Params (JSON)").fill('{"times": 2}')
        page.get_by_role("button", name="Send command").click()
        expect(page.locator(".command-result")).to_have_text('succeeded: {"did":"blink","times":2}', timeout=20_000)

        page.get_by_label("Desired state (JSON; null deletes a key)").fill('{"led": "on"}')
        page.get_by_role("button", name="Save desired state").click()
        shadow = page.get_by_label("Shadow document")
        expect(shadow).to_contain_text('"desired": {\n    "led": "on"\n  }')
        for _ in range(40):  # the device reports what it was sent: reload until its report shows
            page.get_by_role("button", name="Reload shadow").click()
            if re.search(r'"reported": \{\s*"led": "on"', shadow.inner_text()):
                break
            page.wait_for_timeout(500)
        expect(shadow).to_contain_text('"delta": {}')

        page.get_by_label("Job document (JSON) for this device").fill('{"firmware": "2.0"}')
        page.get_by_role("button", name="Start job").click()
        jobs = page.get_by_label("Jobs started here")
        expect(jobs.locator("li")).to_have_count(1)
        for _ in range(40):
            page.get_by_role("button", name="Refresh jobs").click()
            if "succeeded 1" in jobs.inner_text():
                break
            page.wait_for_timeout(500)
        expect(jobs).to_contain_text("succeeded 1")

        page.get_by_role("button", name="Chats").click()
        expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
    finally:
        device.close()
