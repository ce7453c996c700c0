"""Unit tests of ``chatmq.devices.sdk`` without a server.

MQTT traffic is simulated by feeding ``paho.mqtt.client.MQTTMessage`` objects to the
handler paho would call and by replacing the paho client's ``publish`` with a recorder;
REST calls go to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import jwt
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.core.envelopes import MessageIn, ReceiptIn, parse_outbox
from chatmq.core.errors import ChatMQError
from chatmq.devices.sdk import (
    AckTimeoutError,
    ApiError,
    AuthenticationError,
    ChatClient,
    ChatClientError,
    ChatTimeoutError,
    ConnectError,
    MessageRejectedError,
    NotAuthorizedError,
    NotLoggedInError,
    ServerUnreachableError,
    Tokens,
    build_message,
    build_receipt,
    token_expiry,
)

KEY = "k" * 40
UID = "u_alice"


def make_token(exp_in: float, sub: str = UID) -> str:
    """A signed JWT access token expiring ``exp_in`` seconds from now."""
    return jwt.encode({"sub": sub, "typ": "access", "exp": int(time.time() + exp_in)}, KEY, algorithm="HS256")


class Recorder:
    """Stands in for ``paho.mqtt.client.Client.publish``; keeps ``(topic, envelope, qos)``."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.calls: list[tuple[str, Any, int]] = []
        self.log = log

    def __call__(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        self.calls.append((topic, orjson.loads(payload), qos))
        if self.log is not None:
            self.log.append("publish")
        info = mqtt.MQTTMessageInfo(len(self.calls))
        info.rc = mqtt.MQTT_ERR_SUCCESS
        info._set_as_published()
        return info

    @property
    def envelopes(self) -> list[Any]:
        return [envelope for _, envelope, _ in self.calls]


def inbox(client: ChatClient, payload: bytes | dict[str, Any]) -> None:
    """Deliver ``payload`` to ``client`` the way paho's network thread would."""
    msg = mqtt.MQTTMessage(mid=1, topic=f"users/{UID}/inbox".encode())
    msg.payload = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    msg.qos = 1
    handler(client.mqtt.on_message)(client.mqtt, None, msg)


def message(server_id: str, text: str = "hi", sender: str = "u_bob") -> dict[str, Any]:
    return {"type": "message", "id": server_id, "client_id": "c" + server_id, "from": sender, "to": UID,
            "group": None, "body": {"text": text}, "ts": 1_700_000_000_000}


@pytest.fixture
def client() -> Iterator[ChatClient]:
    c = ChatClient("http://chat.test", "127.0.0.1", 1883)
    c.set_tokens(UID, make_token(900), "refresh-1")
    yield c
    c.close()


@pytest.fixture
def recorder(client: ChatClient, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(client.mqtt, "publish", rec)
    client.connected = True  # messages are published only while connected (else kept for the next connect)
    return rec


# ------------------------------------------------------------------ envelopes


def test_build_message_direct_is_a_valid_outbox_envelope() -> None:
    envelope = build_message({"text": "hi"}, to="u_bob")
    assert envelope["type"] == "message"
    assert envelope["to"] == "u_bob"
    assert "group" not in envelope
    assert len(envelope["id"]) == 32
    assert int(envelope["id"], 16) >= 0
    parsed = parse_outbox(orjson.dumps(envelope), 65536)
    assert isinstance(parsed, MessageIn)
    assert parsed.to == "u_bob"
    assert orjson.loads(bytes(parsed.body)) == {"text": "hi"}


def test_build_message_group_keeps_the_given_client_id() -> None:
    envelope = build_message({"n": 1}, group="g1", client_id="abc")
    assert envelope == {"type": "message", "id": "abc", "group": "g1", "body": {"n": 1}}
    assert isinstance(parse_outbox(orjson.dumps(envelope), 65536), MessageIn)


@pytest.mark.parametrize(("to", "group"), [(None, None), ("u_bob", "g1")])
def test_build_message_needs_exactly_one_target(to: str | None, group: str | None) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build_message({}, to=to, group=group)


def test_build_receipt() -> None:
    envelope = build_receipt("read", ["s1", "s2"])
    parsed = parse_outbox(orjson.dumps(envelope), 65536)
    assert isinstance(parsed, ReceiptIn)
    assert parsed.status == "read"
    assert parsed.ids == ("s1", "s2")
    with pytest.raises(ValueError, match="at least one"):
        build_receipt("delivered", [])


def test_new_client_ids_are_unique() -> None:
    assert len({build_message({}, to="x")["id"] for _ in range(100)}) == 100


# ------------------------------------------------------------------ publishing


def test_send_publishes_qos1_to_own_outbox_and_returns_the_client_id(
    client: ChatClient, recorder: Recorder
) -> None:
    cid = client.send("u_bob", {"text": "hello"})
    topic, envelope, qos = recorder.calls[0]
    assert (topic, qos) == (f"users/{UID}/outbox", 1)
    assert envelope == {"type": "message", "id": cid, "to": "u_bob", "body": {"text": "hello"}}


def test_send_string_body_and_resend_with_same_id(client: ChatClient, recorder: Recorder) -> None:
    cid = client.send("u_bob", "plain")
    again = client.send("u_bob", "plain", client_id=cid)
    assert again == cid
    assert recorder.envelopes[0] == recorder.envelopes[1]
    assert recorder.envelopes[0]["body"] == {"text": "plain"}


def test_send_group(client: ChatClient, recorder: Recorder) -> None:
    cid = client.send_group("g1", {"text": "all"})
    assert recorder.envelopes == [{"type": "message", "id": cid, "group": "g1", "body": {"text": "all"}}]


def test_send_raw_publishes_bytes_unchanged(client: ChatClient, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bytes, int]] = []

    def publish(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        seen.append((topic, payload, qos))

    monkeypatch.setattr(client.mqtt, "publish", publish)
    client.send_raw(b"{not json")
    assert seen == [(f"users/{UID}/outbox", b"{not json", 1)]


def test_mark_read_publishes_a_read_receipt_and_nothing_for_no_ids(
    client: ChatClient, recorder: Recorder
) -> None:
    client.mark_read([])
    client.mark_read(["s1", "s2"])
    assert recorder.envelopes == [{"type": "receipt", "status": "read", "ids": ["s1", "s2"]}]


def test_a_message_sent_while_disconnected_waits_for_the_connect(client: ChatClient, recorder: Recorder) -> None:
    client.connected = False
    cid = client.send("u_bob", "later")
    assert recorder.calls == []
    assert [e["id"] for e in client.unacked()] == [cid]
    client.handle_envelope({"type": "ack", "client_id": cid, "id": "s1", "ts": 1})
    assert client.unacked() == []


def test_send_before_login_raises() -> None:
    with ChatClient("http://chat.test", "127.0.0.1", 1883) as c:
        with pytest.raises(NotLoggedInError):
            c.send("u_bob", "hi")
        with pytest.raises(NotLoggedInError):
            c.connect(timeout=1)


def test_errors_share_the_chatmq_root() -> None:
    assert issubclass(ChatClientError, ChatMQError)
    assert issubclass(NotAuthorizedError, ConnectError)
    assert issubclass(AckTimeoutError, TimeoutError)
    assert ServerUnreachableError.retriable
    assert not NotAuthorizedError.retriable


# ------------------------------------------------------------------ inbox: dedupe and receipts


def test_message_actions_and_replies_are_kept_until_answered_like_messages(
    client: ChatClient, recorder: Recorder
) -> None:
    cids = [client.send("u_bob", "re", reply_to="s1"), client.edit("s1", "fixed"), client.delete("s1", "me"),
            client.react("s1", "👍"), client.react("s1", "👍", remove=True)]
    assert recorder.envelopes == [
        {"type": "message", "id": cids[0], "to": "u_bob", "body": {"text": "re"}, "reply_to": "s1"},
        {"type": "edit", "id": cids[1], "target": "s1", "body": {"text": "fixed"}},
        {"type": "delete", "id": cids[2], "target": "s1", "for": "me"},
        {"type": "reaction", "id": cids[3], "target": "s1", "emoji": "👍", "remove": False},
        {"type": "reaction", "id": cids[4], "target": "s1", "emoji": "👍", "remove": True},
    ]
    assert [e["id"] for e in client.unacked()] == cids  # resent on reconnect until acked
    with pytest.raises(ValueError, match="scope"):
        client.delete("s1", "them")  # type: ignore[arg-type]


def test_message_actions_are_handed_once_and_acknowledged_per_delivery(client: ChatClient, recorder: Recorder) -> None:
    got: list[dict[str, Any]] = []
    client.on_action = got.append
    edit = {"type": "edit", "id": "s7", "client_id": "c", "from": "u_bob", "to": UID, "group": None, "target": "s1",
            "body": {"text": "x"}, "ts": 1}
    inbox(client, edit)
    inbox(client, edit)  # replayed
    assert (got, client.actions, client.messages) == ([edit], [edit], [])
    assert recorder.envelopes == [{"type": "receipt", "status": "delivered", "ids": ["s7"]}] * 2


def test_message_is_handed_once_and_acknowledged_per_delivery(client: ChatClient, recorder: Recorder) -> None:
    got: list[dict[str, Any]] = []
    client.on_message = got.append
    inbox(client, message("s1"))
    inbox(client, message("s1"))  # replayed by the server (e.g. after a reconnect)
    inbox(client, message("s2"))
    assert [m["id"] for m in got] == ["s1", "s2"]
    assert [m["id"] for m in client.messages] == ["s1", "s2"]
    assert recorder.envelopes == [
        {"type": "receipt", "status": "delivered", "ids": ["s1"]},
        {"type": "receipt", "status": "delivered", "ids": ["s1"]},
        {"type": "receipt", "status": "delivered", "ids": ["s2"]},
    ]
    assert all(topic == f"users/{UID}/outbox" and qos == 1 for topic, _, qos in recorder.calls)


def test_delivered_receipt_follows_the_callback(client: ChatClient, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(client.mqtt, "publish", Recorder(order))
    client.on_message = lambda envelope: order.append("callback")
    inbox(client, message("s1"))
    assert order == ["callback", "publish"]


def test_no_auto_receipts_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    with ChatClient("http://chat.test", "h", 1883, auto_delivered=False) as c:
        c.set_tokens(UID, "tok")
        rec = Recorder()
        monkeypatch.setattr(c.mqtt, "publish", rec)
        inbox(c, message("s1"))
        inbox(c, message("s1"))
        assert len(c.messages) == 1
        assert rec.calls == []
        c.mark_delivered(["s1"])
        assert rec.envelopes == [{"type": "receipt", "status": "delivered", "ids": ["s1"]}]


def test_failing_callback_is_logged_not_raised(
    client: ChatClient, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(envelope: dict[str, Any]) -> None:
        raise RuntimeError("app bug")

    client.on_message = boom
    client.on_receipt = boom
    with caplog.at_level(logging.ERROR, logger="chatmq.devices.sdk"):
        inbox(client, message("s1"))
        inbox(client, {"type": "receipt", "status": "read", "ids": ["c1"], "from": "u_bob"})
    assert "app bug" in caplog.text
    assert recorder.envelopes == [{"type": "receipt", "status": "delivered", "ids": ["s1"]}]
    assert len(client.receipts) == 1


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe not json", b"[1, 2]", b'"text"', b"{}", b'{"type": 3}',
     b'{"type": "message", "body": {}}', b'{"type": "message", "id": 7}'],
)
def test_undecodable_or_malformed_payloads_are_dropped(
    client: ChatClient, recorder: Recorder, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[dict[str, Any]] = []
    client.on_message = got.append
    with caplog.at_level(logging.WARNING, logger="chatmq.devices.sdk"):
        inbox(client, payload)
    assert got == []
    assert client.messages == []
    assert recorder.calls == []
    assert "dropping" in caplog.text


def test_unknown_envelope_types_are_ignored(client: ChatClient, recorder: Recorder) -> None:
    inbox(client, {"type": "presence", "user": "u_bob"})
    assert recorder.calls == []
    assert client.messages == client.events == client.errors == []


def test_receipts_events_errors_and_acks_reach_callbacks_and_lists(
    client: ChatClient, recorder: Recorder
) -> None:
    seen: dict[str, list[dict[str, Any]]] = {"receipt": [], "event": [], "error": [], "ack": []}
    client.on_receipt = seen["receipt"].append
    client.on_event = seen["event"].append
    client.on_error = seen["error"].append
    client.on_ack = seen["ack"].append
    receipt = {"type": "receipt", "status": "delivered", "ids": ["s9"], "from": "u_bob"}
    event = {"type": "event", "event": "group_created", "group_id": "g1"}
    error = {"type": "error", "client_id": "c1", "code": "unknown_recipient", "reason": "no such user"}
    ack = {"type": "ack", "client_id": "c2", "id": "s10", "ts": 1}
    for envelope in (receipt, event, error, ack):
        inbox(client, envelope)
    assert seen == {"receipt": [receipt], "event": [event], "error": [error], "ack": [ack]}
    assert client.receipts == [receipt]
    assert client.events == [event]
    assert client.errors == [error]
    assert client.acks == {"c2": ack}
    assert recorder.calls == []  # only messages are receipted


# ------------------------------------------------------------------ waiting


def later(delay: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def test_wait_ack_returns_the_ack(client: ChatClient, recorder: Recorder) -> None:
    cid = client.send("u_bob", "hi")
    timer = later(0.05, lambda: inbox(client, {"type": "ack", "client_id": cid, "id": "s1", "ts": 5}))
    assert client.wait_ack(cid, 5) == {"type": "ack", "client_id": cid, "id": "s1", "ts": 5}
    timer.join()


def test_wait_ack_raises_on_an_error_envelope(client: ChatClient, recorder: Recorder) -> None:
    cid = client.send("u_nobody", "hi")
    inbox(client, {"type": "error", "client_id": cid, "code": "unknown_recipient", "reason": "no such user"})
    with pytest.raises(MessageRejectedError) as info:
        client.wait_ack(cid, 1)
    assert info.value.code == "unknown_recipient"
    assert info.value.reason == "no such user"
    assert info.value.client_id == cid


def test_wait_ack_times_out(client: ChatClient, recorder: Recorder) -> None:
    start = time.monotonic()
    with pytest.raises(AckTimeoutError):
        client.wait_ack("nope", 0.1)
    assert time.monotonic() - start < 2


def test_wait_messages_from_another_thread(client: ChatClient, recorder: Recorder) -> None:
    def three() -> None:
        for i in range(3):
            inbox(client, message(f"s{i}"))

    timer = later(0.05, three)
    got = client.wait_messages(3, 5)
    timer.join()
    assert [m["id"] for m in got] == ["s0", "s1", "s2"]
    with pytest.raises(ChatTimeoutError, match="3 of 4"):
        client.wait_messages(4, 0.05)


def test_wait_for_returns_the_predicate_value(client: ChatClient, recorder: Recorder) -> None:
    inbox(client, {"type": "event", "event": "member_added", "group_id": "g1"})
    found = client.wait_for(lambda: next((e for e in client.events if e["event"] == "member_added"), None), 1)
    assert found is not None
    assert found["group_id"] == "g1"


def test_flush_waits_for_acknowledged_publishes(client: ChatClient, recorder: Recorder) -> None:
    client.send("u_bob", "x")
    assert client.flush(0.5)


# ------------------------------------------------------------------ tokens


def test_token_expiry_reads_the_exp_claim() -> None:
    token = make_token(100)
    exp = token_expiry(token)
    assert exp is not None
    assert abs(exp - (time.time() + 100)) < 5
    assert token_expiry("opaque") is None
    assert token_expiry("a.!!!.c") is None
    assert token_expiry("a." + "e30" + ".c") is None  # "{}": no exp


def test_refresh_decision(client: ChatClient) -> None:
    now = time.time()
    client.set_tokens(UID, make_token(900), "r")
    assert not client.token_needs_refresh(now=now)
    assert client.token_needs_refresh(now=now + 890)  # within the margin
    client.set_tokens(UID, make_token(-10), "r")
    assert client.token_needs_refresh()  # already expired
    client.set_tokens(UID, make_token(-10), None)
    assert not client.token_needs_refresh()  # nothing to refresh with
    client.set_tokens(UID, "opaque-token", "r")
    assert not client.token_needs_refresh()  # unknown expiry
    client.set_tokens(UID, "opaque-token", "r", expires_in=5)
    assert client.token_needs_refresh()  # expires_in is the fallback


def test_tokens_repr_hides_secrets(client: ChatClient) -> None:
    tokens = client.tokens
    assert isinstance(tokens, Tokens)
    assert tokens.refresh_token == "refresh-1"
    assert "refresh-1" not in repr(tokens)
    assert tokens.access_token not in repr(tokens)


# ------------------------------------------------------------------ REST


class FakeApi:
    """An ``httpx.MockTransport`` handler with a tiny in-memory auth server."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.valid_access: set[str] = set()
        self.refresh_ok = True
        self.counter = 0

    def issue(self, user_id: str = UID) -> dict[str, Any]:
        self.counter += 1
        access = make_token(900 + self.counter)
        self.valid_access.add(access)
        return {"access_token": access, "refresh_token": f"r{self.counter}", "token_type": "bearer",
                "expires_in": 900, "user_id": user_id}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        body: dict[str, Any] = orjson.loads(request.content) if request.content else {}
        if path == "/api/v1/auth/register":
            if body["username"] == "taken":
                return httpx.Response(409, json={"detail": "username taken"})
            return httpx.Response(201, json={"user_id": UID, "username": body["username"]})
        if path == "/api/v1/auth/login":
            if body["password"] != "pw":
                return httpx.Response(401, json={"detail": "bad credentials"})
            return httpx.Response(200, json=self.issue())
        if path == "/api/v1/auth/refresh":
            if not self.refresh_ok:
                return httpx.Response(401, json={"detail": "invalid token"})
            return httpx.Response(200, json=self.issue())
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_access:
            return httpx.Response(401, json={"detail": "invalid token"})
        if path == "/api/v1/contacts/sync":
            known = {"bob": "u_bob"}
            registered = {u: known[u] for u in body["usernames"] if u in known}
            return httpx.Response(200, json={"registered": registered})
        if path == "/api/v1/groups":
            group = {"group_id": "g1", "name": body["name"], "members": body["members"]}
            return httpx.Response(201, json=group)
        if path == "/api/v1/devices":
            return httpx.Response(201, json={"device_id": "d1", "name": body["name"], "secret": "s"})
        if path == "/api/v1/push-tokens":
            return httpx.Response(201, json={"platform": body["platform"], "token": body["token"]})
        if request.method == "DELETE" and path.startswith(("/api/v1/devices/", "/api/v1/push-tokens/")):
            return httpx.Response(204)
        if path.startswith("/api/v1/conversations/"):
            page: dict[str, Any] = {"messages": [], "next_before": None, "query": dict(request.url.params)}
            return httpx.Response(200, json=page)
        return httpx.Response(404, json={"detail": "not found"})


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def rest(api: FakeApi) -> Iterator[ChatClient]:
    with ChatClient("http://chat.test/", "h", 1883, http_transport=httpx.MockTransport(api)) as c:
        yield c


def test_register_and_login(rest: ChatClient, api: FakeApi) -> None:
    changes: list[Tokens] = []
    rest.on_tokens_changed = changes.append
    assert rest.register("alice", "pw", display_name="Alice") == UID
    sent = orjson.loads(api.requests[0].content)
    assert sent == {"username": "alice", "password": "pw", "display_name": "Alice"}
    assert rest.login("alice", "pw") == UID
    assert rest.user_id == UID
    assert rest.tokens is not None
    assert rest.tokens.refresh_token == "r1"
    assert [t.refresh_token for t in changes] == ["r1"]
    assert "authorization" not in api.requests[1].headers
    assert str(api.requests[1].url) == "http://chat.test/api/v1/auth/login"


def test_api_errors(rest: ChatClient) -> None:
    with pytest.raises(ApiError) as conflict:
        rest.register("taken", "pw")
    assert conflict.value.status_code == 409
    assert conflict.value.detail == "username taken"
    with pytest.raises(AuthenticationError, match="bad credentials"):
        rest.login("alice", "wrong")
    with pytest.raises(NotLoggedInError):
        rest.contacts(["bob"])


def test_authenticated_calls(rest: ChatClient, api: FakeApi) -> None:
    rest.login("alice", "pw")
    assert rest.contacts(["bob", "carol"]) == {"bob": "u_bob"}
    assert rest.create_group("team", ["u_bob"]) == {"group_id": "g1", "name": "team", "members": ["u_bob"]}
    page = rest.history("u_bob", before="s5", limit=10)
    assert page["query"] == {"before": "s5", "limit": "10"}
    assert rest.history("u_bob")["query"] == {"limit": "50"}
    assert all(r.headers["authorization"].startswith("Bearer ") for r in api.requests[1:])


def test_devices_and_push_tokens(rest: ChatClient, api: FakeApi) -> None:
    rest.login("alice", "pw")
    assert rest.create_device("thermo")["device_id"] == "d1"
    assert orjson.loads(api.requests[-1].content) == {"name": "thermo"}
    rest.delete_device("d1")
    assert (api.requests[-1].method, api.requests[-1].url.path) == ("DELETE", "/api/v1/devices/d1")
    assert rest.add_push_token("android", "tok/1") == {"platform": "android", "token": "tok/1"}
    rest.remove_push_token("tok/1")
    assert (api.requests[-1].method, api.requests[-1].url.raw_path) == ("DELETE", b"/api/v1/push-tokens/tok%2F1")


def test_401_refreshes_once_and_retries(rest: ChatClient, api: FakeApi) -> None:
    rest.login("alice", "pw")
    api.valid_access.clear()  # the server no longer takes the current token
    assert rest.contacts(["bob"]) == {"bob": "u_bob"}
    paths = [r.url.path for r in api.requests]
    assert paths[-3:] == ["/api/v1/contacts/sync", "/api/v1/auth/refresh", "/api/v1/contacts/sync"]
    assert orjson.loads(api.requests[-2].content) == {"refresh_token": "r1"}
    assert rest.tokens is not None
    assert rest.tokens.refresh_token == "r2"


def test_expired_session_is_reported(rest: ChatClient, api: FakeApi) -> None:
    rest.login("alice", "pw")
    api.valid_access.clear()
    api.refresh_ok = False
    with pytest.raises(AuthenticationError, match="log in again"):
        rest.contacts(["bob"])


def test_near_expiry_token_is_refreshed_before_the_call(rest: ChatClient, api: FakeApi) -> None:
    rest.set_tokens(UID, make_token(5), "r0")
    api.valid_access.clear()
    rest.contacts(["bob"])
    assert [r.url.path for r in api.requests] == ["/api/v1/auth/refresh", "/api/v1/contacts/sync"]


def test_unreachable_rest_server() -> None:
    with ChatClient("http://127.0.0.1:9", "127.0.0.1", 9) as c, pytest.raises(ServerUnreachableError):
        c.login("alice", "pw")


def test_unreachable_broker() -> None:
    with ChatClient("http://127.0.0.1:9", "127.0.0.1", 9) as c:
        c.set_tokens(UID, "tok")
        with pytest.raises(ServerUnreachableError, match=r"127\.0\.0\.1:9"):
            c.connect(timeout=2)
        assert not c.connected


# ------------------------------------------------------------------ connection callbacks


def handler(callback: object) -> Callable[..., None]:
    """A paho callback as installed by the SDK, typed for calling it directly."""
    assert callable(callback)
    return cast(Callable[..., None], callback)


def connack(name: str) -> ReasonCode:
    return ReasonCode(PacketTypes.CONNACK, name)


def test_refused_first_connack_is_reported_to_connect(client: ChatClient) -> None:
    on_connect = handler(client.mqtt.on_connect)
    on_connect(client.mqtt, None, mqtt.ConnectFlags(False), connack("Not authorized"), None)
    assert isinstance(client._connect_error, NotAuthorizedError)
    on_connect(client.mqtt, None, mqtt.ConnectFlags(False), connack("Server unavailable"), None)
    assert type(client._connect_error) is ConnectError
    assert not client.connected


def test_refused_reconnect_refreshes_the_token_once(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ChatClient("http://chat.test", "h", 1883, http_transport=httpx.MockTransport(api)) as c:
        c.login("alice", "pw")
        c._running = True  # as after a successful connect()
        stopped: list[bool] = []
        monkeypatch.setattr(c.mqtt, "disconnect", lambda *a, **k: stopped.append(True))
        on_connect = handler(c.mqtt.on_connect)
        on_connect(c.mqtt, None, mqtt.ConnectFlags(False), connack("Not authorized"), None)
        assert c.tokens is not None
        assert c.tokens.refresh_token == "r2"
        assert c.mqtt._password == c.tokens.access_token.encode()  # paho retries with the new token
        assert stopped == []
        on_connect(c.mqtt, None, mqtt.ConnectFlags(False), connack("Not authorized"), None)
        assert stopped == [True]
        assert isinstance(c.fatal_error, NotAuthorizedError)
        c._running = False


def test_pre_connect_refreshes_a_token_near_expiry(api: FakeApi) -> None:
    with ChatClient("http://chat.test", "h", 1883, http_transport=httpx.MockTransport(api)) as c:
        c.set_tokens(UID, make_token(1), "r0")
        pre = handler(c.mqtt.on_pre_connect)
        pre(c.mqtt, None)
        assert api.requests == []  # not running yet: connect() refreshes itself
        c._running = True
        pre(c.mqtt, None)
        assert [r.url.path for r in api.requests] == ["/api/v1/auth/refresh"]
        api.refresh_ok = False
        c.set_tokens(UID, make_token(1), "r0")
        pre(c.mqtt, None)  # a failed refresh must not raise into paho
        c._running = False


def test_connection_state_changes_are_reported(client: ChatClient, recorder: Recorder) -> None:
    client.connected = False
    changes: list[bool] = []
    client.on_connection_change = changes.append
    subscribed: list[tuple[str, int]] = []

    def subscribe(topic: str, qos: int = 0) -> tuple[int, int]:
        subscribed.append((topic, qos))
        return mqtt.MQTT_ERR_SUCCESS, 7

    client.mqtt.subscribe = subscribe  # type: ignore[method-assign,assignment]
    on_connect, on_disconnect = handler(client.mqtt.on_connect), handler(client.mqtt.on_disconnect)
    for _ in range(2):  # connect, drop, reconnect: re-subscribes each time
        on_connect(client.mqtt, None, mqtt.ConnectFlags(False), connack("Success"), None)
        on_disconnect(client.mqtt, None, mqtt.DisconnectFlags(False),
                      ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None)
    assert changes == [True, False, True, False]
    assert subscribed == [(f"users/{UID}/inbox", 1)] * 2


def test_clients_sharing_a_login_never_spend_one_refresh_token_twice(api: FakeApi) -> None:
    """Refresh tokens rotate: two clients of one saved login (two CLI processes on one profile)
    must not both refresh with the same token. The second takes what the first saved."""
    saved: list[Tokens] = []
    transport = httpx.MockTransport(api)
    with ChatClient("http://chat.test/", "h", 1883, http_transport=transport) as first, \
            ChatClient("http://chat.test/", "h", 1883, http_transport=transport) as second:
        first.login("alice", "pw")
        login = first.tokens
        assert login is not None
        second.set_tokens(login.user_id, login.access_token, login.refresh_token)
        for c in (first, second):
            c.on_tokens_changed = saved.append
            c.shared_tokens = lambda: saved[-1] if saved else None
        first.refresh()
        assert orjson.loads(api.requests[-1].content) == {"refresh_token": "r1"}
        sent = len(api.requests)
        adopted = second.refresh()
        assert len(api.requests) == sent  # no request: r1 is spent, r2 is the login's token now
        assert (adopted.refresh_token, second.tokens and second.tokens.refresh_token) == ("r2", "r2")
        second.refresh()  # now its own token is the newest: it refreshes for real
        assert orjson.loads(api.requests[-1].content) == {"refresh_token": "r2"}
        saved.append(Tokens("someone-else", "a", "r9", None))  # another user's tokens are never taken
        second.refresh()
        assert orjson.loads(api.requests[-1].content) == {"refresh_token": "r3"}


# ------------------------------------------------------------------ MQTT 5 refusals in PUBACKs


def puback(client: ChatClient, mid: int, reason: int = 0, code: str | None = None, text: str | None = None) -> None:
    """A PUBACK for packet ``mid`` as paho's network thread reports it (``reason`` >= 0x80: a refusal)."""
    props = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
    if code is not None:
        props.UserProperty = ("code", code)
    if text is not None:
        props.ReasonString = text
    handler(client.mqtt.on_publish)(client.mqtt, None, mid, ReasonCode(PacketTypes.PUBACK, identifier=reason), props)


def test_a_refusing_puback_names_the_message_and_wait_ack_raises_its_reason_code(
        client: ChatClient, recorder: Recorder) -> None:
    first, second = client.send("u_bob", "one"), client.send("u_bob", "two")  # packet ids 1 and 2
    puback(client, 1)  # accepted: the ack envelope follows in the inbox
    puback(client, 2, 0x99, "invalid_envelope", "body: nope")
    with pytest.raises(MessageRejectedError) as refused:
        client.wait_ack(second, 0.1)
    assert (refused.value.client_id, refused.value.code, refused.value.reason, refused.value.reason_code) == (
        second, "invalid_envelope", "body: nope", 0x99)
    assert [m["id"] for m in client.unacked()] == [first]  # a refused message is not sent again
    with pytest.raises(AckTimeoutError):
        client.wait_ack(first, 0.05)


def test_a_puback_that_comes_before_publish_returns_still_finds_its_message(
        client: ChatClient, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()

    def answered_at_once(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = recorder(topic, payload, qos, retain)
        puback(client, info.mid, 0x97, "rate_limited", "too many messages; slow down")  # paho's thread was quicker
        return info

    monkeypatch.setattr(client.mqtt, "publish", answered_at_once)
    client.connected = True
    cid = client.send("u_bob", "hi")
    with pytest.raises(MessageRejectedError) as refused:
        client.wait_ack(cid, 0.1)
    assert (refused.value.code, refused.value.reason_code, refused.value.client_id) == ("rate_limited", 0x97, cid)


def test_an_error_before_the_refusing_puback_waits_for_its_reason_code(
        client: ChatClient, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[mqtt.MQTTMessageInfo] = []

    def in_flight(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        sent.append(mqtt.MQTTMessageInfo(len(sent) + 1))
        sent[-1].rc = mqtt.MQTT_ERR_SUCCESS
        return sent[-1]  # not published until its PUBACK

    def refusing_puback() -> None:  # as paho: on_publish first, then the publish is marked published
        puback(client, 1, 0x83, "too_large", "too big")
        sent[0]._set_as_published()

    monkeypatch.setattr(client.mqtt, "publish", in_flight)
    client.connected = True
    cid = client.send("u_bob", "hi")
    inbox(client, {"type": "error", "client_id": cid, "code": "too_large", "reason": "too big"})
    later = threading.Timer(0.1, refusing_puback)
    later.start()
    with pytest.raises(MessageRejectedError) as refused:
        client.wait_ack(cid, 5)
    later.join()
    assert (refused.value.code, refused.value.reason_code) == ("too_large", 0x83)
    assert refused.value.envelope["type"] == "error"  # the inbox error, as it came


def test_an_error_after_an_accepting_puback_has_no_reason_code(client: ChatClient, recorder: Recorder) -> None:
    cid = client.send("u_nobody", "hi")
    puback(client, 1)  # MQTT 3.1.1, or an error the router finds later (unknown_recipient)
    inbox(client, {"type": "error", "client_id": cid, "code": "unknown_recipient", "reason": "no such user"})
    with pytest.raises(MessageRejectedError) as refused:
        client.wait_ack(cid, 1)
    assert (refused.value.code, refused.value.reason_code) == ("unknown_recipient", None)
