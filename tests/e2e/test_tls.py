"""TLS end to end against ``chatmq serve``: chat over MQTT over TLS, secure WebSocket and HTTPS; clients
that do not trust the CA fail with a clear error; ``tls_only``; devices by client certificate; the
certificate reloaded on SIGHUP with connections kept; bad files stop the start with a clear message;
the command-line client with ``--tls``/``--ca-file``."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatmq.core.ports import free_port
from chatmq.devices.device_client import DeviceClient
from chatmq.devices.sdk import ChatClient, MessageRejectedError, NotAuthorizedError, TlsError
from tests.e2e.harness import TlsServer, start_tls, stop_tls, tls_peer
from tests.fakes.tls import CertFiles, TestCA

pytestmark = pytest.mark.e2e

TIMEOUT = 15.0
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    server = start_tls(tmp_path_factory.mktemp("tls"), client_ca=True)
    yield server
    stop_tls(server)


@pytest.fixture
def closing() -> Iterator[list[ChatClient | DeviceClient]]:
    clients: list[ChatClient | DeviceClient] = []
    yield clients
    for client in clients:
        client.close()


def served_certificate(port: int, ca: TestCA) -> bytes:
    """The DER certificate a new TLS connection to ``port`` is shown."""
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_chat_over_mqtts_and_wss_with_rest_over_https(tls_server: TlsServer,
                                                      closing: list[ChatClient | DeviceClient]) -> None:
    alice = tls_server.peer("tcp")
    bob = tls_server.peer("websockets")
    closing += [alice, bob]
    alice.wait_ack(alice.send(bob.uid, "over mqtts"), TIMEOUT)
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "over mqtts"}
    bob.wait_ack(bob.send(alice.uid, "over wss"), TIMEOUT)
    assert alice.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "over wss"}
    # the plain listeners are still there beside the TLS ones
    plain = tls_server.process
    assert httpx.get(f"http://127.0.0.1:{plain.http_port}/healthz", timeout=5).status_code == 200
    assert not refused(plain.mqtt_port)
    assert not refused(plain.ws_port)


def test_clients_that_do_not_trust_the_ca_fail_with_a_clear_error(tls_server: TlsServer,
                                                                  closing: list[ChatClient | DeviceClient]) -> None:
    rest = ChatClient(tls_server.https_url, "127.0.0.1", tls_server.mqtts_port, tls=True)  # the system's CAs only
    closing.append(rest)
    with pytest.raises(TlsError, match=r"TLS handshake with https://127.0.0.1:\d+/api/v1 failed: .*certificate"):
        rest.register(f"x{time.monotonic_ns()}", PASSWORD)
    # REST over plain HTTP works, but MQTT over TLS does not trust the server
    mqtt_only = ChatClient(f"http://127.0.0.1:{tls_server.process.http_port}", "127.0.0.1", tls_server.mqtts_port,
                           tls=True)
    closing.append(mqtt_only)
    name = f"x{time.monotonic_ns()}"
    mqtt_only.register(name, PASSWORD)
    mqtt_only.login(name, PASSWORD)
    with pytest.raises(TlsError, match=r"MQTT broker 127.0.0.1:\d+ failed: .*certificate.*ca_file"):
        mqtt_only.connect(timeout=5)


def test_a_device_connects_with_its_client_certificate_instead_of_a_secret(
        tls_server: TlsServer, closing: list[ChatClient | DeviceClient]) -> None:
    owner = tls_server.peer()
    closing.append(owner)
    made = owner.create_device("cert-sensor")
    device_id = str(made["device_id"])
    cert = tls_server.ca.client(device_id)

    def device(cn_files: CertFiles, username: str) -> DeviceClient:
        client = DeviceClient("127.0.0.1", tls_server.mqtts_port, username, None, tls=True,
                              ca_file=tls_server.ca.ca_file, cert_file=cn_files.cert, key_file=cn_files.key)
        closing.append(client)
        return client

    dev = device(cert, device_id)
    dev.connect(timeout=TIMEOUT)
    with pytest.raises(MessageRejectedError):  # refused in its PUBACK (MQTT 5) and answered on its inbox:
        dev.publish({"temp": "warm"}, timeout=TIMEOUT)  # the session is the device's
    [error] = dev.wait_errors(1, TIMEOUT)
    assert error["code"] == "invalid_envelope"
    dev.close()

    with pytest.raises(NotAuthorizedError):  # a certificate naming no known device
        device(tls_server.ca.client("d00000000deadbeef"), "d00000000deadbeef").connect(timeout=TIMEOUT)
    with pytest.raises(NotAuthorizedError):  # users still log in with tokens, not certificates
        device(tls_server.ca.client(owner.uid), owner.uid).connect(timeout=TIMEOUT)
    with pytest.raises(NotAuthorizedError):  # a certificate for one device does not open another
        device(cert, "d00000000deadbeef").connect(timeout=TIMEOUT)
    owner.delete_device(device_id)
    with pytest.raises(NotAuthorizedError):  # a revoked device's certificate no longer works
        device(cert, device_id).connect(timeout=TIMEOUT)


def test_a_client_certificate_from_another_ca_is_refused_at_the_handshake(tls_server: TlsServer,
                                                                         tmp_path: Path) -> None:
    def handshake(client: CertFiles) -> None:
        context = ssl.create_default_context(cafile=str(tls_server.ca.ca_file))
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # the server's verdict inside the handshake (1.3: after)
        context.load_cert_chain(client.cert, client.key)
        with socket.create_connection(("127.0.0.1", tls_server.mqtts_port), timeout=5) as raw:
            context.wrap_socket(raw, server_hostname="127.0.0.1").close()

    handshake(tls_server.ca.client("d0000000000000001"))  # from the trusted CA: the handshake completes
    with pytest.raises(ssl.SSLError):
        handshake(TestCA(tmp_path / "stranger").client("d0000000000000001"))


def test_tls_only_closes_the_plain_ports(tmp_path: Path, closing: list[ChatClient | DeviceClient]) -> None:
    server = start_tls(tmp_path, only=True)
    try:
        plain = server.process
        assert refused(plain.mqtt_port)
        assert refused(plain.ws_port)
        assert refused(plain.http_port)
        alice, bob = server.peer("tcp"), server.peer("websockets")
        closing += [alice, bob]
        alice.wait_ack(alice.send(bob.uid, "tls only"), TIMEOUT)
        assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "tls only"}
    finally:
        for client in closing:
            client.close()
        stop_tls(server)


def test_sighup_reloads_the_certificate_and_keeps_open_connections(tmp_path: Path,
                                                                   closing: list[ChatClient | DeviceClient]) -> None:
    ca = TestCA(tmp_path / "ca")
    first, second = ca.server(), ca.server()
    live = CertFiles(tmp_path / "live.crt", tmp_path / "live.key")
    live.cert.write_bytes(first.cert.read_bytes())
    live.key.write_bytes(first.key.read_bytes())
    server = start_tls(tmp_path, live, ca=ca)
    try:
        alice, bob = server.peer("tcp"), server.peer("websockets")
        closing += [alice, bob]
        drops: list[bool] = []
        alice.on_connection_change = bob.on_connection_change = drops.append
        old = ssl.PEM_cert_to_DER_cert(first.cert.read_text())
        new = ssl.PEM_cert_to_DER_cert(second.cert.read_text())
        assert served_certificate(server.mqtts_port, ca) == old

        live.cert.write_bytes(second.cert.read_bytes())
        live.key.write_bytes(second.key.read_bytes())
        assert server.process.proc is not None
        server.process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while "TLS certificates reloaded" not in server.process.log():
            assert time.monotonic() < deadline, server.process.log()[-3000:]
            time.sleep(0.05)

        for port in (server.mqtts_port, server.wss_port, server.https_port):
            assert served_certificate(port, ca) == new
        alice.wait_ack(alice.send(bob.uid, "after the reload"), TIMEOUT)  # the connections made before
        assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "after the reload"}
        bob.wait_ack(bob.send(alice.uid, "still here"), TIMEOUT)
        assert alice.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "still here"}
        assert drops == []  # nobody was disconnected
    finally:
        for client in closing:
            client.close()
        stop_tls(server)


@pytest.mark.parametrize("fault", ["missing", "mismatched"])
def test_a_bad_certificate_file_stops_the_start_with_a_clear_message(tmp_path: Path, fault: str) -> None:
    ca = TestCA(tmp_path / "ca")
    one, other = ca.server(), ca.server()
    cert, key, setting = ((tmp_path / "gone.crt", one.key, "tls_cert") if fault == "missing"
                          else (one.cert, other.key, "tls_key"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CHATMQ_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "chatmq.run.cli", "serve", "--data-dir", str(tmp_path / "data"),
         "--mqtt-port", str(free_port()), "--ws-port", str(free_port()), "--http-port", str(free_port()),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert f"chatmq: {setting} (CHATMQ_{setting.upper()})" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_command_line_client_over_https_and_mqtts(tls_server: TlsServer, tmp_path: Path,
                                                      closing: list[ChatClient | DeviceClient]) -> None:
    listener = tls_server.peer()
    closing.append(listener)
    env = {**os.environ, "CHATMQ_HOME": str(tmp_path / "home")}
    env.pop("CHATMQ_CA_FILE", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chatmq.run.cli", "client", *args,
                               "--server", tls_server.https_url], env=env, capture_output=True, text=True,
                              timeout=60, check=False)

    ca = ["--ca-file", str(tls_server.ca.ca_file)]
    name = f"c{time.monotonic_ns()}"
    assert cli("register", name, "--password", PASSWORD, *ca).returncode == 0
    r = cli("login", name, "--password", PASSWORD, *ca)
    assert r.returncode == 0, r.stderr
    username = str(listener.me()["username"])
    sent = cli("send", username, "hello over tls", "--tls", "--mqtt-port", str(tls_server.mqtts_port), *ca)
    assert sent.returncode == 0, sent.stderr
    assert listener.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "hello over tls"}

    untrusted = cli("send", username, "nope", "--tls", "--mqtt-port", str(tls_server.mqtts_port))
    assert untrusted.returncode == 1
    assert untrusted.stderr.startswith("error: TLS handshake with https://"), untrusted.stderr
    assert "Traceback" not in untrusted.stderr


def test_nginx_terminates_tls_in_front_of_plain_listeners(tls_server: TlsServer, tmp_path: Path,
                                                          closing: list[ChatClient | DeviceClient]) -> None:
    """The cluster's nginx configuration, with TLS, in front of a server's plain ports (no Kafka needed)."""
    from chatmq.core.errors import ChatMQError
    from chatmq.core.settings import Settings
    from chatmq.run.cluster import CLUSTER_CONFIG, LocalCluster, PartProcess

    try:
        nginx = LocalCluster._nginx_binary()
    except ChatMQError as exc:
        pytest.skip(str(exc))
    first, second = tls_server.ca.server(), tls_server.ca.server()
    files = CertFiles(tmp_path / "live.crt", tmp_path / "live.key")
    files.cert.write_bytes(first.cert.read_bytes())
    files.key.write_bytes(first.key.read_bytes())
    settings = Settings.load(CLUSTER_CONFIG, kafka_bootstrap="unused:1", mongo_url="mongodb://unused",
                             jwt_secret="j" * 40, data_dir=tmp_path, tls_cert=files.cert, tls_key=files.key)
    front = LocalCluster(settings, data_dir=tmp_path, mqtt_port=free_port(), ws_port=free_port(),
                         http_port=free_port(), mqtts_port=free_port(), wss_port=free_port(), https_port=free_port())
    plain, log = tls_server.process, tmp_path / "unused.log"
    front.parts = {"n1": PartProcess("n1", [], log, {}, {"mqtt": plain.mqtt_port, "ws": plain.ws_port}),
                   "api-1": PartProcess("api-1", [], log, {}, {"http": plain.http_port})}
    (tmp_path / "logs").mkdir()
    front._start_nginx(nginx, time.monotonic() + 30)
    try:
        https = f"https://127.0.0.1:{front.https_port}"
        alice = tls_peer(https, front.mqtts_port, "tcp", tls_server.ca)
        bob = tls_peer(https, front.wss_port, "websockets", tls_server.ca)
        closing += [alice, bob]
        alice.wait_ack(alice.send(bob.uid, "through nginx"), TIMEOUT)
        assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "through nginx"}
        served = ssl.PEM_cert_to_DER_cert(first.cert.read_text())
        for port in (front.mqtts_port, front.wss_port, front.https_port):
            assert served_certificate(port, tls_server.ca) == served

        files.cert.write_bytes(second.cert.read_bytes())  # renewed: SIGHUP has nginx load the new files
        files.key.write_bytes(second.key.read_bytes())
        front.reload()
        renewed = ssl.PEM_cert_to_DER_cert(second.cert.read_text())
        deadline = time.monotonic() + TIMEOUT
        while served_certificate(front.https_port, tls_server.ca) != renewed:
            assert time.monotonic() < deadline, "nginx still serves the old certificate"
            time.sleep(0.1)
        for port in (front.mqtts_port, front.wss_port):
            assert served_certificate(port, tls_server.ca) == renewed
        alice.wait_ack(alice.send(bob.uid, "after nginx reloaded"), TIMEOUT)  # their connections stay up
        assert bob.wait_messages(2, TIMEOUT)[1]["body"] == {"text": "after nginx reloaded"}
    finally:
        for client in closing:
            client.close()
        front.stop()
