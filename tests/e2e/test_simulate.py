"""``chatmq devices simulate``: simulated users and devices chat and publish telemetry, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from tests.e2e.harness import Deployment


def _simulate(server: Deployment, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "sim.json"
    cmd = [sys.executable, "-m", "chatmq.run.cli", "devices", "simulate", "--server", server.api_url,
           "--mqtt-host", server.host, "--json", str(out), "--password", "sim password 1", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMQ_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env), out


def test_simulated_users_and_devices_chat_and_publish(server: Deployment, tmp_path: Path) -> None:
    done, out = _simulate(server, tmp_path, "--count", "4", "--duration", "3", "--rate", "3",
                          "--telemetry-interval", "0.5", "--mqtt-port", str(server.mqtt_port))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads(out.read_bytes())
    assert summary["users"] == summary["devices"] == 4
    assert summary["messages_sent"] > 10
    assert summary["messages_acked"] == summary["messages_sent"]
    assert summary["deliveries"] == summary["deliveries_expected"] >= summary["messages_sent"]
    assert summary["lost"] == 0
    assert summary["errors"] == []
    assert summary["receipts"] > 0  # read receipts came back to the senders
    assert summary["readings"] >= 4 * 4
    assert "lost" in done.stdout
    assert "[done]" in done.stderr

    # the accounts stay: log in as a simulated user and find its device and its conversation
    first, second = summary["usernames"][:2]
    login = httpx.post(f"{server.api_url}/api/v1/auth/login", json={"username": first, "password": "sim password 1"})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    devices = httpx.get(f"{server.api_url}/api/v1/devices", headers=headers).json()
    assert len(devices) == 1
    peer = httpx.post(f"{server.api_url}/api/v1/contacts/sync", json={"usernames": [second]},
                      headers=headers).json()["registered"][second]
    history = httpx.get(f"{server.api_url}/api/v1/conversations/{peer}/messages", headers=headers).json()
    assert history["messages"], history


def test_simulation_over_websocket(server: Deployment, tmp_path: Path) -> None:
    done, out = _simulate(server, tmp_path, "--count", "3", "--duration", "1", "--rate", "4", "--ws",
                          "--mqtt-port", str(server.ws_port))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads(out.read_bytes())
    assert summary["lost"] == 0
    assert summary["messages_sent"] > 0


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMQ_")}
    done = subprocess.run([sys.executable, "-m", "chatmq.run.cli", "devices", "simulate", "--count", "2",
                           "--server", "http://127.0.0.1:9", "--duration", "1"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert "error: cannot reach" in done.stderr
    assert "Traceback" not in done.stderr
