"""``chatmq serve`` started by any command line (the checkout's, or the image's entrypoint run
without a chroot), and the checks the image and the drain tests share."""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.core.ports import free_port
from chatmq.devices.sdk import release_sockets
from chatmq.run.cluster import stop_process
from tests.e2e.harness import Peer, launch_serve, wait_serve_ready

TIMEOUT = 15.0
SERVER_SHUTTING_DOWN = 0x8B


@dataclass
class Serve:
    """One ``command serve ...`` process on free ports; ``start`` may be called again (same data)."""

    command: list[str]
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    mqtt_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = [*self.command, "serve", "--host", self.host, "--mqtt-port", str(self.mqtt_port),
               "--ws-port", str(self.ws_port), "--http-port", str(self.http_port), "--data-dir", str(self.data_dir)]
        self.proc = launch_serve(cmd, self.env, self.log_path, self.data_dir.parent)
        wait_serve_ready(self.proc, lambda: httpx.get(f"{self.api_url}/readyz", timeout=1).status_code == 200,
                         self.log, timeout, poll=0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return stop_process(self.proc, sig, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def peer(server: Serve, name: str, *, register: bool = True, connect: bool = True) -> Peer:
    c = Peer(server.api_url, server.host, server.mqtt_port)
    if register:
        c.register(name, "correct horse battery")
    c.login(name, "correct horse battery")
    if connect:
        c.connect()
    return c


class V5Listener:
    """An MQTT 5 client of a user, subscribed to its inbox, that records the server's DISCONNECT."""

    def __init__(self, server: Serve, user: Peer) -> None:
        self.reasons: list[int] = []
        self.connected = threading.Event()
        self.gone = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"v5-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user.uid, user.access_token)
        self.inbox = f"users/{user.uid}/inbox"
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(server.host, server.mqtt_port, keepalive=30, clean_start=True)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "the MQTT 5 client did not connect"

    def _on_connect(self, c: mqtt.Client, u: object, flags: object, rc: ReasonCode, p: object) -> None:
        c.subscribe(self.inbox, qos=1)
        self.connected.set()

    def _on_disconnect(self, c: mqtt.Client, u: object, flags: object, rc: ReasonCode, p: object) -> None:
        self.reasons.append(rc.value)
        self.gone.set()
        c.disconnect()  # no reconnect: loop_stop below ends the thread

    def close(self) -> None:
        self.client.loop_stop()
        release_sockets(self.client)


def drain_round_trip(server: Serve) -> None:
    """The contract's chat round trip, then SIGTERM while clients are connected and messages are
    pending: an MQTT 5 client gets the server's DISCONNECT (0x8B, server shutting down), the
    process exits 0, and after a restart the offline recipient gets every acknowledged message."""
    server.start()
    alice = peer(server, "alice")
    bob = peer(server, "bob", connect=False)
    carol = peer(server, "carol", connect=False)
    listener = V5Listener(server, carol)
    try:
        carol_id = carol.uid
        first = alice.send(carol_id, "hello carol")
        ack = alice.wait_ack(first, TIMEOUT)
        assert ack["id"]
        sent = [alice.send(bob.uid, {"n": i}) for i in range(20)]
        acks = [alice.wait_ack(cid, TIMEOUT) for cid in sent]
        assert server.stop(signal.SIGTERM) == 0, server.log()[-4000:]
        assert listener.gone.wait(TIMEOUT)
        assert listener.reasons[0] == SERVER_SHUTTING_DOWN
        assert "Traceback" not in server.log(), server.log()[-8000:]
    finally:
        listener.close()
        for c in (alice, bob, carol):
            c.close()
    server.start()
    try:
        bob = peer(server, "bob", register=False)
        got = bob.wait_messages(20, TIMEOUT)
        assert [m["body"] for m in got] == [{"n": i} for i in range(20)]
        assert [m["id"] for m in got] == [a["id"] for a in acks]
    finally:
        bob.close()
        assert server.stop(signal.SIGTERM) == 0, server.log()[-4000:]
