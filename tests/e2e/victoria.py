"""Helpers of the telemetry tests: chatmq writing to the real victoria-metrics, devices over MQTT."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tests.e2e.harness import Deployment, Peer, RawClient

INFLUX = os.environ.get("CHATMQ_TEST_INFLUX_URL")
TIMEOUT = 30.0


@dataclass
class Telemetry:
    """A deployment writing to victoria-metrics under ``measurement`` with the tag ``run``."""

    server: Deployment
    mode: str
    run: str

    @property
    def measurement(self) -> str:
        return f"telemetry_{self.run}"

    def export(self, match: str) -> list[dict[str, Any]]:
        """victoria-metrics' raw series matching ``match`` (after a flush), as JSON objects."""
        assert INFLUX is not None
        httpx.get(f"{INFLUX}/internal/force_flush", timeout=10).raise_for_status()
        response = httpx.get(f"{INFLUX}/api/v1/export", params={"match[]": match}, timeout=10)
        response.raise_for_status()
        return [orjson.loads(line) for line in response.text.splitlines() if line.strip()]

    def wait_series(self, match: str, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Poll ``export(match)`` until ``done`` holds for it."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            series = self.export(match)
            if done(series):
                return series
            assert time.monotonic() < deadline, f"victoria-metrics has {series} for {match}"
            time.sleep(0.3)

    def readings(self, device: str, field: str, n: int) -> tuple[dict[str, str], list[tuple[int, float]]]:
        """The labels of ``device``'s ``field`` series and its ``(ts, value)`` points, once there are ``n``."""
        match = f'{{__name__="{self.measurement}_{field}",device="{device}",run="{self.run}"}}'
        [series] = self.wait_series(match, lambda s: len(s) == 1 and len(s[0]["values"]) >= n)
        points = sorted(zip(series["timestamps"], series["values"], strict=True))
        return series["metric"], points


def influx_env(url: str, run: str) -> dict[str, str]:
    """The environment that points chatmq at InfluxDB ``url``: readings under measurement
    ``telemetry_<run>``, every point tagged ``run``, metrics every second, batches waiting 0.2 s; read back
    (``telemetry_query_url``) from the same server."""
    return {"CHATMQ_INFLUX_URL": url, "CHATMQ_TELEMETRY_QUERY_URL": url,
            "CHATMQ_TELEMETRY_MEASUREMENT": f"telemetry_{run}",
            "CHATMQ_INFLUX_TAGS": json.dumps({"run": run}), "CHATMQ_METRICS_INTERVAL": "1",
            "CHATMQ_INFLUX_FLUSH_INTERVAL": "0.2"}


def new_device(server: Deployment, owner: Peer, name: str = "thermometer") -> tuple[str, str]:
    created = httpx.post(f"{server.api_url}/api/v1/devices", json={"name": name},
                         headers={"Authorization": f"Bearer {owner.access_token}"})
    assert created.status_code == 201, created.text
    return created.json()["device_id"], created.json()["secret"]


def device_client(server: Deployment, device_id: str, secret: str, transport: str = "tcp") -> RawClient:
    """A connected device reading its inbox ``devices/{id}/inbox``."""
    dev = RawClient(server, device_id, secret, transport)
    assert not dev.wait(lambda: dev.connack).is_failure
    dev.client.subscribe(f"devices/{device_id}/inbox", 1)
    assert [rc.value for rc in dev.wait(lambda: dev.granted)] == [1]
    return dev


def publish(dev: RawClient, device_id: str, payload: bytes | dict[str, Any]) -> None:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    info = dev.client.publish(f"devices/{device_id}/telemetry", data, qos=1)
    info.wait_for_publish(10)
    assert info.is_published()
