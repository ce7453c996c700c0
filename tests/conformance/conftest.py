"""The conformance tests run against ``chatmq broker --allow-anonymous`` (the plain node), started
once per module as a subprocess on a free port; ``raw()`` opens raw-socket clients to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatmq.broker.wire import MQTT_5, MQTT_31, MQTT_311
from chatmq.core.ports import free_port
from tests.conformance.raw import RawClient


class PlainNode:
    def __init__(self, port: int, log: Path, proc: subprocess.Popen[bytes], ws_port: int | None = None) -> None:
        self.port = port
        self.ws_port = ws_port
        self.log_path = log
        self.proc = proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainNode]:
    yield from plain_node(tmp_path_factory)


def plain_node(tmp_path_factory: pytest.TempPathFactory, *, ws: bool = False, **settings: str) -> Iterator[PlainNode]:
    """Run the plain node (with ``settings`` as ``CHATMQ_*`` variables, and a WebSocket listener
    with ``ws``) until the generator ends."""
    port = free_port()
    ws_port = free_port() if ws else None
    log = tmp_path_factory.mktemp("plain") / "broker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMQ_")}
    env.update({f"CHATMQ_{k.upper()}": v for k, v in settings.items()})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chatmq.run.cli", "broker", "--allow-anonymous",
                                 "--host", "127.0.0.1", "--mqtt-port", str(port),
                                 *(["--ws-port", str(ws_port)] if ws_port else [])],
                                stdout=out, stderr=out, env=env)
    node = PlainNode(port, log, proc, ws_port)
    deadline = time.monotonic() + 20
    while f"mqtt://127.0.0.1:{port}" not in node.log():
        assert proc.poll() is None, node.log()
        assert time.monotonic() < deadline, node.log()
        time.sleep(0.05)
    yield node
    proc.terminate()
    assert proc.wait(20) == 0, node.log()
    assert "Traceback" not in node.log(), node.log()[-8000:]


@pytest.fixture
def raw(node: PlainNode) -> Iterator[Callable[[], RawClient]]:
    yield from _clients(node, MQTT_311)


@pytest.fixture
def raw5(node: PlainNode) -> Iterator[Callable[[], RawClient]]:
    """Raw-socket MQTT 5 clients."""
    yield from _clients(node, MQTT_5)


@pytest.fixture
def raw31(node: PlainNode) -> Iterator[Callable[[], RawClient]]:
    """Raw-socket MQTT 3.1 (``MQIsdp``) clients."""
    yield from _clients(node, MQTT_31)


def _clients(node: PlainNode, level: int) -> Iterator[Callable[[], RawClient]]:
    clients: list[RawClient] = []

    def make() -> RawClient:
        client = RawClient(node.port, protocol_level=level)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
