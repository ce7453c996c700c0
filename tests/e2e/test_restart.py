"""Pending messages survive a restart of the server process; SIGINT and SIGTERM stop it cleanly."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Peer, ServerProcess, read_store, serve

TIMEOUT = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The embedded server only: these tests are about its process (the cluster's: tests/cluster)."""
    yield from serve(tmp_path_factory.mktemp("chatmq"))


def poll(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def client(server: ServerProcess, name: str, register: bool = True) -> Peer:
    c = Peer(server.api_url, server.host, server.mqtt_port)
    if register:
        c.register(name, "correct horse battery")
    c.login(name, "correct horse battery")
    return c


def test_pending_messages_survive_a_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.start()
    alice, bob = client(server, "alice"), client(server, "bob")
    try:
        alice.connect()
        sent = [alice.send(bob.uid, {"n": i}) for i in range(25)]
        for cid in sent:
            alice.wait_ack(cid, TIMEOUT)
        alice.close()
        bob.close()
        assert server.stop(signal.SIGINT) == 0
        assert "stopped" in server.log()

        server.start()
        bob = client(server, "bob", register=False)
        bob.connect()
        got = bob.wait_messages(25, TIMEOUT)
        assert [m["body"] for m in got] == [{"n": i} for i in range(25)]
    finally:
        bob.close()
        alice.close()
        assert server.stop(signal.SIGTERM) == 0


def test_listener_lines_are_logged(server: ServerProcess) -> None:
    log = server.log()
    assert f"mqtt://{server.host}:{server.mqtt_port}" in log
    assert f"ws://{server.host}:{server.ws_port}/mqtt" in log
    assert f"http://{server.host}:{server.http_port}/api/v1" in log


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from chatmq.core.ports import free_port

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for flag in ("--http-port", "--mqtt-port"):
            args = {"--http-port": str(free_port()), "--mqtt-port": str(free_port()), "--ws-port": str(free_port())}
            args[flag] = str(port)
            r = subprocess.run([sys.executable, "-m", "chatmq.run.cli", "serve", "--data-dir", str(tmp_path / "d"),
                                *[x for kv in args.items() for x in kv]],
                               capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 1
            assert f"{port}" in r.stderr
            assert "in use" in r.stderr
            assert "Traceback" not in r.stderr


def test_clients_reconnect_by_themselves_after_a_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.start()
    alice, bob = client(server, "alice"), client(server, "bob")
    changes: list[bool] = []
    try:
        alice.connect()
        bob.on_connection_change = changes.append
        bob.connect()
        assert server.stop(signal.SIGTERM) == 0
        poll(lambda: not bob.connected, TIMEOUT)
        server.start()
        # neither client is told to connect again: paho's backoff brings both back
        poll(lambda: bob.connected and alice.connected, 40)
        sent = alice.send(bob.uid, "after the restart")
        alice.wait_ack(sent, TIMEOUT)
        assert [m["body"] for m in bob.wait_messages(1, TIMEOUT)] == [{"text": "after the restart"}]
        assert changes[:3] == [True, False, True]
    finally:
        alice.close()
        bob.close()
        assert server.stop(signal.SIGTERM) == 0


def test_a_device_not_seen_for_device_expiry_days_is_forgotten_with_what_it_owed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.start()
    alice = client(server, "alice")
    tab = client(server, "bob")
    phone = Peer(server.api_url, server.host, server.mqtt_port, client_id="bob-phone")
    try:
        tab.client_id = "bob-tab"
        tab.connect()  # a browser tab that is closed and never comes back
        tab.close()
        time.sleep(8)
        phone.login("bob", "correct horse battery")
        phone.connect()
        phone_seen = time.time()
        alice.connect()
        sid = alice.wait_ack(alice.send(phone.uid, "hi"), TIMEOUT)["id"]
        assert [m["id"] for m in phone.wait_messages(1, TIMEOUT)] == [sid]
        phone.flush()  # its delivered receipt: the tab still owes it
        poll(lambda: read_store(server, lambda s: s.device_has(phone.uid, "bob-phone", [sid])) == {sid}, TIMEOUT)
        phone.close()
        alice.close()
        assert server.stop() == 0

        # the storage part's housekeeping runs on start: expire what is older than the phone's connect + 4 s
        server.env["CHATMQ_DEVICE_EXPIRY_DAYS"] = str((time.time() - phone_seen + 4) / 86_400)
        server.start()
        poll(lambda: [s.client_id for s in read_store(server, lambda s: s.sessions_of([phone.uid])).get(
            phone.uid, [])] == ["bob-phone"], TIMEOUT)
        # the message the phone had no longer waits for the tab
        assert read_store(server, lambda s: s.count_pending(phone.uid)) == 0
    finally:
        for c in (alice, tab, phone):
            c.close()
        assert server.stop() == 0
    assert "Traceback" not in server.log()
