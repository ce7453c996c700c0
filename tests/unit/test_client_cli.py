"""Tests of ``chatmq.devices.cli`` (the ``chatmq client`` commands).

REST goes to an ``httpx.MockTransport`` (``make_client`` is replaced); MQTT, where
needed, to the in-process amqtt broker and fake server of ``test_sdk_broker``.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import typer
from typer.testing import CliRunner

from chatmq.devices import cli
from chatmq.devices.cli import Endpoint, Profile, app, format_envelope, load_profile, resolve_endpoint, save_profile
from chatmq.devices.sdk import ChatClient, NotLoggedInError
from tests.unit.test_sdk_broker import VALID_TOKENS, BrokerThread, FakeChatServer, wait_until

KEY = "k" * 40
runner = CliRunner()


def jwt_token(exp_in: float, sub: str = "u_alice") -> str:
    return jwt.encode({"sub": sub, "typ": "access", "exp": int(time.time() + exp_in)}, KEY, algorithm="HS256")


class FakeApi:
    """``httpx.MockTransport`` handler: users alice, bob and nobody, all with password ``pw``."""

    def __init__(self) -> None:
        self.users = {"alice": "u_alice", "bob": "u_bob", "nobody": "u_nobody"}
        self.endpoints: list[Endpoint] = []
        self.requests: list[httpx.Request] = []
        self.valid: set[str] = set()
        self.refresh_ok = True
        self.counter = 0
        self.refreshable: set[str] | None = None
        """When set, rotation as the server does it: the refresh tokens not yet spent; a spent one sent
        again ends the login (the set is emptied) and is refused."""
        self.refresh_delay = 0.0
        self._lock = threading.Lock()

    def issue(self, user_id: str) -> dict[str, Any]:
        self.counter += 1
        access = jwt_token(900 + self.counter, user_id)
        self.valid.add(access)
        VALID_TOKENS.add(access)
        return {"access_token": access, "refresh_token": f"r{self.counter}", "token_type": "bearer",
                "expires_in": 900, "user_id": user_id}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1")
        body: dict[str, Any] = orjson.loads(request.content) if request.content else {}
        if path == "/auth/register":
            if body["username"] in self.users:
                return httpx.Response(409, json={"detail": "username taken"})
            return httpx.Response(201, json={"user_id": "u_new", "username": body["username"]})
        if path == "/auth/login":
            if body["username"] not in self.users or body["password"] != "pw":
                return httpx.Response(401, json={"detail": "bad username or password"})
            return httpx.Response(200, json=self.issue(self.users[body["username"]]))
        if path == "/auth/refresh":
            time.sleep(self.refresh_delay)  # the request on its way: long enough for others to overlap it
            with self._lock:
                if not self.refresh_ok:
                    return httpx.Response(401, json={"detail": "invalid token"})
                if self.refreshable is not None:
                    if body["refresh_token"] not in self.refreshable:
                        self.refreshable.clear()  # reuse of a spent token: the login's family is revoked
                        return httpx.Response(401, json={"detail": "refresh token already used"})
                    self.refreshable.remove(body["refresh_token"])
                tokens = self.issue("u_alice")
                if self.refreshable is not None:
                    self.refreshable.add(tokens["refresh_token"])
                return httpx.Response(200, json=tokens)
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"detail": "invalid token"})
        if path == "/contacts/sync":
            found = {u: self.users[u] for u in body["usernames"] if u in self.users}
            return httpx.Response(200, json={"registered": found})
        return httpx.Response(404, json={"detail": "not found"})


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Profiles go to a temporary ``$CHATMQ_HOME``; no ambient settings leak in."""
    path = tmp_path / "chatmq-home"
    monkeypatch.setenv("CHATMQ_HOME", str(path))
    for name in ("CHATMQ_SERVER", "CHATMQ_PASSWORD", "CHATMQ_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()

    def make_client(endpoint: Endpoint) -> ChatClient:
        fake.endpoints.append(endpoint)
        return ChatClient(endpoint.server, endpoint.mqtt_host, endpoint.mqtt_port,
                          transport="websockets" if endpoint.ws else "tcp",
                          http_transport=httpx.MockTransport(fake), mqtt_version=4)  # amqtt: 3.1.1 only

    monkeypatch.setattr(cli, "make_client", make_client)
    return fake


def alice_profile(access_token: str, refresh_token: str | None = "r0", **changes: Any) -> Profile:
    profile = Profile("http://127.0.0.1:8000", "u_alice", "alice", access_token, refresh_token)
    for key, value in changes.items():
        setattr(profile, key, value)
    return profile


def no_traceback(result: Any) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------ profiles


def test_profile_roundtrip_and_permissions(home: Path) -> None:
    profile = alice_profile("a-token", contacts={"bob": "u_bob"})
    path = save_profile("default", profile)
    assert path == home / "default.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert load_profile("default") == profile
    data = orjson.loads(path.read_bytes())
    assert set(data) >= {"server", "user_id", "username", "access_token", "refresh_token"}
    os.chmod(path, 0o644)
    save_profile("default", profile)  # rewriting tightens the mode again
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in home.iterdir()] == ["default.json"]  # no temporary files left


def test_missing_or_broken_profiles_mean_not_logged_in(home: Path) -> None:
    with pytest.raises(NotLoggedInError, match="chatmq client login"):
        load_profile("default")
    home.mkdir()
    (home / "broken.json").write_text("{nope")
    with pytest.raises(NotLoggedInError, match="unreadable"):
        load_profile("broken")
    (home / "partial.json").write_text('{"server": "x"}')
    with pytest.raises(NotLoggedInError, match="incomplete"):
        load_profile("partial")


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".."])
def test_profile_names_must_be_plain(name: str) -> None:
    with pytest.raises(typer.BadParameter):
        save_profile(name, alice_profile("t"))


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATMQ_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.chatmq_home() == tmp_path / ".config" / "chatmq"


def test_profile_names_users() -> None:
    profile = alice_profile("t", contacts={"bob": "u_bob"})
    assert profile.name_of("u_bob") == "bob"
    assert profile.name_of("u_alice") == "alice"
    assert profile.name_of("u_zed") == "u_zed"


# ------------------------------------------------------------------ endpoints and formatting


def test_resolve_endpoint_defaults() -> None:
    assert resolve_endpoint(None, None, None, False) == Endpoint("http://127.0.0.1:8000", "127.0.0.1", 1883, False)
    assert resolve_endpoint("https://chat.example:9443/", None, None, True) == Endpoint(
        "https://chat.example:9443", "chat.example", 8083, True)
    assert resolve_endpoint(None, "mq", 1999, False, "http://saved:1").mqtt_host == "mq"
    assert resolve_endpoint(None, None, None, False, "http://saved:1").server == "http://saved:1"
    with pytest.raises(typer.BadParameter):
        resolve_endpoint("ftp://x", None, None, False)


def test_format_envelope() -> None:
    profile = alice_profile("t", contacts={"bob": "u_bob"})
    ts = int(time.mktime((2024, 5, 1, 13, 4, 5, 0, 0, -1)) * 1000)
    direct = {"type": "message", "id": "s1", "from": "u_bob", "to": "u_alice", "group": None,
              "body": {"text": "hi there"}, "ts": ts}
    assert format_envelope(direct, profile) == ("[13:04:05] bob: hi there", False)
    group = {**direct, "group": "g1", "from": "u_zed", "body": {"temp": 21.5}}
    assert format_envelope(group, profile) == ('[13:04:05] [g1] u_zed: {"temp":21.5}', False)
    line, err = format_envelope({"type": "receipt", "status": "read", "ids": ["s1", "s2"], "from": "u_bob"}, profile)
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] \* read by bob: s1, s2", line)
    assert not err
    line, _ = format_envelope({"type": "event", "event": "group_created", "group_id": "g1"}, profile)
    assert line.endswith('* event group_created: {"group_id":"g1"}')
    line, err = format_envelope({"type": "error", "code": "rate_limited", "reason": "slow down"}, profile)
    assert line.endswith("! error rate_limited: slow down")
    assert err


def test_format_envelope_of_replies_and_message_actions() -> None:
    profile = alice_profile("t", contacts={"bob": "u_bob"})
    ts = int(time.mktime((2024, 5, 1, 13, 4, 5, 0, 0, -1)) * 1000)
    base = {"id": "s9", "client_id": "c9", "from": "u_bob", "to": "u_alice", "group": None, "target": "s1", "ts": ts}
    reply = {"type": "message", **base, "reply_to": "s1", "body": {"text": "sure"}}
    assert format_envelope(reply, profile) == ("[13:04:05] bob (reply to s1): sure", False)
    assert format_envelope({"type": "edit", **base, "body": {"text": "hello"}}, profile) == (
        "[13:04:05] * bob edited s1: hello", False)
    assert format_envelope({"type": "delete", **base, "for": "everyone"}, profile) == (
        "[13:04:05] * bob deleted s1", False)
    assert format_envelope({"type": "reaction", **base, "group": "g1", "emoji": "👍", "remove": False}, profile) == (
        "[13:04:05] * [g1] bob reacted 👍 on s1", False)
    assert format_envelope({"type": "reaction", **base, "emoji": "👍", "remove": True}, profile) == (
        "[13:04:05] * bob took back 👍 on s1", False)


# ------------------------------------------------------------------ commands without a broker


@pytest.mark.parametrize("args", [["send", "bob", "hi"], ["listen", "--count", "1"], ["chat", "bob"]])
def test_not_logged_in(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "not logged in" in result.stderr
    assert "chatmq client login" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send"], "missing PEER"),
        (["send", "bob"], "missing TEXT"),
        (["send", "--group", "g1", "bob", "hi"], "only TEXT"),
        (["chat"], "missing PEER"),
        (["chat", "bob", "--group", "g1"], "not both"),
        (["listen", "--count", "0"], "--count"),
        (["send", "bob", "hi", "--profile", "../x"], "invalid profile name"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    save_profile("default", alice_profile("t"))
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    no_traceback(result)


def test_login_saves_the_profile(api: FakeApi, home: Path) -> None:
    result = runner.invoke(app, ["login", "alice", "--password", "pw", "--server", "http://chat.test:8000"])
    assert result.exit_code == 0, result.output
    assert "logged in as alice (u_alice)" in result.stdout
    profile = load_profile("default")
    assert profile.server == "http://chat.test:8000"
    assert (profile.user_id, profile.username, profile.refresh_token) == ("u_alice", "alice", "r1")
    assert profile.access_token in api.valid
    assert profile.access_token not in result.output
    assert stat.S_IMODE(os.stat(home / "default.json").st_mode) == 0o600
    assert str(api.requests[0].url) == "http://chat.test:8000/api/v1/auth/login"


def test_login_password_from_prompt_or_env(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["login", "bob", "--profile", "b"], input="pw\n")
    assert result.exit_code == 0, result.output
    assert "pw" not in result.stdout.replace("Password:", "")
    assert load_profile("b").user_id == "u_bob"
    monkeypatch.setenv("CHATMQ_PASSWORD", "pw")
    monkeypatch.setenv("CHATMQ_SERVER", "http://env.test")
    result = runner.invoke(app, ["login", "alice"])
    assert result.exit_code == 0, result.output
    assert load_profile("default").server == "http://env.test"


def test_login_refused(api: FakeApi) -> None:
    result = runner.invoke(app, ["login", "alice", "--password", "wrong"])
    assert result.exit_code == 1
    assert "not authorized: bad username or password" in result.stderr
    no_traceback(result)
    with pytest.raises(NotLoggedInError):
        load_profile("default")


def test_register(api: FakeApi) -> None:
    result = runner.invoke(app, ["register", "zoe", "--password", "pw", "--display-name", "Zoe"])
    assert result.exit_code == 0, result.output
    assert "registered zoe (u_new)" in result.stdout
    assert orjson.loads(api.requests[0].content)["display_name"] == "Zoe"
    result = runner.invoke(app, ["register", "bob", "--password", "pw"])
    assert result.exit_code == 1
    assert "409" in result.stderr
    assert "username taken" in result.stderr


def test_unreachable_server() -> None:
    result = runner.invoke(app, ["login", "alice", "--password", "pw", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "server unreachable" in result.stderr
    no_traceback(result)


def test_expired_access_token_is_refreshed_and_saved(api: FakeApi) -> None:
    save_profile("default", alice_profile(jwt_token(-60), "r0"))
    result = runner.invoke(app, ["send", "carol", "hi"])
    assert result.exit_code == 1
    assert "no such user: carol" in result.stderr
    assert [r.url.path for r in api.requests] == ["/api/v1/auth/refresh", "/api/v1/contacts/sync"]
    profile = load_profile("default")
    assert profile.refresh_token == "r1"
    assert profile.access_token in api.valid


def test_processes_of_one_profile_refreshing_at_once_take_turns_and_keep_the_login(api: FakeApi) -> None:
    """Refresh tokens rotate and the server revokes a login whose spent refresh token comes again
    (refresh_reuse_grace 0): four processes of one profile whose access token expired refresh one at
    a time under the profile's file lock, each after the first taking the tokens it saved."""
    api.refreshable = {"r0"}
    api.refresh_delay = 0.2
    save_profile("default", alice_profile(jwt_token(-60), "r0"))
    failures: list[BaseException] = []

    def one_process() -> None:
        try:
            with cli._session("default", None, None, None, ws=False):
                pass
        except BaseException as exc:  # typer.Exit on a refused refresh: reported below
            failures.append(exc)

    threads = [threading.Thread(target=one_process) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    refreshes = [r for r in api.requests if r.url.path == "/api/v1/auth/refresh"]
    assert [orjson.loads(r.content) for r in refreshes] == [{"refresh_token": "r0"}]  # once; the others adopted it
    assert load_profile("default").refresh_token in api.refreshable  # the login lives on


def test_expired_session_asks_to_log_in_again(api: FakeApi) -> None:
    api.refresh_ok = False
    save_profile("default", alice_profile(jwt_token(-60), "r0"))
    result = runner.invoke(app, ["listen", "--count", "1"])
    assert result.exit_code == 1
    assert "log in again" in result.stderr
    no_traceback(result)


def test_unreachable_broker(api: FakeApi) -> None:
    token = api.issue("u_alice")["access_token"]
    save_profile("default", alice_profile(token))
    result = runner.invoke(app, ["send", "bob", "hi", "--mqtt-port", "9", "--timeout", "3"])
    assert result.exit_code == 1
    assert "server unreachable" in result.stderr
    assert "127.0.0.1:9" in result.stderr
    no_traceback(result)
    assert load_profile("default").contacts == {"bob": "u_bob"}  # the contact sync was cached


def test_logout() -> None:
    save_profile("default", alice_profile("t"))
    assert runner.invoke(app, ["logout"]).exit_code == 0
    result = runner.invoke(app, ["logout"])
    assert result.exit_code == 1
    assert "not logged in" in result.stderr


# ------------------------------------------------------------------ commands against a broker




def logged_in(api: FakeApi, user_id: str, username: str, name: str = "default", **changes: Any) -> None:
    token = api.issue(user_id)["access_token"]
    save_profile(name, Profile("http://127.0.0.1:8000", user_id, username, token, "r", **changes))


def test_send_prints_the_server_id(api: FakeApi, broker: BrokerThread, server: FakeChatServer) -> None:
    logged_in(api, "u_alice", "alice")
    result = runner.invoke(app, ["send", "bob", "hello bob", "--mqtt-port", str(broker.port)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "sent s0001"
    [(sender, payload)] = server.outbox
    envelope = orjson.loads(payload)
    assert sender == "u_alice"
    assert (envelope["to"], envelope["body"]) == ("u_bob", {"text": "hello bob"})

    result = runner.invoke(app, ["send", "--group", "g1", "hi all", "--mqtt-port", str(broker.port)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(server.outbox[-1][1])["group"] == "g1"


def test_send_reports_an_error_envelope(api: FakeApi, broker: BrokerThread, server: FakeChatServer) -> None:
    logged_in(api, "u_alice", "alice")
    result = runner.invoke(app, ["send", "nobody", "hi", "--mqtt-port", str(broker.port)])
    assert result.exit_code == 1
    assert "message refused: unknown_recipient: no such user" in result.stderr
    no_traceback(result)


def test_send_without_ack_times_out(api: FakeApi, broker: BrokerThread, server: FakeChatServer) -> None:
    server.silent = True
    logged_in(api, "u_alice", "alice")
    result = runner.invoke(app, ["send", "bob", "hi", "--mqtt-port", str(broker.port), "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "no ack from the server within 0.5s" in result.stderr


def test_listen_prints_messages_and_acknowledges_them(
    api: FakeApi, broker: BrokerThread, server: FakeChatServer
) -> None:
    logged_in(api, "u_bob", "bob", contacts={"alice": "u_alice"})
    ts = int(time.time() * 1000)
    first = {"type": "message", "id": "s1", "client_id": "c1", "from": "u_alice", "to": "u_bob",
             "group": None, "body": {"text": "one"}, "ts": ts}
    second = {**first, "id": "s2", "client_id": "c2", "group": "g7", "from": "u_carl", "body": {"text": "two"}}
    stop = threading.Event()

    def feed() -> None:  # until the listener is subscribed; replays are de-duplicated
        while not stop.wait(0.2):
            server.deliver("u_bob", first)
            server.deliver("u_bob", second)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        result = runner.invoke(app, ["listen", "--count", "2", "--timeout", "10", "--mark-read",
                                     "--mqtt-port", str(broker.port)])
    finally:
        stop.set()
        feeder.join()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] alice: one", lines[0])
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] \[g7\] u_carl: two", lines[1])
    assert len(lines) == 2
    # the listener exits only after its receipts reached the broker
    wait_until(lambda: {"s1", "s2"} <= set(server.receipts_of("u_bob", "delivered")), timeout=5)
    wait_until(lambda: server.receipts_of("u_bob", "read") == ["s1", "s2"], timeout=5)


def test_listen_ids_shows_the_server_ids_of_messages_and_actions(
    api: FakeApi, broker: BrokerThread, server: FakeChatServer
) -> None:
    logged_in(api, "u_bob", "bob", contacts={"alice": "u_alice"})
    ts = int(time.time() * 1000)
    edit = {"type": "edit", "id": "s8", "client_id": "c8", "from": "u_alice", "to": "u_bob", "group": None,
            "target": "s1", "body": {"text": "fixed"}, "ts": ts}
    message = {"type": "message", "id": "s9", "client_id": "c9", "from": "u_alice", "to": "u_bob", "group": None,
               "reply_to": "s1", "body": {"text": "see above"}, "ts": ts}
    stop = threading.Event()

    def feed() -> None:  # the edit until the listener confirmed it, then the message; repeats are de-duplicated
        while not stop.wait(0.2):
            got_edit = "s8" in server.receipts_of("u_bob", "delivered")
            server.deliver("u_bob", message if got_edit else edit)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        result = runner.invoke(app, ["listen", "--count", "1", "--timeout", "10", "--ids",
                                     "--mqtt-port", str(broker.port)])
    finally:
        stop.set()
        feeder.join()
    assert result.exit_code == 0, result.output
    lines = [line.split("] ", 1)[1] for line in result.stdout.splitlines()]
    assert lines == ["* alice edited s1: fixed  #s8", "alice (reply to s1): see above  #s9"]
    wait_until(lambda: {"s8", "s9"} <= set(server.receipts_of("u_bob", "delivered")), timeout=5)


def test_listen_times_out_short_of_count(api: FakeApi, broker: BrokerThread, server: FakeChatServer) -> None:
    logged_in(api, "u_bob", "bob")
    result = runner.invoke(app, ["listen", "--count", "1", "--timeout", "0.5", "--mqtt-port", str(broker.port)])
    assert result.exit_code == 1
    assert "timed out after 0 of 1 messages" in result.stderr


def test_chat_sends_each_line(api: FakeApi, broker: BrokerThread, server: FakeChatServer) -> None:
    logged_in(api, "u_alice", "alice")
    result = runner.invoke(app, ["chat", "bob", "--mqtt-port", str(broker.port)],
                           input="hello\n\nsecond line\n/quit\nnot sent\n")
    assert result.exit_code == 0, result.output
    texts = [orjson.loads(payload)["body"]["text"] for _, payload in server.outbox]
    assert texts == ["hello", "second line"]


def test_connection_options_reach_the_client(api: FakeApi) -> None:
    token = api.issue("u_alice")["access_token"]
    save_profile("default", alice_profile(token, server="http://saved.test:8000"))
    result = runner.invoke(app, ["send", "carol", "hi"])  # carol is unknown: fails before MQTT
    assert result.exit_code == 1
    assert api.endpoints[-1] == Endpoint("http://saved.test:8000", "saved.test", 1883, False)
    runner.invoke(app, ["send", "carol", "hi", "--ws", "--server", "http://10.1.2.3:8000"])
    assert api.endpoints[-1] == Endpoint("http://10.1.2.3:8000", "10.1.2.3", 8083, True)
    runner.invoke(app, ["send", "carol", "hi", "--ws", "--mqtt-host", "mq", "--mqtt-port", "9001"])
    assert api.endpoints[-1] == Endpoint("http://saved.test:8000", "mq", 9001, True)


def test_send_of_a_too_large_message_shows_too_large(
    api: FakeApi, broker: BrokerThread, server: FakeChatServer
) -> None:
    logged_in(api, "u_alice", "alice")
    result = runner.invoke(app, ["send", "bob", "x" * 131_000, "--mqtt-port", str(broker.port)])
    assert result.exit_code == 1
    assert re.fullmatch(r"error: message refused: too_large: envelope of \d+ bytes exceeds the limit of 65536\n",
                        result.stderr)
    assert server.outbox == []
    no_traceback(result)


# ------------------------------------------------------------------ --help


def _help(*args: str) -> str:
    """``chatmq ARGS --help`` as printed on a wide terminal (one line per option)."""
    from chatmq.run.cli import app as chatmq_app

    result = CliRunner().invoke(chatmq_app, [*args, "--help"], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under ``group`` (typer's own click types), with its path of names."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if getattr(command, "commands", None) is not None:
            yield from _commands(command, (*path, name))


def test_help_shows_every_help_text_whole_and_no_type_for_flags() -> None:
    """Square brackets in help texts are not taken for markup; a flag (``--ws``, ``--help``) shows no ``<bool>``."""
    from chatmq.run.cli import app as chatmq_app

    root = typer.main.get_command(chatmq_app)
    for path, command in _commands(root):
        shown = " ".join(_help(*path).replace("│", " ").split())
        assert "<bool>" not in shown, path
        for param in command.params:
            text = getattr(param, "help", None)
            if text and "[" in text:
                assert " ".join(text.replace("\\[", "[").split()) in shown, (path, text)
    assert "Username: [a-z0-9_.-]{3,32}." in _help("client", "register")


def test_a_prompted_password_is_not_shown_as_required() -> None:
    for command in ("register", "login"):
        [password] = [line for line in _help("client", command).splitlines() if "--password" in line]
        assert "required" not in password
        assert not password.lstrip("│ ").startswith("*")  # the asterisk of a required option


def test_client_help_lists_every_client_command() -> None:
    shown = _help("client")
    assert "Chat from the command line" in shown
    for name in ("register", "login", "logout", "send", "listen", "chat", "contacts", "block", "unblock", "blocks",
                 "search", "conversations", "read", "sessions", "presence"):
        assert re.search(rf"│ {name} ", shown), name


def test_each_run_of_a_profile_connects_as_the_same_device(api: FakeApi) -> None:
    """The server keeps messages pending per MQTT client id (a user's devices, issue 15): a new id a run
    would make every ``send`` a new device holding the user's messages for good. A profile keeps one
    device name; its one-shot commands, ``listen`` and ``chat`` each have their own client id of it (so
    that a ``listen`` and a ``send`` of one profile at once do not take over each other's session)."""
    save_profile("default", alice_profile(jwt_token(3600)))
    ids: dict[str, list[str]] = {}
    for role in ("send", "send", "listen", "chat", "send"):
        with cli._session("default", None, None, None, ws=False, role=role) as (client, _):
            ids.setdefault(role, []).append(client.client_id)
    device = load_profile("default").device
    assert len(device) == 12
    assert ids == {"send": [f"cli-{device}-send"] * 3, "listen": [f"cli-{device}-listen"],
                   "chat": [f"cli-{device}-chat"]}
    save_profile("other", alice_profile(jwt_token(3600)))
    with cli._session("other", None, None, None, ws=False) as (client, _):
        assert client.client_id != f"cli-{device}-send"  # another profile is another device
