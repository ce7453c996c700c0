"""Runs ``chatmq serve`` as a real subprocess on free ports for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.devices.sdk import ChatClient, Transport, release_sockets


class Peer(ChatClient):
    """A test user's client, with its id and token as plain ``str``."""

    @property
    def uid(self) -> str:
        assert self.user_id is not None, "not logged in"
        return self.user_id

    @property
    def access_token(self) -> str:
        assert self.tokens is not None, "not logged in"
        return self.tokens.access_token


class RawClient:
    """A bare paho client for protocol-level checks."""

    def __init__(self, server: ServerProcess, username: str, password: str, transport: str = "tcp") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{time.monotonic_ns()}",
                                  transport=transport)  # type: ignore[arg-type]
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.granted: list[ReasonCode] = []
        self.inbox: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        port = server.ws_port if transport == "websockets" else server.mqtt_port
        self.client.connect(server.host, port)
        self.client.loop_start()

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._cond:
            self.granted = rcs
            self._cond.notify_all()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.inbox.append(orjson.loads(msg.payload))
            self._cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 15.0) -> Any:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "timed out"
            return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``chatmq serve`` process; ``start``/``stop`` may be called again (same data dir and ports)."""

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

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("CHATMQ_CONFIG", None)
        cmd = [sys.executable, "-m", "chatmq.cli", "serve", "--host", self.host,
               "--mqtt-port", str(self.mqtt_port), "--ws-port", str(self.ws_port),
               "--http-port", str(self.http_port), "--data-dir", str(self.data_dir)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.data_dir.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatmq serve exited with {self.proc.returncode}:\n{self.log()}")
            if "ready" in self.log():
                try:
                    if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"chatmq serve did not become ready:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the process and wait; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signing_key(self) -> str:
        return (self.data_dir / "jwt.secret").read_text().strip()


def serve(tmp: Path, **env: str) -> Iterator[ServerProcess]:
    """Start a server in ``tmp``; stop it afterwards and check that it stopped cleanly and logged
    no traceback (bad input must be answered, never crash a task)."""
    server = ServerProcess(tmp / "data", tmp / "server.log", env=dict(env))
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"server exit code {code}:\n{server.log()[-4000:]}"
        assert "Traceback" not in server.log(), server.log()[-8000:]


Users = Callable[..., Peer]


def user_factory(server: ServerProcess) -> Iterator[Users]:
    """Yields ``make(name=None, transport="tcp", connect=True, **kw)``: a registered, logged-in client."""
    clients: list[Peer] = []

    def make(name: str | None = None, transport: Transport = "tcp", connect: bool = True,
             **kw: object) -> Peer:
        username = name or f"u{uuid.uuid4().hex[:12]}"
        port = server.ws_port if transport == "websockets" else server.mqtt_port
        c = Peer(server.api_url, server.host, port, transport=transport, **kw)  # type: ignore[arg-type]
        clients.append(c)
        c.register(username, "correct horse battery")
        c.login(username, "correct horse battery")
        if connect:
            c.connect()
        return c

    yield make
    for c in clients:
        c.close()
