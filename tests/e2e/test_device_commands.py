"""Device commands (issue 14), in both modes: a round trip through the REST call that waits, a device
that fails a command, one that is offline (409), one that does not answer (504), and a persistent
command delivered when the device connects, answered once; commands sent by users over MQTT."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pytest

from chatmq.devices.device_client import DeviceClient
from chatmq.devices.sdk import MessageRejectedError
from tests.e2e.harness import Deployment, RawClient, Users
from tests.e2e.test_device_shadows import WAIT, _auth, _connect, _device, _online, _typed, _until


def _answer(dev: RawClient, device_id: str, ok: bool, n: int = 1) -> threading.Thread:
    """A thread that answers the first ``n`` commands the device gets (with their params as the result)."""

    def run() -> None:
        commands = dev.wait(lambda: _typed(dev, "command")[:n] if len(_typed(dev, "command")) >= n else None,
                            WAIT)
        for command in commands:
            answer: dict[str, Any] = {"type": "command_result", "id": command["id"], "ok": ok,
                                      "result": {"echo": command["params"]} if ok else None,
                                      "error": None if ok else "no disk"}
            dev.client.publish(f"devices/{device_id}/outbox", orjson.dumps(answer), qos=1).wait_for_publish(WAIT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_command_round_trip_failure_offline_and_timeout(server: Deployment, users: Users) -> None:
    owner, stranger = users(connect=False), users(connect=False)
    device_id, secret = _device(server, owner)
    url = f"{server.api_url}/api/v1/devices/{device_id}/commands"

    offline = httpx.post(url, json={"name": "reboot"}, headers=_auth(owner), timeout=WAIT)
    assert offline.status_code == 409
    assert offline.json()["type"].endswith("/device_offline")

    dev = _connect(server, device_id, secret)
    try:
        # the device's status follows its subscription through the bus: wait until the API sees it online
        _until(lambda: _online(server, owner, device_id))
        thread = _answer(dev, device_id, ok=True)
        done = httpx.post(url, json={"name": "reboot", "params": {"delay": 2}, "timeout_s": 30},
                          headers=_auth(owner), timeout=60)
        thread.join(WAIT)
        assert done.status_code == 200, done.text
        body = done.json()
        assert (body["status"], body["result"], body["error"]) == ("succeeded", {"echo": {"delay": 2}}, None)
        [command] = _typed(dev, "command")
        assert (command["id"], command["name"], command["params"]) == (body["id"], "reboot", {"delay": 2})
        stored = httpx.get(f"{url}/{body['id']}", headers=_auth(owner)).json()
        assert (stored["status"], stored["result"]) == ("succeeded", {"echo": {"delay": 2}})

        thread = _answer(dev, device_id, ok=False, n=2)
        failed = httpx.post(url, json={"name": "format"}, headers=_auth(owner), timeout=60)
        thread.join(WAIT)
        assert failed.status_code == 200
        assert (failed.json()["status"], failed.json()["error"]) == ("failed", "no disk")

        # nobody answers this one
        slow = httpx.post(url, json={"name": "sleep", "timeout_s": 2}, headers=_auth(owner), timeout=60)
        assert slow.status_code == 504
        assert slow.json()["type"].endswith("/command_timeout")
        assert httpx.get(f"{url}/{slow.json()['id']}", headers=_auth(owner)).json()["status"] == "expired"
        expired = httpx.get(url, params={"status": "expired"}, headers=_auth(owner)).json()
        assert [c["id"] for c in expired] == [slow.json()["id"]]

        assert httpx.post(url, json={"name": "reboot"}, headers=_auth(stranger)).status_code == 404
        assert httpx.post(url, json={"name": "reboot", "timeout_s": 301}, headers=_auth(owner)).status_code == 422
        huge = httpx.post(url, json={"name": "x", "params": {"b": "x" * 9000}}, headers=_auth(owner))
        assert huge.status_code == 413
    finally:
        dev.close()


def test_persistent_command_delivered_on_connect_and_answered_once(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    device_id, secret = _device(server, owner)
    url = f"{server.api_url}/api/v1/devices/{device_id}/commands"

    queued = httpx.post(url, json={"name": "update", "params": {"v": 7}, "persistent": True, "expires_in_s": 600},
                        headers=_auth(owner), timeout=WAIT)
    assert queued.status_code == 202
    cid = queued.json()["id"]
    assert queued.json()["status"] == "queued"
    assert [c["id"] for c in httpx.get(url, params={"status": "queued"}, headers=_auth(owner)).json()] == [cid]

    dev = _connect(server, device_id, secret)
    try:
        [command] = dev.wait(lambda: _typed(dev, "command"), WAIT)
        assert (command["id"], command["name"], command["params"]) == (cid, "update", {"v": 7})
        assert httpx.get(f"{url}/{cid}", headers=_auth(owner)).json()["status"] == "sent"
        answer = {"type": "command_result", "id": cid, "ok": True, "result": {"v": 7}}
        for _ in range(2):  # a repeated answer changes nothing
            dev.client.publish(f"devices/{device_id}/outbox", orjson.dumps(answer), qos=1).wait_for_publish(WAIT)

        def finished() -> dict[str, Any] | None:
            got: dict[str, Any] = httpx.get(f"{url}/{cid}", headers=_auth(owner)).json()
            return got if got["status"] == "succeeded" else None

        final = _until(finished)
        assert final is not None
        assert final["result"] == {"v": 7}
    finally:
        dev.close()
    # answered: not delivered again on the next connect
    again = _connect(server, device_id, secret)
    try:
        _until(lambda: _online(server, owner, device_id))
        # what the worker sends at connect comes before the answer to a later shadow_get (one path per device)
        again.client.publish(f"devices/{device_id}/outbox", b'{"type":"shadow_get"}', qos=1).wait_for_publish(WAIT)
        again.wait(lambda: _typed(again, "shadow"), WAIT)
        assert _typed(again, "command") == []
    finally:
        again.close()


def test_sdk_device_client_answers_commands_and_keeps_its_shadow(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    device_id, secret = _device(server, owner)
    api = f"{server.api_url}/api/v1/devices/{device_id}"
    assert httpx.patch(f"{api}/shadow", json={"desired": {"led": "on"}}, headers=_auth(owner)).status_code == 200
    ran: list[tuple[str, dict[str, Any]]] = []

    def handler(name: str, params: dict[str, Any]) -> dict[str, Any]:
        ran.append((name, params))
        if name == "explode":
            raise RuntimeError("boom")
        return {"done": name}

    with DeviceClient(server.host, server.mqtt_port, device_id, secret) as dev:
        dev.on_command = handler
        deltas: list[tuple[dict[str, Any], int]] = []
        dev.shadow.on_delta = lambda state, version: deltas.append((state, version))
        dev.connect(WAIT)
        assert dev.shadow.wait_delta(1, WAIT)[0]["state"] == {"led": "on"}
        assert deltas == [({"led": "on"}, 1)]
        dev.shadow.report({"led": "on", "temp": 20})
        _until(lambda: httpx.get(f"{api}/shadow", headers=_auth(owner)).json()["version"] == 2)
        doc = dev.shadow.get(WAIT)
        assert (doc["reported"], doc["delta"], doc["version"]) == ({"led": "on", "temp": 20}, {}, 2)

        _until(lambda: _online(server, owner, device_id))
        ok = httpx.post(f"{api}/commands", json={"name": "blink", "params": {"n": 3}}, headers=_auth(owner),
                        timeout=60).json()
        assert (ok["status"], ok["result"]) == ("succeeded", {"done": "blink"})
        bad = httpx.post(f"{api}/commands", json={"name": "explode"}, headers=_auth(owner), timeout=60).json()
        assert (bad["status"], bad["error"]) == ("failed", "boom")
        assert ran == [("blink", {"n": 3}), ("explode", {})]


def test_commands_sent_by_users_over_mqtt(server: Deployment, users: Users) -> None:
    """A user's ``command`` on its outbox: answered with ``command_result`` in its inbox (succeeded, offline,
    expired), run once when resent, refused for a device that is not the user's."""
    owner, stranger = users(), users()
    device_id, secret = _device(server, owner)

    offline = owner.wait_command_result(owner.send_command(device_id, "reboot"), WAIT)
    assert (offline["status"], offline["ok"], offline["error"], offline["device"]) == (
        "failed", False, "device_offline", device_id)
    with pytest.raises(MessageRejectedError) as refused:
        stranger.wait_command_result(stranger.send_command(device_id, "reboot"), WAIT)
    assert refused.value.envelope["code"] == "forbidden"

    ran: list[dict[str, Any]] = []
    with DeviceClient(server.host, server.mqtt_port, device_id, secret) as dev:
        def run(name: str, params: dict[str, Any]) -> dict[str, Any]:
            ran.append(params)
            return {"did": name, **params}

        dev.on_command = run
        dev.connect(WAIT)
        _until(lambda: _online(server, owner, device_id))
        client_id = owner.send_command(device_id, "blink", {"times": 3})
        done = owner.wait_command_result(client_id, WAIT)
        assert (done["status"], done["ok"], done["result"], done["error"]) == (
            "succeeded", True, {"did": "blink", "times": 3}, None)
        stored = httpx.get(f"{server.api_url}/api/v1/devices/{device_id}/commands/{done['command_id']}",
                           headers=_auth(owner)).json()
        assert (stored["status"], stored["name"]) == ("succeeded", "blink")
        owner.command_results.clear()
        owner.send_command(device_id, "blink", {"times": 3}, client_id=client_id)  # resent: answered again
        assert owner.wait_command_result(client_id, WAIT)["result"] == {"did": "blink", "times": 3}
        assert ran == [{"times": 3}]  # run once

    mute = _connect(server, device_id, secret)  # reads its inbox, never answers
    try:
        _until(lambda: _online(server, owner, device_id))
        expired = owner.wait_command_result(owner.send_command(device_id, "reboot", timeout_s=1), WAIT)
        assert (expired["status"], expired["ok"]) == ("expired", False)
        assert [c["name"] for c in _typed(mute, "command")] == ["reboot"]
    finally:
        mute.close()
