"""Session control over ``chat.control``: the API's ``BusSessionControl`` and the nodes' ``ControlWorker``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatmq.core.bus.memory import MemoryBus
from chatmq.core.control import announce_takeover
from chatmq.core.ids import now_ms
from chatmq.core.records import Connected
from chatmq.core.topics import CONTROL, topic_specs
from chatmq.services.registry.control import BusSessionControl, ControlWorker
from chatmq.services.registry.sessions import ConnectionTable, SessionRegistry


class FakeNode:
    """A node's connections by client id and owner."""

    def __init__(self, conns: dict[str, str]) -> None:
        self.conns = dict(conns)  # client id -> principal

    async def kick(self, client_id: str) -> bool:
        return self.conns.pop(client_id, None) is not None

    async def take_over(self, client_id: str, kind: str, principal: str) -> bool:
        return kind == "user" and self.conns.get(client_id) == principal and await self.kick(client_id)

    async def kick_principal(self, principal_id: str) -> int:
        doomed = [c for c, p in self.conns.items() if p == principal_id]
        for c in doomed:
            del self.conns[c]
        return len(doomed)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus(default_partitions=2)
    await b.start()
    await b.ensure_topics(topic_specs(2, ["n1", "n2"]))
    yield b
    await b.stop()


async def eventually(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def connection(node: str, client_id: str, principal: str) -> Connected:
    return Connected("user", principal, client_id, node, "tcp", now_ms())


async def test_kick_goes_to_the_node_holding_the_session(bus: MemoryBus) -> None:
    n1, n2 = FakeNode({"c1": "alice"}), FakeNode({"c2": "bob"})
    table = ConnectionTable()
    table.apply(connection("n1", "c1", "alice"))
    table.apply(connection("n2", "c2", "bob"))
    control = BusSessionControl(bus, table, SessionRegistry())
    async with ControlWorker(bus, "n1", n1), ControlWorker(bus, "n2", n2):
        assert await control.kick("c2")
        assert not await control.kick("nobody")  # no node reported it
        await eventually(lambda: "c2" not in n2.conns)
        assert n1.conns == {"c1": "alice"}
        assert [c.client_id for c in control.sessions()] == ["c1", "c2"]  # until the nodes report the close


async def test_kick_principal_reaches_every_node(bus: MemoryBus) -> None:
    n1, n2 = FakeNode({"c1": "alice", "c3": "carol"}), FakeNode({"c2": "alice"})
    table = ConnectionTable()
    table.apply(connection("n1", "c1", "alice"))
    control = BusSessionControl(bus, table, SessionRegistry())
    async with ControlWorker(bus, "n1", n1), ControlWorker(bus, "n2", n2):
        assert await control.kick_principal("alice") == 1  # the one this API process knows of
        await eventually(lambda: n1.conns == {"c3": "carol"} and n2.conns == {})


async def test_a_takeover_closes_the_client_id_on_the_other_nodes_only(bus: MemoryBus) -> None:
    n1, n2 = FakeNode({"same": "alice"}), FakeNode({"same": "alice", "other": "bob"})
    async with ControlWorker(bus, "n1", n1), ControlWorker(bus, "n2", n2):
        await announce_takeover(bus, "n2", "same", "user", "alice")  # the client connected again, on n2
        await eventually(lambda: "same" not in n1.conns)
        await asyncio.sleep(0.1)
        assert n2.conns == {"same": "alice", "other": "bob"}


async def test_a_takeover_by_another_principal_closes_nothing(bus: MemoryBus) -> None:
    import orjson

    n1 = FakeNode({"phone": "alice", "later": "alice"})
    worker = ControlWorker(bus, "n1", n1)
    async with worker:
        await announce_takeover(bus, "n2", "phone", "user", "mallory")  # someone else's client id
        await announce_takeover(bus, "n2", "phone", "device", "alice")  # not alice herself
        await bus.publish(CONTROL, b"phone", orjson.dumps(  # a takeover that names nobody (an older node)
            {"action": "takeover", "client_id": "phone", "node": "n2", "ts": now_ms()}))
        await eventually(lambda: worker.processed == 3)
        assert n1.conns == {"phone": "alice", "later": "alice"}
        await announce_takeover(bus, "n2", "later", "user", "alice")  # the same user does take it over
        await eventually(lambda: n1.conns == {"phone": "alice"})


async def test_commands_from_before_the_node_started_are_ignored(bus: MemoryBus) -> None:
    import orjson

    await bus.publish(CONTROL, b"alice", orjson.dumps({"action": "kick_principal", "id": "alice", "ts": 1}))
    await bus.publish(CONTROL, b"x", orjson.dumps({"action": "reboot", "ts": now_ms() + 60_000}))
    n1 = FakeNode({"c1": "alice"})
    worker = ControlWorker(bus, "n1", n1)
    async with worker:
        await eventually(lambda: worker.processed == 2)
    assert n1.conns == {"c1": "alice"}
