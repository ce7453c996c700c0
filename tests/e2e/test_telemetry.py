"""Device telemetry end to end, in both modes, against the real victoria-metrics (its InfluxDB v2 write API).

A device registered through the API publishes readings over MQTT (TCP and WebSocket); they are
read back from victoria-metrics with the device and owner as labels. Invalid readings get an
``error`` on the device's inbox and disturb nobody; a revoked device is refused; every process
writes its metrics. Each run writes under its own measurement and ``run`` tag
(``influx_tags``), so runs never read each other's points.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from chatmq.core.ids import now_ms
from chatmq.devices.device_client import DeviceClient
from chatmq.devices.sdk import MessageRejectedError
from tests.e2e.harness import RawClient, Users, cluster, serve, user_factory
from tests.e2e.victoria import INFLUX, TIMEOUT, Telemetry, device_client, influx_env, new_device, publish


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def telemetry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Telemetry]:
    """chatmq (``serve`` or a cluster with its ``telemetry`` part) writing to victoria-metrics."""
    if not INFLUX:
        pytest.skip("CHATMQ_TEST_INFLUX_URL is not set (scripts/test.sh starts victoria-metrics and sets it)")
    run = f"r{uuid.uuid4().hex[:12]}"
    env = influx_env(INFLUX, run)
    tmp: Path = tmp_path_factory.mktemp(f"telemetry-{request.param}")
    servers = serve(tmp, **env) if request.param == "embedded" else cluster(tmp, env=env)
    for server in servers:
        yield Telemetry(server, request.param, run)


@pytest.fixture
def users(telemetry: Telemetry) -> Iterator[Users]:
    yield from user_factory(telemetry.server)


def test_readings_reach_influxdb_with_device_and_owner(telemetry: Telemetry, users: Users, transport: str) -> None:
    owner = users(connect=False)
    device_id, secret = new_device(telemetry.server, owner)
    dev = device_client(telemetry.server, device_id, secret, transport)
    try:
        stamped = now_ms() - 5_000
        publish(dev, device_id, {"temp": 21.5, "humidity": 40, "door_open": True, "ts": stamped})
        before = now_ms()
        publish(dev, device_id, {"temp": 22.25})
        after = now_ms()
    finally:
        dev.close()

    labels, points = telemetry.readings(device_id, "temp", 2)
    assert labels == {"__name__": f"{telemetry.measurement}_temp", "device": device_id, "owner": owner.uid,
                      "run": telemetry.run}
    assert points[0] == (stamped, 21.5)  # the device's own time
    assert points[1][1] == 22.25
    assert before - 1000 <= points[1][0] <= after + 1000  # no ts: the time the node received it
    assert telemetry.readings(device_id, "humidity", 1)[1] == [(stamped, 40.0)]
    assert telemetry.readings(device_id, "door_open", 1)[1] == [(stamped, 1.0)]


def test_invalid_readings_get_an_error_and_disturb_nobody(telemetry: Telemetry, users: Users) -> None:
    owner, alice, bob = users(), users(), users()
    device_id, secret = new_device(telemetry.server, owner)
    other_id, _ = new_device(telemetry.server, owner, "other")
    dev = device_client(telemetry.server, device_id, secret)
    try:
        bad: list[bytes] = [b"not json", b"[1, 2]", orjson.dumps({"temp": "warm"}), b"{}",
                            orjson.dumps({"temp": 1, "ts": 12}), orjson.dumps({f"f{i}": i for i in range(65)}),
                            orjson.dumps({"bad name": 1})]
        for payload in bad:
            publish(dev, device_id, payload)
        errors = dev.wait(lambda: dev.inbox if len(dev.inbox) >= len(bad) else None)
        assert [e["type"] for e in errors] == ["error"] * len(bad)
        assert [e["code"] for e in errors] == ["invalid_envelope"] * 5 + ["too_large", "invalid_envelope"]
        assert "not valid JSON" in errors[0]["reason"]
        assert "field 'temp' must be a number" in errors[2]["reason"]

        dev.client.publish(f"devices/{other_id}/telemetry", b'{"temp": 1}', qos=1).wait_for_publish(10)
        forbidden = dev.wait(lambda: dev.inbox[len(bad)] if len(dev.inbox) > len(bad) else None)
        assert forbidden["code"] == "forbidden"
        dev.client.subscribe(f"devices/{other_id}/inbox", 1)  # another device's inbox: refused
        assert [rc.value for rc in dev.wait(lambda: dev.granted if dev.granted[0].value != 1 else None)] == [0x80]

        publish(dev, device_id, {"temp": 19.0})  # the same connection still works
        alice.wait_ack(alice.send(bob.uid, "still here"), TIMEOUT)  # and so does everyone else's chat
        assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "still here"}
    finally:
        dev.close()
    assert telemetry.readings(device_id, "temp", 1)[1][0][1] == 19.0
    assert telemetry.export(f'{{__name__=~"{telemetry.measurement}_.*",device="{other_id}"}}') == []


def test_the_sdk_device_client_publishes_readings_and_hears_its_errors(telemetry: Telemetry, users: Users) -> None:
    owner = users(connect=False)
    made = owner.create_device("sdk-sensor")
    server = telemetry.server
    with DeviceClient(server.host, server.ws_port, made["device_id"], made["secret"], transport="websockets") as dev:
        dev.connect()
        with pytest.raises(MessageRejectedError) as refused:  # MQTT 5: the PUBACK refuses it
            dev.publish({"temp": "warm"}, timeout=10)
        assert refused.value.code == "invalid_envelope"
        [error] = dev.wait_errors(1, TIMEOUT)  # and the error comes to the inbox
        assert (error["type"], error["code"]) == ("error", "invalid_envelope")
        dev.publish({"temp": 7.5}, timeout=10)
    assert telemetry.readings(made["device_id"], "temp", 1)[1][0][1] == 7.5


def test_a_revoked_device_is_refused(telemetry: Telemetry, users: Users) -> None:
    owner = users(connect=False)
    device_id, secret = new_device(telemetry.server, owner)
    dev = device_client(telemetry.server, device_id, secret)
    publish(dev, device_id, {"temp": 1.0})
    dev.close()
    telemetry.readings(device_id, "temp", 1)
    deleted = httpx.delete(f"{telemetry.server.api_url}/api/v1/devices/{device_id}",
                           headers={"Authorization": f"Bearer {owner.access_token}"})
    assert deleted.status_code == 204
    revoked = RawClient(telemetry.server, device_id, secret)
    try:
        assert revoked.wait(lambda: revoked.connack).is_failure
    finally:
        revoked.close()


def test_deleted_device_telemetry_is_no_longer_written(telemetry: Telemetry, users: Users) -> None:
    """A device deleted while connected is cut off at once: what it publishes afterwards (for a
    second and a half) never reaches InfluxDB."""
    owner = users(connect=False)
    device_id, secret = new_device(telemetry.server, owner)
    dev = device_client(telemetry.server, device_id, secret)
    try:
        publish(dev, device_id, {"temp": 1.0})
        telemetry.readings(device_id, "temp", 1)
        deleted = httpx.delete(f"{telemetry.server.api_url}/api/v1/devices/{device_id}",
                               headers={"Authorization": f"Bearer {owner.access_token}"})
        assert deleted.status_code == 204
        for i in range(15):
            time.sleep(0.1)
            dev.client.publish(f"devices/{device_id}/telemetry", orjson.dumps({"temp": 100.0 + i}), qos=1)
    finally:
        dev.close()
    time.sleep(1.0)  # what the node took would be written by now (flush interval 0.2 s)
    assert [value for _, value in telemetry.readings(device_id, "temp", 1)[1]] == [1.0]


def test_every_process_writes_its_metrics(telemetry: Telemetry) -> None:
    expected = {"serve"} if telemetry.mode == "embedded" else {
        "broker", "router", "group-router", "storage", "api", "telemetry"}

    def processes(series: list[dict[str, Any]]) -> set[str]:
        return {s["metric"].get("process", "") for s in series}

    everything = telemetry.wait_series(f'{{run="{telemetry.run}",process!=""}}',
                                       lambda s: expected <= processes(s))
    assert all("instance" in s["metric"] for s in everything)
    if telemetry.mode == "cluster":  # the cluster names its processes: n1, router-1, telemetry, ...
        assert {s["metric"]["instance"] for s in everything} >= {"n1", "n2", "router-1", "api-1", "telemetry"}
    own = [s for s in everything if s["metric"]["__name__"].startswith("chatmq_")]
    assert own, sorted({s["metric"]["__name__"] for s in everything})
    nodes = {s["metric"].get("node") for s in everything if s["metric"].get("process") in ("serve", "broker")}
    assert nodes >= ({"n1"} if telemetry.mode == "embedded" else {"n1", "n2"})


def test_readings_read_back_over_rest_in_pages_and_latest(telemetry: Telemetry, users: Users) -> None:
    owner, stranger = users(connect=False), users(connect=False)
    device_id, secret = new_device(telemetry.server, owner)
    t0 = now_ms()
    dev = device_client(telemetry.server, device_id, secret)
    try:
        for i in range(3):
            publish(dev, device_id, {"temp": 20 + i, **({"humidity": 40} if i == 0 else {}), "ts": t0 - 600_000 + i})
        publish(dev, device_id, {"temp": 25.5})
    finally:
        dev.close()
    url = f"{telemetry.server.api_url}/api/v1/devices/{device_id}/telemetry"
    auth = {"Authorization": f"Bearer {owner.access_token}"}

    def read(**params: Any) -> dict[str, Any]:
        answer = httpx.get(url, params=params, headers=auth, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    since = t0 - 700_000
    deadline = time.monotonic() + TIMEOUT
    while len(read(field="temp", since=since)["points"]) < 4:  # the store makes what it took readable by the second
        assert time.monotonic() < deadline, "the readings never came back"
        httpx.get(f"{INFLUX}/internal/force_flush", timeout=10)
        time.sleep(0.3)
    every = read(field="temp", since=since)
    assert [p["value"] for p in every["points"]] == [20.0, 21.0, 22.0, 25.5]
    assert [p["ts"] for p in every["points"][:3]] == [t0 - 600_000, t0 - 599_999, t0 - 599_998]
    first = read(field="temp", since=since, limit=2)["points"]
    rest = read(field="temp", since=first[-1]["ts"] + 1, limit=2)["points"]
    assert [p["value"] for p in first + rest] == [20.0, 21.0, 22.0, 25.5]
    assert read(field="temp", since=since, until=t0 - 599_999)["points"] == every["points"][:2]
    assert read(field="nosuchfield", since=since)["points"] == []

    latest_url = f"{url}/latest"
    deadline = time.monotonic() + TIMEOUT
    while set((latest := httpx.get(latest_url, headers=auth, timeout=TIMEOUT).json())["fields"]) != {"temp",
                                                                                                    "humidity"}:
        assert time.monotonic() < deadline, f"latest is {latest}"
        time.sleep(0.5)
    assert latest["fields"]["temp"]["value"] == 25.5
    assert latest["fields"]["humidity"]["value"] == 40.0
    assert abs(latest["fields"]["humidity"]["ts"] - (t0 - 600_000)) < 1000  # the store keeps whole seconds there

    bad_queries: list[dict[str, str | int]] = [{"field": "bad name"}, {"field": "temp", "since": 10, "until": 5},
                                               {"field": "temp", "limit": 0}]
    for bad in bad_queries:
        assert httpx.get(url, params=bad, headers=auth).status_code == 422
    assert httpx.get(url, params={"field": "temp"},
                     headers={"Authorization": f"Bearer {stranger.access_token}"}).status_code == 404
