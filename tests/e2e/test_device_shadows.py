"""Device shadows and presence (issue 14), in both modes: the REST side, the device's MQTT side, a delta
at connect, version conflicts and bounds, presence in ``GET /devices/{id}`` and in the owner's inbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.harness import ClusterDeployment, Deployment, Peer, RawClient, Users

T = TypeVar("T")
WAIT = 30.0  # the machine is shared: generous


def _device(server: Deployment, owner: Peer) -> tuple[str, str]:
    created = httpx.post(f"{server.api_url}/api/v1/devices", json={"name": "lamp"}, headers=_auth(owner))
    assert created.status_code == 201
    return created.json()["device_id"], created.json()["secret"]


def _auth(peer: Peer) -> dict[str, str]:
    return {"Authorization": f"Bearer {peer.access_token}"}


def _connect(server: Deployment, device_id: str, secret: str) -> RawClient:
    dev = RawClient(server, device_id, secret)
    assert not dev.wait(lambda: dev.connack, WAIT).is_failure
    dev.client.subscribe(f"devices/{device_id}/inbox", 1)
    assert [rc.value for rc in dev.wait(lambda: dev.granted, WAIT)] == [1]
    return dev


def _until(predicate: Callable[[], T], timeout: float = WAIT) -> T:
    """Poll ``predicate`` until it returns something true (an API state that follows the bus)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _online(server: Deployment, owner: Peer, device_id: str) -> bool:
    return bool(httpx.get(f"{server.api_url}/api/v1/devices/{device_id}", headers=_auth(owner)).json()["online"])


def _typed(dev: RawClient, kind: str) -> list[dict[str, Any]]:
    return [e for e in dev.inbox if e.get("type") == kind]


def test_shadow_versions_conflict_and_bounds(server: Deployment, users: Users) -> None:
    owner, stranger = users(connect=False), users(connect=False)
    device_id, _secret = _device(server, owner)
    url = f"{server.api_url}/api/v1/devices/{device_id}/shadow"

    empty = httpx.get(url, headers=_auth(owner))
    assert empty.status_code == 200
    assert empty.json() == {"device_id": device_id, "desired": {}, "reported": {}, "delta": {}, "version": 0,
                            "updated_at": 0}
    first = httpx.patch(url, json={"desired": {"led": "on", "cfg": {"rate": 5}}}, headers=_auth(owner))
    assert first.status_code == 200
    assert (first.json()["version"], first.json()["delta"]) == (1, {"led": "on", "cfg": {"rate": 5}})

    stale = httpx.patch(url, json={"desired": {"led": "off"}, "version": 0}, headers=_auth(owner))
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert "version 1" in stale.json()["detail"]
    assert httpx.get(url, headers=_auth(owner)).json()["desired"] == {"led": "on", "cfg": {"rate": 5}}

    second = httpx.patch(url, json={"desired": {"cfg": {"rate": None}}, "version": 1}, headers=_auth(owner))
    assert second.status_code == 200
    assert (second.json()["version"], second.json()["desired"]) == (2, {"led": "on", "cfg": {}})

    deep: dict[str, Any] = {"x": 1}
    for _ in range(6):
        deep = {"k": deep}
    too_deep = httpx.patch(url, json={"desired": deep}, headers=_auth(owner))
    assert too_deep.status_code == 422
    assert too_deep.json()["type"].endswith("/shadow-too-deep")
    too_large = httpx.patch(url, json={"desired": {"blob": "x" * 9000}}, headers=_auth(owner))
    assert too_large.status_code == 413
    assert too_large.json()["type"].endswith("/shadow-too-large")
    assert httpx.get(url, headers=_auth(owner)).json()["version"] == 2

    assert httpx.get(url, headers=_auth(stranger)).status_code == 404
    assert httpx.patch(url, json={"desired": {"a": 1}}, headers=_auth(stranger)).status_code == 404


def test_delta_at_connect_report_get_and_presence(server: Deployment, users: Users) -> None:
    owner = users()
    device_id, secret = _device(server, owner)
    api = f"{server.api_url}/api/v1/devices/{device_id}"
    offline = httpx.get(api, headers=_auth(owner)).json()
    assert (offline["online"], offline["last_seen"], offline["owner"]) == (False, None, owner.uid)
    assert httpx.patch(f"{api}/shadow", json={"desired": {"led": "on", "fw": 2}},
                       headers=_auth(owner)).status_code == 200

    dev = _connect(server, device_id, secret)
    try:
        [delta] = dev.wait(lambda: _typed(dev, "shadow_delta"), WAIT)
        assert delta == {"type": "shadow_delta", "version": 1, "state": {"led": "on", "fw": 2}}
        owner.wait_for(lambda: [e for e in owner.events if e["event"] == "device_connected"
                                and e["device_id"] == device_id], WAIT)
        online = httpx.get(api, headers=_auth(owner)).json()
        assert online["online"] is True
        assert online["connected_at"] is not None

        report = {"type": "shadow_report", "state": {"led": "on", "fw": 1}}
        dev.client.publish(f"devices/{device_id}/outbox", orjson.dumps(report), qos=1).wait_for_publish(WAIT)
        dev.client.publish(f"devices/{device_id}/outbox", orjson.dumps({"type": "shadow_get"}),
                           qos=1).wait_for_publish(WAIT)
        [doc] = dev.wait(lambda: _typed(dev, "shadow"), WAIT)
        assert (doc["reported"], doc["delta"], doc["version"]) == ({"led": "on", "fw": 1}, {"fw": 2}, 2)

        stale = {"type": "shadow_report", "state": {"fw": 2}, "version": 1}
        dev.client.publish(f"devices/{device_id}/outbox", orjson.dumps(stale), qos=1).wait_for_publish(WAIT)
        [error] = dev.wait(lambda: _typed(dev, "error"), WAIT)
        assert error["code"] == "conflict"

        # a change while it is online reaches it at once
        assert httpx.patch(f"{api}/shadow", json={"desired": {"led": "off"}, "version": 2},
                           headers=_auth(owner)).status_code == 200
        deltas = dev.wait(lambda: _typed(dev, "shadow_delta")[1:], WAIT)
        assert deltas == [{"type": "shadow_delta", "version": 3, "state": {"led": "off", "fw": 2}}]
    finally:
        dev.close()
    owner.wait_for(lambda: [e for e in owner.events if e["event"] == "device_disconnected"
                            and e["device_id"] == device_id], WAIT)
    gone = httpx.get(api, headers=_auth(owner)).json()
    assert gone["online"] is False
    assert gone["last_seen"] is not None
    assert gone["disconnect_reason"] == "disconnected"


def test_a_resumed_persistent_device_session_is_online_and_gets_its_delta(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    device_id, secret = _device(server, owner)
    api = f"{server.api_url}/api/v1/devices/{device_id}"
    got: list[dict[str, Any]] = []
    ready = threading.Event()
    # a persistent session lives on one broker node: in a cluster, both connections go to node n1 itself
    port = server.node_port("n1") if isinstance(server, ClusterDeployment) else server.mqtt_port

    def client() -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"persistent-{device_id}", clean_session=False)
        c.username_pw_set(device_id, secret)
        c.on_connect = lambda *_a: ready.set()
        c.on_message = lambda _c, _u, msg: got.append(orjson.loads(msg.payload))
        c.connect(server.host, port)
        c.loop_start()
        assert ready.wait(WAIT)
        return c

    first = client()
    first.subscribe(f"devices/{device_id}/inbox", 1)
    _until(lambda: _online(server, owner, device_id))
    first.disconnect()
    first.loop_stop()
    _until(lambda: not _online(server, owner, device_id))
    assert httpx.patch(f"{api}/shadow", json={"desired": {"mode": "eco"}}, headers=_auth(owner)).status_code == 200

    ready.clear()
    second = client()  # no SUBSCRIBE: the session kept it
    try:
        _until(lambda: [e for e in got if e.get("type") == "shadow_delta"])
        assert [e for e in got if e.get("type") == "shadow_delta"] == [
            {"type": "shadow_delta", "version": 1, "state": {"mode": "eco"}}]
        assert _online(server, owner, device_id)
    finally:
        second.disconnect()
        second.loop_stop()


def test_concurrent_patches_of_one_version_exactly_one_wins(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    device_id, _secret = _device(server, owner)
    url = f"{server.api_url}/api/v1/devices/{device_id}/shadow"
    assert httpx.patch(url, json={"desired": {"mode": "start"}}, headers=_auth(owner)).status_code == 200
    go = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def patch(i: int) -> None:
        with httpx.Client(timeout=WAIT) as client:
            go.wait()
            answers.append(client.patch(url, json={"desired": {"mode": f"w{i}"}, "version": 1}, headers=_auth(owner)))

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 7
    winner = next(a for a in answers if a.status_code == 200).json()
    assert winner["version"] == 2
    now = httpx.get(url, headers=_auth(owner)).json()
    assert (now["version"], now["desired"]) == (2, winner["desired"])
