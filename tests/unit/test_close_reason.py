"""``CloseReason``: every way a client connection of a node ends is counted under its own reason."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from chatmq.broker.close_reason import CloseReason
from chatmq.broker.plain import PlainBroker
from chatmq.broker.wire import encode_connect
from chatmq.core.ports import free_port
from tests.unit.chat_fixtures import eventually

_writers: list[asyncio.StreamWriter] = []


@pytest.fixture
async def node() -> AsyncIterator[tuple[PlainBroker, int]]:
    port = free_port()
    broker = PlainBroker("127.0.0.1", port)
    await broker.start()
    try:
        yield broker, port
    finally:
        for writer in _writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        _writers.clear()
        await broker.shutdown()


async def _connect(port: int, client_id: str, keepalive: int = 60) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _writers.append(writer)
    writer.write(encode_connect(client_id, keepalive=keepalive))
    async with asyncio.timeout(5):
        assert (await reader.readexactly(4))[:2] == b"\x20\x02"  # CONNACK
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader) -> None:
    async with asyncio.timeout(5):
        while await reader.read(4096):
            pass


async def _counted(broker: PlainBroker, reason: CloseReason, n: int = 1) -> None:
    async def reached() -> bool:
        return broker.closes[reason] >= n

    await eventually(reached, timeout=5)


async def test_disconnect_lost_connection_and_malformed_packet(node: tuple[PlainBroker, int]) -> None:
    broker, port = node
    _, polite = await _connect(port, "polite")
    polite.write(b"\xe0\x00")  # DISCONNECT
    await _counted(broker, CloseReason.CLIENT_DISCONNECT)

    _, rude = await _connect(port, "rude")
    rude.close()  # no DISCONNECT
    await _counted(broker, CloseReason.CONNECTION_LOST)

    reader, broken = await _connect(port, "broken")
    broken.write(b"\x32\x01\x00")  # a QoS 1 PUBLISH too short for its topic
    await _closed_by_server(reader)
    await _counted(broker, CloseReason.PROTOCOL_ERROR)
    assert broker.closes[CloseReason.CLIENT_DISCONNECT] == broker.closes[CloseReason.CONNECTION_LOST] == 1


async def test_takeover_and_keepalive(node: tuple[PlainBroker, int]) -> None:
    broker, port = node
    first_reader, _ = await _connect(port, "same-id")
    await _connect(port, "same-id")
    await _closed_by_server(first_reader)
    await _counted(broker, CloseReason.TAKEN_OVER)
    assert broker.closes[CloseReason.CONNECTION_LOST] == 0  # the takeover's own reason is kept

    quiet_reader, _ = await _connect(port, "quiet", keepalive=1)
    await _closed_by_server(quiet_reader)  # nothing sent for 1.5 s
    await _counted(broker, CloseReason.KEEPALIVE_TIMEOUT)


async def test_closing_twice_keeps_the_first_reason(node: tuple[PlainBroker, int]) -> None:
    broker, port = node
    reader, _ = await _connect(port, "twice")
    _, handler = broker._sessions["twice"]
    handler.close(CloseReason.KICKED)
    handler.close(CloseReason.SHUTDOWN)
    await _closed_by_server(reader)
    await _counted(broker, CloseReason.KICKED)
    assert broker.closes[CloseReason.SHUTDOWN] == 0
