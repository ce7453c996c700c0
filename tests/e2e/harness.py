"""Runs chatmq for the end-to-end tests: ``chatmq serve`` (embedded) or a ``LocalCluster`` (every
part its own process, on the real Kafka and MongoDB, behind nginx), both on free ports.

Tests take a ``Deployment``: where to connect, the token key, the logs, and how to point
``chatmq admin`` at its store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.core.ports import free_port
from chatmq.devices.sdk import ChatClient, Transport, release_sockets
from chatmq.run.cluster import stop_process
from tests.fakes.tls import CertFiles, TestCA

if TYPE_CHECKING:
    from chatmq.services.store.base import Store

T = TypeVar("T")


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


class Deployment(Protocol):
    """A running chatmq, embedded or clustered."""

    host: str
    mqtt_port: int
    ws_port: int
    http_port: int

    @property
    def api_url(self) -> str: ...

    def log(self) -> str:
        """Everything its processes logged."""
        ...

    def signing_key(self) -> str: ...

    def store_cli(self) -> tuple[list[str], dict[str, str]]:
        """Arguments and environment that point ``chatmq admin …`` at its store."""
        ...

    def ops_urls(self) -> dict[str, str]:
        """Base URL of ``/metrics``, ``/healthz``, ``/readyz`` of each of its processes, by name."""
        ...


class RawClient:
    """A bare paho client for protocol-level checks."""

    def __init__(self, server: Deployment, username: str, password: str, transport: str = "tcp") -> None:
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


def rss_kib(pid: int) -> int:
    """Process ``pid``'s resident memory (``VmRSS``), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def launch_serve(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``chatmq serve`` (``cmd``), its output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def wait_serve_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Callable[[], str],
                     timeout: float, poll: float = 0.05) -> None:
    """Until ``ready()`` (an HTTP error counts as not yet); ``RuntimeError`` with the log when the
    process exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chatmq serve exited with {proc.returncode}:\n{log()}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    raise RuntimeError(f"chatmq serve did not become ready:\n{log()}")


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
    args: list[str] = field(default_factory=list)
    """More ``chatmq serve`` arguments (``--tls-cert``, ...)."""
    https_port: int | None = None
    """With TLS on: the HTTPS port, which ``api_url`` names when ``http_port`` is closed (``tls_only``)."""
    ca_file: Path | None = None
    """The CA that signed the server's certificate (checked by the start-up health probe)."""
    tls_only: bool = False

    @property
    def api_url(self) -> str:
        if self.tls_only:
            return f"https://{self.host}:{self.https_port}"
        return f"http://{self.host}:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("CHATMQ_CONFIG", None)
        cmd = [sys.executable, "-m", "chatmq.run.cli", "serve", "--host", self.host,
               "--mqtt-port", str(self.mqtt_port), "--ws-port", str(self.ws_port),
               "--http-port", str(self.http_port), "--data-dir", str(self.data_dir), *self.args]
        self.proc = launch_serve(cmd, env, self.log_path, self.data_dir.parent)

        def healthy() -> bool:
            verify = True if self.ca_file is None else ssl.create_default_context(cafile=str(self.ca_file))
            return "ready" in self.log() and httpx.get(f"{self.api_url}/healthz", timeout=1,
                                                       verify=verify).status_code == 200

        wait_serve_ready(self.proc, healthy, self.log, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the process and wait; returns its exit code."""
        assert self.proc is not None
        return stop_process(self.proc, sig, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signing_key(self) -> str:
        return (self.data_dir / "jwt.secret").read_text().strip()

    def store_cli(self) -> tuple[list[str], dict[str, str]]:
        return ["--data-dir", str(self.data_dir)], {"CHATMQ_MONGO_URL": ""}  # SQLite, even when a cluster is around

    def ops_urls(self) -> dict[str, str]:
        return {"embedded": self.api_url}


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


@dataclass
class TlsServer:
    """A ``chatmq serve`` with TLS on, and the CA its certificate comes from."""

    process: ServerProcess
    ca: TestCA
    mqtts_port: int
    wss_port: int
    https_port: int

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def peer(self, transport: Transport = "tcp") -> Peer:
        """A registered, logged-in, connected user over HTTPS and MQTT over TLS (``wss`` for websockets)."""
        port = self.wss_port if transport == "websockets" else self.mqtts_port
        return tls_peer(self.https_url, port, transport, self.ca)


def tls_peer(api_url: str, port: int, transport: Transport, ca: TestCA) -> Peer:
    """A registered, logged-in user connected over TLS to ``port``, trusting ``ca``."""
    client = Peer(api_url, "127.0.0.1", port, transport=transport, tls=True, ca_file=ca.ca_file)
    name = f"t{time.monotonic_ns()}"
    client.register(name, "correct horse battery")
    client.login(name, "correct horse battery")
    client.connect()
    return client


def start_tls(tmp: Path, cert: CertFiles | None = None, *, only: bool = False, client_ca: bool = False,
              ca: TestCA | None = None, wss_port: int | None = None) -> TlsServer:
    """``chatmq serve`` in ``tmp`` with ``cert`` (else one from ``ca``, else from a new CA) on free TLS ports
    (``wss_port`` when given); ``only``: ``tls_only``; ``client_ca``: ``tls_client_ca`` = the CA."""
    ca = ca or TestCA(tmp / "ca")
    cert = cert or ca.server()
    ports = {"mqtts": free_port(), "wss": wss_port or free_port(), "https": free_port()}
    env = {"CHATMQ_TLS_ONLY": "true" if only else "false",
           "CHATMQ_TLS_CLIENT_CA": str(ca.ca_file) if client_ca else ""}
    process = ServerProcess(tmp / "data", tmp / "server.log", env=env, https_port=ports["https"], ca_file=ca.ca_file,
                            tls_only=only, args=["--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
                                                 "--mqtts-port", str(ports["mqtts"]), "--wss-port", str(ports["wss"]),
                                                 "--https-port", str(ports["https"])])
    process.start()
    return TlsServer(process, ca, ports["mqtts"], ports["wss"], ports["https"])


def stop_tls(server: TlsServer) -> None:
    """Stop it; it must exit cleanly and have logged no traceback."""
    code = server.process.stop()
    log = server.process.log()
    assert code == 0, f"server exit code {code}:\n{log[-4000:]}"
    assert "Traceback" not in log, log[-8000:]



def user_factory(server: Deployment) -> Iterator[Users]:
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


KAFKA = os.environ.get("CHATMQ_KAFKA_BOOTSTRAP")
MONGO = os.environ.get("CHATMQ_MONGO_URL")


def read_store(server: Deployment, read: Callable[[Store], Awaitable[T]]) -> T:
    """``read(store)`` on a handle of the deployment's own store (SQLite of ``chatmq serve``, MongoDB of
    a cluster), opened for the call."""
    store: Store
    if isinstance(server, ServerProcess):
        from chatmq.services.store.sqlite import SQLiteStore

        store = SQLiteStore(server.data_dir / "chatmq.db")
    else:
        from chatmq.services.store.mongo import MongoStore

        assert isinstance(server, ClusterDeployment)
        assert MONGO
        store = MongoStore(MONGO, server.name)

    async def run() -> T:
        async with store:
            return await read(store)

    return asyncio.run(run())


class ClusterDeployment:
    """A ``LocalCluster`` with topics and database of its own (``name``), reached through nginx."""

    def __init__(self, tmp: Path, name: str, *, nodes: int = 2, routers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        from chatmq.core.settings import Settings
        from chatmq.run.cluster import CLUSTER_CONFIG, LocalCluster

        if not (KAFKA and MONGO):
            raise RuntimeError("CHATMQ_KAFKA_BOOTSTRAP and CHATMQ_MONGO_URL must name the servers")
        self.name = name
        self.settings = Settings.load(CLUSTER_CONFIG, kafka_bootstrap=KAFKA, mongo_url=MONGO, kafka_prefix=f"{name}.",
                                      mongo_db=name, data_dir=tmp / "cluster", jwt_secret="t" * 40)
        self.cluster = LocalCluster(self.settings, data_dir=tmp / "cluster", mqtt_port=free_port(),
                                    ws_port=free_port(), http_port=free_port(), nodes=nodes, routers=routers,
                                    env=env)
        self.host = self.cluster.host
        self.mqtt_port, self.ws_port, self.http_port = (self.cluster.mqtt_port, self.cluster.ws_port,
                                                        self.cluster.http_port)

    @property
    def api_url(self) -> str:
        return self.cluster.api_url

    def log(self) -> str:
        return "\n".join(f"--- {name}\n{part.log()}" for name, part in self.cluster.parts.items())

    def signing_key(self) -> str:
        return self.settings.signing_key()

    def store_cli(self) -> tuple[list[str], dict[str, str]]:
        return [], {"CHATMQ_MONGO_URL": MONGO or "", "CHATMQ_MONGO_DB": self.name}

    def ops_urls(self) -> dict[str, str]:
        return self.cluster.ops_urls()

    def node_port(self, node: str) -> int:
        """The MQTT over TCP port of broker node ``node`` itself (not nginx's)."""
        return self.cluster.parts[node].ports["mqtt"]

    def nodes_of(self, *user_ids: str) -> dict[str, str]:
        """``{user: node}`` from the session registry."""
        with self._database() as db:
            docs: list[dict[str, Any]] = list(db.presence.find({"_id": {"$in": list(user_ids)}}))
        return {d["_id"]: d["node"] for d in docs}

    def drop_database(self) -> None:
        with self._database() as db:
            db.client.drop_database(self.name)

    @contextlib.contextmanager
    def _database(self) -> Iterator[Any]:
        """This cluster's MongoDB database, on a client closed afterwards."""
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(MONGO, serverSelectionTimeoutMS=5000) as client:
            yield client[self.name]


def cluster(tmp: Path, *, nodes: int = 2, routers: int = 1,
            env: dict[str, str] | None = None) -> Iterator[ClusterDeployment]:
    """Start a cluster in ``tmp``; stop it afterwards and check that every part stopped cleanly and
    logged no traceback."""
    import pytest

    if not (KAFKA and MONGO):
        pytest.skip("CHATMQ_KAFKA_BOOTSTRAP / CHATMQ_MONGO_URL are not set (scripts/services.sh up kafka mongo)")
    deployment = ClusterDeployment(tmp, f"e2e{uuid.uuid4().hex[:10]}", nodes=nodes, routers=routers, env=env)
    deployment.cluster.start()
    try:
        yield deployment
    finally:
        alive = {name for name, part in deployment.cluster.parts.items() if part.alive()}
        deployment.cluster.stop()
        codes = {name: part.proc.returncode for name, part in deployment.cluster.parts.items()
                 if name in alive and part.proc is not None}
        deployment.drop_database()
        assert all(code == 0 for code in codes.values()), f"exit codes {codes}:\n{deployment.log()[-6000:]}"
        assert "Traceback" not in deployment.log(), deployment.log()[-10000:]
