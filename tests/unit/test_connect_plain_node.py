"""What a client sees of its CONNECT on the plain node (in-process, raw sockets): CONNACK codes,
refusals, closes, and the CONNACK and SUBACK of a CONNECT sent with a SUBSCRIBE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatmq.broker.plain import PlainBroker
from chatmq.broker.wire import encode_connect, encode_subscribe
from chatmq.core.ports import free_port


@pytest.fixture
async def port() -> AsyncIterator[int]:
    port = free_port()
    node = PlainBroker("127.0.0.1", port)
    await node.start()
    try:
        yield port
    finally:
        await node.shutdown()


def _s(raw: bytes) -> bytes:
    return len(raw).to_bytes(2, "big") + raw


def _connect(flags: int, *fields: bytes, level: int = 4) -> bytes:
    body = _s(b"MQTT") + bytes((level, flags)) + b"\x00\x3c" + b"".join(_s(f) for f in fields)
    return bytes((0x10, len(body))) + body


async def _reply(port: int, data: bytes) -> bytes:
    """Everything the node sends until it closes the connection (or 2 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        async with asyncio.timeout(2):
            while chunk := await reader.read(4096):
                received += chunk
    except TimeoutError:
        received += b"<open>"
    finally:
        writer.close()
    return received


@pytest.mark.parametrize(("connect", "reply"), [
    (_connect(0x02, b"old", level=3), b"\x20\x02\x00\x01"),  # [MQTT-3.1.2-2]
    (_connect(0x82, b"cid"), b"\x20\x02\x00\x04"),  # user name flag, no user name
    (_connect(0x42, b"cid"), b"\x20\x02\x00\x04"),  # password without user name [MQTT-3.1.2-22]
    (_connect(0x00, b""), b"\x20\x02\x00\x02"),  # empty client id, persistent [MQTT-3.1.3-8]
])
async def test_refused_connects_get_their_return_code_then_the_close(port: int, connect: bytes, reply: bytes) -> None:
    assert await _reply(port, connect) == reply


@pytest.mark.parametrize("data", [
    _connect(0x02, b"\xc3\x28"),  # client id not UTF-8 [MQTT-1.5.3-1]
    _connect(0x03, b"cid"),  # reserved flag [MQTT-3.1.2-3]
    _connect(0x06, b"cid"),  # will flag without will topic and message [MQTT-3.1.2-9]
    _connect(0x02 | 0x18 | 0x04, b"cid", b"t", b"m"),  # will QoS 3 [MQTT-3.1.2-14]
    b"\x12" + _connect(0x02, b"cid")[1:],  # CONNECT with reserved fixed-header flags [MQTT-2.2.2-2]
    b"\xc0\x00",  # PINGREQ first [MQTT-3.1.0-1]
    b"\x10\xff\xff\xff\x7f",  # a CONNECT announcing 256 MiB
    b"\x10\x00",
])
async def test_bad_connects_are_closed_without_a_connack(port: int, data: bytes) -> None:
    assert await _reply(port, data) == b""


async def test_connect_with_subscribe_is_answered_connack_then_suback(port: int) -> None:
    reply = await _reply(port, encode_connect("both") + encode_subscribe(9, [("a/b", 1)]))
    assert reply == b"\x20\x02\x00\x00" + b"\x90\x03\x00\x09\x01" + b"<open>"


async def test_a_persistent_session_comes_back_with_session_present(port: int) -> None:
    first = encode_connect("keeper", clean_session=False)
    assert await _reply(port, first + b"\xe0\x00") == b"\x20\x02\x00\x00"
    assert await _reply(port, first + b"\xe0\x00") == b"\x20\x02\x01\x00"  # [MQTT-3.2.2-2]
