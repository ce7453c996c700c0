"""Jobs (issue 14), in both modes: a job across several devices, some offline until later, with their
status counts; a device that fails it; cancel."""

from __future__ import annotations

from typing import Any

import httpx

from chatmq.devices.device_client import DeviceClient
from tests.e2e.harness import Deployment, Users
from tests.e2e.test_device_shadows import WAIT, _auth, _device, _until

DEVICES = 6


def test_job_reaches_online_and_later_devices_and_counts_their_status(server: Deployment, users: Users) -> None:
    owner, stranger = users(connect=False), users(connect=False)
    made = [_device(server, owner) for _ in range(DEVICES)]
    clients: list[DeviceClient] = []
    ran: list[tuple[str, dict[str, Any]]] = []

    def start(device_id: str, secret: str, fail: bool = False) -> None:
        dev = DeviceClient(server.host, server.mqtt_port, device_id, secret)

        def work(job_id: str, document: dict[str, Any]) -> dict[str, Any]:
            ran.append((device_id, document))
            dev.job_update(job_id, "in_progress", 50)
            if fail:
                raise RuntimeError("flash failed")
            return {"fw": document["fw"]}

        dev.on_job = work
        dev.connect(WAIT)
        clients.append(dev)

    try:
        for i, (device_id, secret) in enumerate(made[:4]):  # two stay offline for now; one of these fails
            start(device_id, secret, fail=i == 3)
        for device_id, _secret in made[:4]:
            _until(lambda d=device_id: httpx.get(f"{server.api_url}/api/v1/devices/{d}",  # type: ignore[misc]
                                                 headers=_auth(owner)).json()["online"])
        jobs = f"{server.api_url}/api/v1/jobs"
        assert httpx.post(jobs, json={"document": {"fw": 9}, "devices": [made[0][0]]},
                          headers=_auth(stranger)).status_code == 422  # not the stranger's devices
        assert httpx.post(jobs, json={"document": {"fw": 9}}, headers=_auth(owner)).status_code == 422
        created = httpx.post(jobs, json={"document": {"fw": 9}, "all_mine": True}, headers=_auth(owner))
        assert created.status_code == 201
        job_url = f"{jobs}/{created.json()['job_id']}"

        def counts() -> dict[str, int]:
            got: dict[str, int] = httpx.get(job_url, headers=_auth(owner)).json()["counts"]
            return got

        _until(lambda: counts()["succeeded"] == 3 and counts()["failed"] == 1)
        assert counts()["queued"] == 2
        for device_id, secret in made[4:]:
            start(device_id, secret)
        _until(lambda: counts()["succeeded"] == 5)
        view = httpx.get(job_url, headers=_auth(owner)).json()
        assert view["counts"] == {"queued": 0, "sent": 0, "in_progress": 0, "succeeded": 5, "failed": 1,
                                  "canceled": 0}
        rows = {r["device_id"]: r for r in view["devices"]}
        assert rows[made[3][0]]["details"] == {"error": "flash failed"}
        assert rows[made[0][0]]["details"] == {"fw": 9}
        assert sorted(d for d, _doc in ran) == sorted(d for d, _s in made)  # once each
        assert httpx.get(job_url, headers=_auth(stranger)).status_code == 404
    finally:
        for dev in clients:
            dev.close()


def test_a_canceled_job_does_not_reach_devices_that_connect_later(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    device_id, secret = _device(server, owner)
    jobs = f"{server.api_url}/api/v1/jobs"
    created = httpx.post(jobs, json={"document": {"fw": 1}, "devices": [device_id]}, headers=_auth(owner))
    assert created.status_code == 201
    job_url = f"{jobs}/{created.json()['job_id']}"
    canceled = httpx.post(f"{job_url}/cancel", headers=_auth(owner))
    assert canceled.status_code == 200
    assert canceled.json()["counts"]["canceled"] == 1
    got: list[str] = []
    with DeviceClient(server.host, server.mqtt_port, device_id, secret) as dev:
        dev.on_job = lambda job_id, _doc: got.append(job_id)
        dev.connect(WAIT)
        dev.shadow.get(WAIT)  # what the worker sends at connect comes before this answer
    assert got == []
    assert httpx.get(job_url, headers=_auth(owner)).json()["canceled"] is True
