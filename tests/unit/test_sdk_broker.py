"""``ChatClient`` against a real MQTT broker: a plain in-process amqtt broker.

amqtt speaks MQTT 3.1.1 only, so the clients here are made with ``mqtt_version=4``; one test
(``test_a_broker_without_mqtt5_gets_mqtt_311``) leaves the default, MQTT 5, to see the SDK fall
back. The chatmq server is played by ``FakeChatServer``, a paho client that reads every
outbox, acks messages and forwards them to the recipient's inbox; a small amqtt auth
plugin accepts only the passwords in ``VALID_TOKENS`` so CONNACK refusals are real.
``BrokerThread`` and ``FakeChatServer`` are reused by the CLI tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session
from paho.mqtt.enums import CallbackAPIVersion

from chatmq.core.ports import free_port
from chatmq.devices.device_client import DeviceClient
from chatmq.devices.sdk import ChatClient, MessageRejectedError, NotAuthorizedError, release_sockets

SERVER_SECRET = "fake-server-secret"
VALID_TOKENS: set[str] = {SERVER_SECRET}


class TokenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt auth plugin: the password must be one of ``VALID_TOKENS``."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return session.password in VALID_TOKENS


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class BrokerThread:
    """An amqtt broker on its own event loop in a thread; ``start``/``stop`` may repeat."""

    def __init__(self, port: int | None = None, ws_port: int | None = None) -> None:
        self.port = port or free_port()
        self.ws_port = ws_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None

    def _config(self) -> dict[str, Any]:
        listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}
        if self.ws_port is not None:
            listeners["ws"] = {"type": "ws", "bind": f"127.0.0.1:{self.ws_port}"}
        return {"listeners": listeners, "plugins": {f"{__name__}.TokenAuthPlugin": {}}}

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        async def boot() -> None:
            try:
                self._broker = Broker(self._config())
                await self._broker.start()
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
            finally:
                started.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(boot())
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        assert started.wait(10), "broker did not start"
        if failure:
            self.stop()
            raise failure[0]

    def stop(self) -> None:
        loop, thread, broker = self._loop, self._thread, self._broker
        if loop is None or thread is None:
            return

        async def teardown() -> None:
            if broker is not None:
                with contextlib.suppress(Exception):
                    await broker.shutdown()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            # amqtt leaves the sockets of sessions that were live at shutdown open: close them
            # (``_transports`` is CPython's selector-loop registry of its transports).
            transports = getattr(asyncio.get_running_loop(), "_transports", {})
            for transport in list(transports.values()):
                if transport is not None and not transport.is_closing():
                    transport.close()
            await asyncio.sleep(0.05)  # let closed transports finish

        asyncio.run_coroutine_threadsafe(teardown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._loop = self._thread = self._broker = None


class FakeChatServer:
    """Plays chatmq's server: acks and forwards messages, records receipts and raw payloads."""

    def __init__(self, port: int) -> None:
        self.outbox: list[tuple[str, bytes]] = []  # (user id, payload)
        self.receipts: list[tuple[str, dict[str, Any]]] = []  # (user id, receipt envelope)
        self.counter = 0
        self.silent = False  # when True, messages get neither ack nor forwarding
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fake-server")
        self.client.username_pw_set("server", SERVER_SECRET)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "fake server could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe("users/+/outbox", qos=1)

    def deliver(self, user_id: str, envelope: dict[str, Any]) -> None:
        self.client.publish(f"users/{user_id}/inbox", orjson.dumps(envelope), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        sender = msg.topic.split("/")[1]
        with self._lock:
            self.outbox.append((sender, bytes(msg.payload)))
        try:
            envelope = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            self.deliver(sender, {"type": "error", "client_id": None, "code": "invalid_envelope",
                                  "reason": "payload is not valid JSON"})
            return
        if envelope.get("type") == "receipt":
            with self._lock:
                self.receipts.append((sender, envelope))
            return
        if self.silent:
            return
        if envelope.get("to") == "u_nobody":
            self.deliver(sender, {"type": "error", "client_id": envelope["id"], "code": "unknown_recipient",
                                  "reason": "no such user"})
            return
        with self._lock:
            self.counter += 1
            server_id = f"s{self.counter:04d}"
        ts = int(time.time() * 1000)
        self.deliver(sender, {"type": "ack", "client_id": envelope["id"], "id": server_id, "ts": ts})
        if envelope.get("to"):
            self.deliver(envelope["to"], {
                "type": "message", "id": server_id, "client_id": envelope["id"], "from": sender,
                "to": envelope["to"], "group": None, "body": envelope["body"], "ts": ts,
            })

    def receipts_of(self, user_id: str, status: str) -> list[str]:
        with self._lock:
            return [i for uid, r in self.receipts if uid == user_id and r["status"] == status for i in r["ids"]]




def user(broker: BrokerThread, user_id: str, token: str, **kwargs: Any) -> ChatClient:
    VALID_TOKENS.add(token)
    client = ChatClient("http://chat.invalid", "127.0.0.1", broker.port, **{"mqtt_version": 4, **kwargs})
    client.set_tokens(user_id, token)
    return client


def test_a_broker_without_mqtt5_gets_mqtt_311(broker: BrokerThread, server: FakeChatServer) -> None:
    with user(broker, "u_old", "tok-old5", mqtt_version=5) as old, user(broker, "u_peer", "tok-peer") as peer:
        old.connect(timeout=4)  # amqtt answers no MQTT 5 CONNECT: after half the timeout, 3.1.1
        assert old.connected
        assert old.mqtt_version == 4
        peer.connect(timeout=5)
        cid = old.send("u_peer", {"text": "over 3.1.1"})
        ack = old.wait_ack(cid, 5)
        [got] = peer.wait_messages(1, 5)
        assert (got["id"], got["body"]) == (ack["id"], {"text": "over 3.1.1"})


def test_send_ack_receive_and_receipts(broker: BrokerThread, server: FakeChatServer) -> None:
    with user(broker, "u_alice", "tok-a") as alice, user(broker, "u_bob", "tok-b") as bob:
        alice.connect(timeout=5)
        bob.connect(timeout=5)
        assert alice.connected
        assert bob.connected
        cid = alice.send("u_bob", {"text": "hello bob"})
        ack = alice.wait_ack(cid, 5)
        [got] = bob.wait_messages(1, 5)
        assert got["id"] == ack["id"]
        assert got["from"] == "u_alice"
        assert got["body"] == {"text": "hello bob"}
        assert wait_until(lambda: server.receipts_of("u_bob", "delivered")) == [ack["id"]]
        bob.mark_read([got["id"]])
        assert wait_until(lambda: server.receipts_of("u_bob", "read")) == [ack["id"]]


def test_replayed_message_is_handed_once_and_receipted_twice(
    broker: BrokerThread, server: FakeChatServer
) -> None:
    with user(broker, "u_bob", "tok-b") as bob:
        handed: list[dict[str, Any]] = []
        bob.on_message = handed.append
        bob.connect(timeout=5)
        envelope = {"type": "message", "id": "s9", "client_id": "c9", "from": "u_alice", "to": "u_bob",
                    "group": None, "body": {"text": "again"}, "ts": 1}
        server.deliver("u_bob", envelope)
        server.deliver("u_bob", envelope)
        wait_until(lambda: len(server.receipts_of("u_bob", "delivered")) == 2)
        assert handed == [envelope]
        assert bob.messages == [envelope]


def test_error_envelope_and_raw_publish(broker: BrokerThread, server: FakeChatServer) -> None:
    with user(broker, "u_alice", "tok-a") as alice:
        alice.connect(timeout=5)
        cid = alice.send("u_nobody", "hi")
        with pytest.raises(Exception, match="unknown_recipient"):
            alice.wait_ack(cid, 5)
        alice.send_raw(b"not json")
        wait_until(lambda: any(e["code"] == "invalid_envelope" for e in alice.errors))
        assert ("u_alice", b"not json") in server.outbox


def test_refused_credentials_raise_not_authorized(broker: BrokerThread) -> None:
    client = ChatClient("http://chat.invalid", "127.0.0.1", broker.port, mqtt_version=4)
    client.set_tokens("u_alice", "forged-token")
    with client, pytest.raises(NotAuthorizedError, match=r"(?i)not authorized"):
        client.connect(timeout=5)
    assert not client.connected


def test_reconnect_refreshes_the_token_and_resubscribes(broker: BrokerThread, server: FakeChatServer) -> None:
    refreshes: list[str] = []

    def rest(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/auth/refresh"
        refreshes.append(orjson.loads(request.content)["refresh_token"])
        return httpx.Response(200, json={"access_token": "tok-new", "refresh_token": "r2", "expires_in": 900,
                                         "user_id": "u_bob", "token_type": "bearer"})

    VALID_TOKENS.add("tok-old")
    bob = ChatClient("http://chat.invalid", "127.0.0.1", broker.port, http_transport=httpx.MockTransport(rest),
                     mqtt_version=4)
    bob.set_tokens("u_bob", "tok-old", "r1")
    changes: list[bool] = []
    bob.on_connection_change = changes.append
    with bob:
        bob.connect(timeout=5)
        VALID_TOKENS.discard("tok-old")  # the old token is no longer accepted ...
        VALID_TOKENS.add("tok-new")
        broker.stop()  # ... and the connection drops
        wait_until(lambda: changes == [True, False])
        broker.start()
        wait_until(lambda: changes == [True, False, True], timeout=20)
        assert refreshes == ["r1"]
        assert bob.tokens is not None
        assert bob.tokens.access_token == "tok-new"
        wait_until(lambda: server.client.is_connected(), timeout=10)
        envelope = {"type": "message", "id": "s1", "client_id": "c1", "from": "u_alice", "to": "u_bob",
                    "group": None, "body": {"text": "after reconnect"}, "ts": 1}

        def delivered() -> bool:
            server.deliver("u_bob", envelope)  # repeated until the new subscription is there
            return bool(bob.messages)

        wait_until(delivered, timeout=10)
        assert bob.messages == [envelope]


def test_websocket_transport() -> None:
    b = BrokerThread(ws_port=free_port())
    b.start()
    try:
        VALID_TOKENS.add("tok-ws")
        client = ChatClient("http://chat.invalid", "127.0.0.1", b.ws_port or 0, transport="websockets", mqtt_version=4)
        client.set_tokens("u_ws", "tok-ws")
        with client:
            client.connect(timeout=5)
            assert client.connected
        assert not client.connected
    finally:
        b.stop()


def test_connect_again_after_disconnect(broker: BrokerThread, server: FakeChatServer) -> None:
    changes: list[bool] = []
    with user(broker, "u_alice", "tok-a") as alice:
        alice.on_connection_change = changes.append
        alice.connect(timeout=5)
        alice.connect(timeout=5)  # no-op while connected
        alice.disconnect()
        alice.disconnect()  # harmless twice
        alice.connect(timeout=5)
        cid = alice.send("u_bob", "still here")
        assert alice.wait_ack(cid, 5)["client_id"] == cid
    assert changes == [True, False, True, False]


def test_unacked_messages_are_sent_again_after_a_reconnect(broker: BrokerThread, server: FakeChatServer) -> None:
    with user(broker, "u_alice", "tok-a") as alice:
        changes: list[bool] = []
        alice.on_connection_change = changes.append
        alice.connect(timeout=5)
        server.silent = True  # the server takes the message but its ack never comes
        lost = alice.send("u_bob", "first try")
        wait_until(lambda: any(b"first try" in p for _u, p in server.outbox))
        assert [e["id"] for e in alice.unacked()] == [lost]
        server.silent = False
        # the fake server (reconnecting after 1-2 s) must read outboxes again before alice is back
        alice.mqtt.reconnect_delay_set(min_delay=5, max_delay=5)
        server.subscribed.clear()
        broker.stop()
        wait_until(lambda: changes == [True, False])
        broker.start()
        assert server.subscribed.wait(10), "fake server did not subscribe again"
        wait_until(lambda: changes == [True, False, True], timeout=20)
        ack = alice.wait_ack(lost, 10)  # sent again, with the same client id
        assert ack["client_id"] == lost
        assert alice.unacked() == []
        copies = [orjson.loads(p) for _u, p in server.outbox if b"first try" in p]
        assert len(copies) >= 2
        assert {c["id"] for c in copies} == {lost}


def test_a_read_receipt_never_goes_before_its_delivered(broker: BrokerThread, server: FakeChatServer) -> None:
    """An app that marks a message read as it shows it (in ``on_message``) still confirms delivery first."""
    with user(broker, "u_bob", "tok-b") as bob:
        bob.on_message = lambda envelope: bob.mark_read([str(envelope["id"])])
        bob.connect(timeout=5)
        for n in (1, 2):
            server.deliver("u_bob", {"type": "message", "id": f"s{n}", "client_id": f"c{n}", "from": "u_alice",
                                     "to": "u_bob", "group": None, "body": {"text": "hi"}, "ts": 1})
        wait_until(lambda: len(server.receipts_of("u_bob", "read")) == 2)
        bob.flush(5)
        seen = [(r["status"], r["ids"]) for uid, r in server.receipts if uid == "u_bob"]
        assert seen == [("delivered", ["s1"]), ("read", ["s1"]), ("delivered", ["s2"]), ("read", ["s2"])]


def test_a_message_over_the_payload_limit_is_refused_as_too_large(
    broker: BrokerThread, server: FakeChatServer
) -> None:
    """The server would close the connection unread; the client answers with the server's error instead."""
    with user(broker, "u_alice", "tok-a") as alice:
        alice.connect(timeout=5)
        cid = alice.send("u_bob", "x" * 70_000)
        with pytest.raises(MessageRejectedError) as refused:
            alice.wait_ack(cid, 5)
        assert refused.value.code == "too_large"
        assert re.fullmatch(r"envelope of \d+ bytes exceeds the limit of 65536", refused.value.reason)
        assert alice.unacked() == []
        ok = alice.send("u_bob", "x" * 60_000)  # within the limit: sent as usual
        alice.wait_ack(ok, 5)
        assert [orjson.loads(p)["id"] for _, p in server.outbox] == [ok]


def test_a_device_falls_back_to_mqtt_311_on_a_broker_without_mqtt5(broker: BrokerThread) -> None:
    VALID_TOKENS.add("dev-secret")
    got: list[bytes] = []
    reader = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="telemetry-reader")
    reader.username_pw_set("reader", SERVER_SECRET)
    reader.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    reader.connect("127.0.0.1", broker.port)
    reader.loop_start()
    try:
        reader.subscribe("devices/d1/telemetry", 1)
        time.sleep(0.3)
        with DeviceClient("127.0.0.1", broker.port, "d1", "dev-secret") as dev:  # MQTT 5 by default
            dev.connect(timeout=4)  # amqtt answers no MQTT 5 CONNECT: after half the timeout, 3.1.1
            assert (dev.connected, dev.mqtt_version) == (True, 4)
            dev.publish({"temp": 20.5}, timeout=5)
        assert wait_until(lambda: got) == [b'{"temp":20.5}']
    finally:
        reader.disconnect()
        reader.loop_stop()
        release_sockets(reader)
