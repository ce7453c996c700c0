"""The plain node in-process (``chatmq.broker.plain``): bad bytes never crash it."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from pathlib import Path

import pytest

from chatmq.broker.admission import ConnectionPolicy
from chatmq.broker.node import TlsListeners
from chatmq.broker.plain import PlainBroker
from chatmq.broker.wire import encode_connect, encode_disconnect, encode_subscribe
from chatmq.core.ports import free_port
from chatmq.core.tls import ServerTls
from tests.fakes.tls import TestCA
from tests.unit.chat_fixtures import eventually


async def _session(port: int, junk: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(encode_connect("fuzz") + junk)
        await writer.drain()
        async with asyncio.timeout(2):
            while await reader.read(4096):
                pass
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_id: str) -> None:
    """CONNECT and SUBSCRIBE ``ok/t``, then a PUBLISH there comes back."""
    writer.write(encode_connect(client_id) + encode_subscribe(1, [("ok/t", 0)]))
    async with asyncio.timeout(5):
        assert (await reader.readexactly(9))[:2] == b"\x20\x02"
        writer.write(b"\x30\x07\x00\x04ok/tA")
        assert await reader.readexactly(9) == b"\x30\x07\x00\x04ok/tA"
    writer.close()


async def test_random_bytes_after_connect_close_at_most_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    node = PlainBroker("127.0.0.1", port)
    await node.start()
    rng = random.Random(3)
    prefixes = [b"", b"\x30", b"\x32", b"\x34", b"\x82", b"\xa2", b"\x62\x02", b"\x40\x03", b"\xc0\x00", b"\x10"]
    try:
        with caplog.at_level(logging.WARNING, logger="chatmq"):
            await asyncio.gather(*(
                _session(port, rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 60)))
                for _ in range(150)
            ))
        await _round_trip(*await asyncio.open_connection("127.0.0.1", port), "healthy")
    finally:
        await node.shutdown()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_tls_only_plain_node_serves_mqtts_and_keeps_the_plain_port_closed(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    files = ca.server()
    plain_port, mqtts_port = free_port(), free_port()
    node = PlainBroker("127.0.0.1", plain_port, tls=TlsListeners(ServerTls(files.cert, files.key), mqtts_port,
                                                                 only=True))
    await node.start()
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", plain_port)
        context = ssl.create_default_context(cafile=str(ca.ca_file))
        connection = await asyncio.open_connection("127.0.0.1", mqtts_port, ssl=context, server_hostname="127.0.0.1")
        await _round_trip(*connection, "secure")
    finally:
        await node.shutdown()


async def _connected(port: int, client_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_connect(client_id))
    async with asyncio.timeout(5):
        assert (await reader.readexactly(4))[:2] == b"\x20\x02"  # CONNACK
    return reader, writer


@pytest.mark.parametrize("goodbye", ["disconnect", "drop"])
async def test_a_storm_of_ended_connections_is_cleaned_up_a_few_per_turn_each_once(goodbye: str) -> None:
    """Thousands of connections ending at once must not run their clean-up in one turn of the loop (the soak's
    ping stalled 0.7 s): every ended connection, by DISCONNECT or dropped, waits for its turn at the node's pacer
    once, before its clean-up, and then its session is gone."""
    port = free_port()
    node = PlainBroker("127.0.0.1", port, policy=ConnectionPolicy(sessions_per_turn=2))
    await node.start()
    try:
        clients = [await _connected(port, f"storm-{i}") for i in range(30)]
        passed, waited = node.pacer.passed, node.pacer.waited
        for _reader, writer in clients:
            if goodbye == "disconnect":
                writer.write(encode_disconnect())
            writer.close()

        async def all_ended() -> bool:
            return node.pacer.passed >= passed + 30 and not any(cid.startswith("storm-") for cid in node._sessions)

        await eventually(all_ended, timeout=10)
        assert node.pacer.passed == passed + 30  # each ending once: none skipped its turn, none went twice
        assert node.pacer.waited > waited  # they came in together: most waited for a later turn
        await _round_trip(*await asyncio.open_connection("127.0.0.1", port), "after-the-storm")
    finally:
        await node.shutdown()
