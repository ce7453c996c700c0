"""The plain node in-process (``chatmq.broker.plain``): bad bytes never crash it."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from pathlib import Path

import pytest

from chatmq.broker.node import TlsListeners
from chatmq.broker.plain import PlainBroker
from chatmq.broker.wire import encode_connect, encode_subscribe
from chatmq.core.ports import free_port
from chatmq.core.tls import ServerTls
from tests.fakes.tls import TestCA


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
