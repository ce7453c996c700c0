"""Shared fixtures of the unit tests.

API tests: ``api`` is an ``ApiHarness`` (a real ``SQLiteStore`` in ``tmp_path``, a real
``TokenService``, a recording notifier and an httpx client on the app).

Chat service tests: ``chat`` is a started ``Chat`` (``tests/unit/chat_fixtures.py``), ``router`` a
``Router`` on it; a module that needs another harness defines its own ``chat``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from chatmq.core import ids
from chatmq.core.auth import TokenService, hash_secret
from chatmq.services.api import create_app
from chatmq.services.chat.router import Router
from chatmq.services.registry.sessions import Connection
from chatmq.services.store.sqlite import SQLiteStore
from tests.fakes.push import FakePushServer
from tests.unit.chat_fixtures import Chat, open_chat
from tests.unit.fake_influx import FakeInflux
from tests.unit.test_sdk_broker import BrokerThread, FakeChatServer

TOKEN_KEY = "x" * 40
PASSWORD = "correct horse battery"


class RecordingNotifier:
    """A ``Notifier`` that keeps every call as ``(user_ids, envelope)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    async def notify(self, user_ids: list[str], envelope: dict[str, Any]) -> None:
        self.calls.append((list(user_ids), envelope))

    def events(self, name: str) -> list[tuple[list[str], dict[str, Any]]]:
        """The calls whose envelope is the ``event`` named ``name``."""
        return [c for c in self.calls if c[1].get("type") == "event" and c[1].get("event") == name]


class FakeControl:
    """A ``SessionControl`` over a list of connections; kicking removes them."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []

    def sessions(self) -> list[Connection]:
        return list(self.connections)

    async def kick(self, client_id: str) -> bool:
        before = len(self.connections)
        self.connections = [c for c in self.connections if c.client_id != client_id]
        return len(self.connections) < before

    async def kick_principal(self, principal_id: str) -> int:
        before = len(self.connections)
        self.connections = [c for c in self.connections if c.id != principal_id]
        return before - len(self.connections)

    async def online_users(self) -> int:
        return len({c.id for c in self.connections if c.kind == "user"})


PHONE_KEY = b"k" * 32


class RecordingFeed:
    """The API's ``ChatFeed``, recording what it was told."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, list[str]]] = []
        self.reads: list[tuple[str, list[str]]] = []
        self.visibility: list[tuple[str, str]] = []

    async def blocks_changed(self, blocker: str, blocked: str, groups: list[str]) -> None:
        self.changes.append((blocker, blocked, groups))

    async def read(self, user: str, server_ids: list[str]) -> None:
        self.reads.append((user, server_ids))

    async def presence_visibility(self, user: str, visibility: Literal["contacts", "nobody"]) -> None:
        self.visibility.append((user, visibility))


@dataclass
class ApiHarness:
    """Everything an API test touches."""

    client: httpx.AsyncClient
    store: SQLiteStore
    tokens: TokenService
    notifier: RecordingNotifier
    control: FakeControl
    feed: RecordingFeed = field(default_factory=RecordingFeed)
    _hash: list[str] = field(default_factory=list)

    async def user(self, username: str, *, admin: bool = False, display_name: str | None = None) -> str:
        """A registered user (made through the store, password ``PASSWORD``); returns its id."""
        if not self._hash:
            self._hash.append(hash_secret(PASSWORD))
        user = await self.store.create_user(ids.user_id(), username, self._hash[0], display_name, admin)
        return user.user_id

    def auth(self, user_id: str) -> dict[str, str]:
        """Headers carrying a fresh access token of ``user_id``."""
        return {"Authorization": f"Bearer {self.tokens.issue(user_id).access_token}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.start()
    tokens = TokenService(TOKEN_KEY, 900, 3600)
    notifier = RecordingNotifier()
    control = FakeControl()
    feed = RecordingFeed()
    app = create_app(store, tokens, notifier, control=control, feed=feed, phone_key=PHONE_KEY)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield ApiHarness(client, store, tokens, notifier, control, feed)
    finally:
        await store.stop()


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    async with open_chat(tmp_path) as c:
        yield c


@pytest.fixture
def router(chat: Chat) -> Router:
    return Router(chat.bus, chat.store, chat.outlet)


# an in-process amqtt broker with a fake chat server on it (tests/unit/test_sdk_broker.py)
@pytest.fixture
def broker() -> Iterator[BrokerThread]:
    b = BrokerThread()
    b.start()
    yield b
    b.stop()


@pytest.fixture
def server(broker: BrokerThread) -> Iterator[FakeChatServer]:
    s = FakeChatServer(broker.port)
    yield s
    s.close()


# a local OAuth token endpoint + FCM v1 + push webhook (tests/fakes/push.py), one per test module
@pytest.fixture(scope="module")
def push_server() -> Iterator[FakePushServer]:
    with FakePushServer() as fake:
        yield fake


@pytest.fixture
def push_fake(push_server: FakePushServer) -> FakePushServer:
    """``push_server`` with nothing sent or scripted yet."""
    push_server.reset()
    return push_server


@pytest.fixture
async def influx() -> AsyncIterator[FakeInflux]:
    """A fake InfluxDB v2 write API on a local port (``tests/unit/fake_influx.py``)."""
    fake = FakeInflux()
    await fake.up()
    yield fake
    await fake.down()
