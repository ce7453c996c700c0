"""``chatmq devices shadow|command|jobs``: the owner's view of a device from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import orjson

from tests.e2e.harness import Deployment
from tests.e2e.test_cli_chat import cli, run


def devices_cli(server: Deployment, *args: str) -> list[str]:
    return [sys.executable, "-m", "chatmq.run.cli", "devices", *args, "--server", server.api_url,
            "--profile", "owner"]


def test_shadow_and_commands_from_the_command_line(server: Deployment, tmp_path: Path) -> None:
    assert run(cli(server, "register", "devowner", "--password", "devowner-secret"), tmp_path).returncode == 0
    assert run(cli(server, "login", "devowner", "--password", "devowner-secret", "--profile", "owner"),
               tmp_path).returncode == 0
    token = httpx.post(f"{server.api_url}/api/v1/auth/login",
                       json={"username": "devowner", "password": "devowner-secret"}).json()["access_token"]
    device_id = httpx.post(f"{server.api_url}/api/v1/devices", json={"name": "lamp"},
                           headers={"Authorization": f"Bearer {token}"}).json()["device_id"]

    changed = run(devices_cli(server, "shadow", device_id, "--set", '{"led": "on"}'), tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert orjson.loads(changed.stdout)["desired"] == {"led": "on"}
    stale = run(devices_cli(server, "shadow", device_id, "--set", '{"led": "off"}', "--version", "0"), tmp_path)
    assert stale.returncode == 1
    assert "409" in stale.stderr
    shown = run(devices_cli(server, "shadow", device_id), tmp_path)
    assert (orjson.loads(shown.stdout)["version"], orjson.loads(shown.stdout)["delta"]) == (1, {"led": "on"})

    offline = run(devices_cli(server, "command", device_id, "reboot"), tmp_path)
    assert offline.returncode == 1
    assert "offline" in offline.stderr
    queued = run(devices_cli(server, "command", device_id, "reboot", "--params", '{"delay": 1}', "--persistent"),
                 tmp_path)
    assert queued.returncode == 0, queued.stderr
    assert orjson.loads(queued.stdout)["status"] == "queued"
    bad = run(devices_cli(server, "command", device_id, "reboot", "--params", "[1]"), tmp_path)
    assert bad.returncode == 2

    created = run(devices_cli(server, "jobs", "create", '{"fw": 4}', "--device", device_id), tmp_path)
    assert created.returncode == 0, created.stderr
    job_id = orjson.loads(created.stdout)["job_id"]
    shown_job = run(devices_cli(server, "jobs", "show", job_id), tmp_path)
    assert shown_job.returncode == 0, shown_job.stderr
    assert orjson.loads(shown_job.stdout)["counts"]["queued"] == 1  # the device is offline
    assert [r["device_id"] for r in orjson.loads(shown_job.stdout)["devices"]] == [device_id]
    canceled = run(devices_cli(server, "jobs", "cancel", job_id), tmp_path)
    assert canceled.returncode == 0, canceled.stderr
    assert (orjson.loads(canceled.stdout)["canceled"], orjson.loads(canceled.stdout)["counts"]["canceled"]) == (True, 1)
    missing = run(devices_cli(server, "jobs", "show", "nosuchjob"), tmp_path)
    assert missing.returncode == 1
    assert "404" in missing.stderr
    bad_doc = run(devices_cli(server, "jobs", "create", "[1]"), tmp_path)
    assert bad_doc.returncode == 2
