"""Shared helpers of the chat-service unit tests (router, group router, replay, gateway, outlet, notices).

Everything here is real: a started ``MemoryBus`` with every chatmq topic declared, a real
``SQLiteStore`` in the test's ``tmp_path``, a real ``SessionRegistry`` and ``Outlet``. A
``Probe`` is a separate consumer group that reads what lands on topics (by default the
delivery topics of both nodes), so the services' own consumer groups are left alone.

Outbox records are built the way ``NodeGateway.published`` builds them (the envelope is
parsed by ``parse_outbox`` into the typed ``Outbox`` record), so the services see exactly what a
node sends; ``record`` builds a record from JSON, as a Kafka consumer would get it.
The ``chat`` fixture (``tests/unit/conftest.py``) wraps ``open_chat``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.identity import Identity, outbox_topic
from chatmq.core import ids
from chatmq.core.bus.base import Record
from chatmq.core.bus.memory import MemoryBus, MemoryConsumer
from chatmq.core.envelopes import CommandIn, MessageIn, PresenceIn, message_envelope, parse_outbox
from chatmq.core.records import DELIVERIES, BusItem, Notice, Offline, Online, Outbox, encode
from chatmq.core.topics import GROUP_OUTBOX, NOTICES, OUTBOX, PRESENCE, deliver_topic, topic_specs
from chatmq.core.worker import BusWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.registry.sessions import SessionRegistry
from chatmq.services.store.base import NewMessage, PendingItem
from chatmq.services.store.sqlite import SQLiteStore

NODE = "n1"
OTHER_NODE = "n2"
NODES = [NODE, OTHER_NODE]
PARTITIONS = 8
MAX_PAYLOAD = 64 * 1024

_offsets = itertools.count()


def record(topic: str, key: str, value: dict[str, Any] | BusItem) -> Record:
    """A record as a consumer would get it (for calling ``process`` directly): a dict as JSON (as from
    Kafka), a typed record as the object itself (as from the in-process bus)."""
    if isinstance(value, BusItem):
        return Record(topic, 0, next(_offsets), key.encode(), b"", value)
    return Record(topic, 0, next(_offsets), key.encode(), orjson.dumps(value))


def wire(r: Record) -> Any:
    """The JSON of a record as the Kafka bus would carry it (a typed record encoded)."""
    return orjson.loads(r.value if r.item is None else encode(r.item))  # type: ignore[arg-type]


def message(client_id: str, *, to: str | None = None, group: str | None = None, text: str = "hi") -> dict[str, Any]:
    """An outbox ``message`` envelope as a client sends it."""
    env: dict[str, Any] = {"type": "message", "id": client_id, "body": {"text": text}}
    if to is not None:
        env["to"] = to
    if group is not None:
        env["group"] = group
    return env


def receipt(status: str, server_ids: list[str]) -> dict[str, Any]:
    """An outbox ``receipt`` envelope as a client sends it."""
    return {"type": "receipt", "status": status, "ids": server_ids}


def outbox_record(sender: str, env: dict[str, Any], node: str = NODE, client: str = "") -> Record:
    """The bus record ``NodeGateway.published`` makes of ``env`` from ``sender`` (MQTT client id ``client``)
    on ``node``."""
    parsed = parse_outbox(orjson.dumps(env), MAX_PAYLOAD)
    assert not isinstance(parsed, CommandIn | PresenceIn), "a command goes to chat.devices, a presence to chat.presence"
    value = Outbox(sender, node, parsed, client)
    if not isinstance(parsed, MessageIn):
        return record(OUTBOX, sender, value)
    if parsed.group is not None:
        return record(GROUP_OUTBOX, parsed.group, value)
    return record(OUTBOX, ids.conversation_key(sender, parsed.to or ""), value)


def presence_record(event: str, user: str, node: str = NODE, epoch: int = 1) -> Record:
    """A ``chat.presence`` record as the gateway publishes it."""
    return record(PRESENCE, user, Online(user, node, epoch) if event == "online" else Offline(user, node, epoch))


def notices_record(users: list[str], env: dict[str, Any]) -> Record:
    """A ``chat.notices`` record as ``BusNotifier`` publishes it."""
    return record(NOTICES, users[0], Notice(users, msgspec.Raw(orjson.dumps(env))))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record of a ``chat.deliver.<node>`` topic."""

    node: str
    key: str
    user: str
    envs: list[dict[str, Any]]
    replay: str | None
    epoch: int | None


class Probe:
    """A consumer in its own group that collects what lands on ``topics``."""

    def __init__(self, bus: MemoryBus, topics: list[str], group: str = "probe") -> None:
        self.consumer: MemoryConsumer = bus.consumer(group, topics)
        self.records: list[Record] = []

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def drain(self) -> list[Record]:
        """Everything that arrived since the last call (in order per partition)."""
        got = await self.consumer.getmany(timeout=0, max_records=10_000)
        if got:
            await self.consumer.commit(got)
        self.records.extend(got)
        return got

    async def wait_for(self, count: int, timeout: float = 3.0) -> list[Record]:
        """Wait until at least ``count`` records arrived since the last call; return them."""
        got: list[Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"expected {count} records, got {len(got)}: {got}")
            batch = await self.consumer.getmany(timeout=min(remaining, 0.05), max_records=10_000)
            if batch:
                await self.consumer.commit(batch)
                got.extend(batch)
        self.records.extend(got)
        return got


def as_deliveries(r: Record) -> list[Delivery]:
    """The per-user deliveries of one record; a group fan-out record is one per member, with the
    ``to`` the node fills in."""
    item = DELIVERIES.read(r)
    node = r.topic.removeprefix("chat.deliver.")
    if item.users is not None:
        return [Delivery(node, r.key.decode(), user, [{**orjson.loads(bytes(item.env)), "to": user}], None, None)
                for user in item.users]
    assert item.user is not None
    return [Delivery(node, r.key.decode(), item.user, [orjson.loads(bytes(e)) for e in item.envs], item.replay,
                     item.epoch)]


def envs_of(deliveries: list[Delivery], user: str, node: str | None = None) -> list[dict[str, Any]]:
    """Every envelope sent to ``user`` (on ``node``, or any node), in order."""
    return [e for d in deliveries if d.user == user and (node is None or d.node == node) for e in d.envs]


async def through_gateway(chat: Chat, worker: BusWorker, sender: str, envelope: dict[str, Any],
                          deliveries: int) -> list[Delivery]:
    """Start ``worker``, publish ``envelope`` from ``sender`` the way node ``NODE`` does, and wait
    for ``deliveries`` per-user deliveries; the worker is stopped again."""
    gateway = NodeGateway(chat.bus, NODE, MAX_PAYLOAD)
    await worker.start()
    try:
        await gateway.published(Identity("user", sender), outbox_topic(sender), orjson.dumps(envelope))
        return await chat.wait_deliveries(deliveries)
    finally:
        await worker.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Poll ``check`` until it holds (AssertionError after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Chat:
    """The real parts every chat-service test uses, started."""

    def __init__(self, tmp_path: Path) -> None:
        self.bus = MemoryBus(default_partitions=PARTITIONS)
        self.store = SQLiteStore(tmp_path / "db")
        self.registry = SessionRegistry()
        self.outlet = Outlet(self.bus, self.registry, self.store)
        self.probe = Probe(self.bus, [deliver_topic(n) for n in NODES])
        self._names = itertools.count()

    async def start(self) -> None:
        await self.bus.start()
        await self.bus.ensure_topics(topic_specs(PARTITIONS, NODES))
        await self.store.start()
        await self.probe.start()

    async def stop(self) -> None:
        await self.probe.stop()
        await self.store.stop()
        await self.bus.stop()

    async def user(self, name: str | None = None) -> str:
        """A new registered user; returns its id."""
        username = name or f"user{next(self._names)}"
        created = await self.store.create_user(ids.user_id(), username, "not-a-real-hash", None)
        return created.user_id

    def online(self, user: str, node: str = NODE, epoch: int = 1) -> None:
        """Tell the registry that ``user`` is on ``node``."""
        assert self.registry.apply(Online(user, node, epoch))

    async def deliveries(self) -> list[Delivery]:
        """The delivery records that arrived since the last call."""
        return [d for r in await self.probe.drain() for d in as_deliveries(r)]

    async def wait_deliveries(self, count: int, timeout: float = 3.0) -> list[Delivery]:
        """Wait for at least ``count`` per-user deliveries since the last call."""
        got: list[Delivery] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"expected {count} deliveries, got {len(got)}: {got}")
            got += [d for r in await self.probe.wait_for(1, remaining) for d in as_deliveries(r)]
        return got

    async def pending(self, user: str) -> list[PendingItem]:
        return await self.store.pending(user, 0, 10_000)

    async def commit_message(self, sender: str, to: str, client_id: str, text: str = "hi") -> str:
        """A 1:1 message committed straight into the store (pending for ``to``); returns its server id."""
        sid, ts = ids.server_id(), ids.now_ms()
        body = orjson.dumps({"text": text})
        env = message_envelope(sid, client_id, sender, to, None, msgspec.Raw(body), ts)
        [result] = await self.store.accept_messages([
            NewMessage(sid, client_id, sender, to, None, ids.conversation_key(sender, to), body, ts, {to: env})
        ])
        assert not result.duplicate
        return sid


@asynccontextmanager
async def open_chat(tmp_path: Path) -> AsyncIterator[Chat]:
    """A started ``Chat``, stopped on exit."""
    chat = Chat(tmp_path)
    await chat.start()
    try:
        yield chat
    finally:
        await chat.stop()
