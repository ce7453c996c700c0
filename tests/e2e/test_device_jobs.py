"""Jobs (issue 14), in both modes: a job across several devices, some offline until later, with their
status counts; a device that fails it; cancel; a job across 50 devices; in the cluster, a kill -9 of the
part that runs the device worker mid-job."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from chatmq.devices.device_client import DeviceClient
from tests.e2e.harness import ClusterDeployment, Deployment, Peer, Users
from tests.e2e.test_device_shadows import WAIT, _auth, _device, _online, _until

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


def _job_counts(server: Deployment, owner: Peer, job_id: str) -> dict[str, int]:
    got: dict[str, int] = httpx.get(f"{server.api_url}/api/v1/jobs/{job_id}", headers=_auth(owner)).json()["counts"]
    return got


def _start_job(server: Deployment, owner: Peer, device_ids: list[str], document: dict[str, Any]) -> str:
    created = httpx.post(f"{server.api_url}/api/v1/jobs", json={"document": document, "devices": device_ids},
                         headers=_auth(owner), timeout=WAIT)
    assert created.status_code == 201
    job_id: str = created.json()["job_id"]
    return job_id


class Fleet:
    """Devices of one owner, each running jobs with ``DeviceClient``; ``ran`` lists (device, job) once per run."""

    def __init__(self, server: Deployment, owner: Peer, n: int) -> None:
        self.server = server
        with ThreadPoolExecutor(4) as pool:  # the server hashes each secret: several at a time
            self.made = list(pool.map(lambda _i: self._register(owner), range(n)))
        self.ids = [d for d, _s in self.made]
        self.clients: list[DeviceClient] = []
        self.ran: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _register(self, owner: Peer) -> tuple[str, str]:
        created = httpx.post(f"{self.server.api_url}/api/v1/devices", json={"name": "fleet"}, headers=_auth(owner),
                             timeout=WAIT)
        assert created.status_code == 201, created.text
        return created.json()["device_id"], created.json()["secret"]

    def start(self, index: int, work: Callable[[DeviceClient, str, dict[str, Any]], dict[str, Any]]) -> None:
        device_id, secret = self.made[index]
        dev = DeviceClient(self.server.host, self.server.mqtt_port, device_id, secret)

        def run(job_id: str, document: dict[str, Any]) -> dict[str, Any]:
            with self.lock:
                self.ran.append((device_id, job_id))
            return work(dev, job_id, document)

        dev.on_job = run
        dev.connect(WAIT)
        with self.lock:
            self.clients.append(dev)

    def start_many(self, indexes: range, work: Callable[[DeviceClient, str, dict[str, Any]], dict[str, Any]]) -> None:
        with ThreadPoolExecutor(4) as pool:  # each connect checks a secret on the server
            list(pool.map(lambda i: self.start(i, work), indexes))

    def close(self) -> None:
        for dev in self.clients:
            dev.close()


def test_job_across_50_devices_some_offline_reaches_every_one(server: Deployment, users: Users) -> None:
    owner = users(connect=False)
    fleet = Fleet(server, owner, 50)

    def work(dev: DeviceClient, job_id: str, document: dict[str, Any]) -> dict[str, Any]:
        dev.job_update(job_id, "in_progress", 10)
        if dev.device_id in fleet.ids[:5]:
            raise RuntimeError("no space left")
        return {"fw": document["fw"]}

    try:
        fleet.start_many(range(40), work)  # the last 10 are offline when the job starts
        _until(lambda: all(_online(server, owner, d) for d in fleet.ids[:40]))
        job_id = _start_job(server, owner, fleet.ids, {"fw": 50})
        _until(lambda: _job_counts(server, owner, job_id)["succeeded"] == 35
               and _job_counts(server, owner, job_id)["failed"] == 5)
        assert _job_counts(server, owner, job_id)["queued"] == 10
        fleet.start_many(range(40, 50), work)
        _until(lambda: _job_counts(server, owner, job_id)["succeeded"] == 45)
        assert _job_counts(server, owner, job_id) == {"queued": 0, "sent": 0, "in_progress": 0, "succeeded": 45,
                                                      "failed": 5, "canceled": 0}
        assert sorted(fleet.ran) == sorted((d, job_id) for d in fleet.ids)  # every device ran it, once
    finally:
        fleet.close()


def test_job_completes_across_a_kill_9_of_the_device_worker(server: Deployment, users: Users) -> None:
    """Cluster: the router part (which runs the device worker) dies mid-job. Updates sent meanwhile, and
    devices that connect meanwhile, are handled by its replacement: every device finishes, once."""
    if not isinstance(server, ClusterDeployment):
        pytest.skip("the embedded server is one process")
    owner = users(connect=False)
    fleet = Fleet(server, owner, 12)
    release = threading.Event()

    def work(dev: DeviceClient, job_id: str, document: dict[str, Any]) -> dict[str, Any]:
        dev.job_update(job_id, "in_progress", 50)
        assert release.wait(2 * WAIT)
        return {"fw": document["fw"]}

    try:
        fleet.start_many(range(8), work)  # 4 connect while the worker is down
        _until(lambda: all(_online(server, owner, d) for d in fleet.ids[:8]))
        job_id = _start_job(server, owner, fleet.ids, {"fw": 7})
        _until(lambda: _job_counts(server, owner, job_id)["in_progress"] == 8)
        server.cluster.kill("router-1")
        release.set()  # their "succeeded" go out while nothing consumes chat.devices
        fleet.start_many(range(8, 12), work)
        server.cluster.restart("router-1")
        _until(lambda: _job_counts(server, owner, job_id)["succeeded"] == 12)
        assert sorted(fleet.ran) == sorted((d, job_id) for d in fleet.ids)
    finally:
        release.set()
        fleet.close()
