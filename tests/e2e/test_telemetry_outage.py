"""Telemetry through an InfluxDB outage, in both modes: chatmq writes to victoria-metrics through a
switchable TCP forwarder that starts switched off. Readings published meanwhile are kept (in the
cluster, even across a kill -9 of the telemetry part: nothing was committed) and arrive once
InfluxDB is back; chat goes on all along."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from chatmq.core.ports import free_port
from tests.e2e.harness import ClusterDeployment, Deployment, Users, cluster, serve, user_factory
from tests.e2e.victoria import INFLUX, TIMEOUT, Telemetry, device_client, influx_env, new_device, publish


class _Forward(socketserver.BaseRequestHandler):
    server: _ForwardServer

    def handle(self) -> None:
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            ends = [self.request, upstream]
            while not self.server.closing:
                readable, _, _ = select.select(ends, [], [], 0.5)
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.request else self.request).sendall(data)


class _ForwardServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = True

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", port), _Forward)
        self.target = target
        self.closing = False


@dataclass
class Switch:
    """A TCP forwarder on ``port`` to ``target``; refused (nothing listens) until ``on()``."""

    target: tuple[str, int]
    port: int
    _server: _ForwardServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on(self) -> None:
        self._server = _ForwardServer(self.port, self.target)
        threading.Thread(target=self._server.serve_forever, name="influx-switch", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.closing = True
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Outage:
    telemetry: Telemetry
    switch: Switch


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def outage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """chatmq pointed at victoria-metrics through a switch that is off."""
    if not INFLUX:
        pytest.skip("CHATMQ_TEST_INFLUX_URL is not set (scripts/test.sh starts victoria-metrics and sets it)")
    parts = urlsplit(INFLUX)
    switch = Switch((parts.hostname or "127.0.0.1", parts.port or 80), free_port())
    run = f"o{uuid.uuid4().hex[:12]}"
    env = influx_env(switch.url, run)
    tmp = tmp_path_factory.mktemp(f"outage-{request.param}")
    servers = serve(tmp, **env) if request.param == "embedded" else cluster(tmp, nodes=1, env=env)
    try:
        for server in servers:
            yield Outage(Telemetry(server, request.param, run), switch)
    finally:
        switch.close()


@pytest.fixture
def users(outage: Outage) -> Iterator[Users]:
    yield from user_factory(outage.telemetry.server)


def test_readings_published_while_influxdb_is_down_arrive_when_it_is_back(outage: Outage, users: Users) -> None:
    telemetry, server = outage.telemetry, outage.telemetry.server
    owner, alice, bob = users(connect=False), users(), users()
    device_id, secret = new_device(server, owner)
    dev = device_client(server, device_id, secret)
    try:
        for i in range(5):
            publish(dev, device_id, {"level": i})
    finally:
        dev.close()
    alice.wait_ack(alice.send(bob.uid, "influx is down"), TIMEOUT)  # chat does not wait for InfluxDB
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "influx is down"}
    _wait_for_log(server, "does not take writes")
    if isinstance(server, ClusterDeployment):  # the part dies mid-outage: its replacement writes them
        server.cluster.kill("telemetry")
        server.cluster.restart("telemetry")

    outage.switch.on()
    _, points = telemetry.readings(device_id, "level", 5)
    assert sorted(v for _ts, v in points) == [0.0, 1.0, 2.0, 3.0, 4.0]
    _wait_for_log(server, "takes writes again")


def _wait_for_log(server: Deployment, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in server.log():
        assert time.monotonic() < deadline, f"no {text!r} in the logs"
        time.sleep(0.1)
