"""How the broker writes to WebSocket connections (``chatmq.broker.transports.QueuedTransport``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct

from amqtt.adapters import StreamWriterAdapter

from chatmq.broker.transports import QueuedTransport, close_quietly


async def test_a_closed_connection_lets_go_of_what_it_had_not_sent() -> None:
    stuck: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # a peer that never reads
    closed: list[bool] = []

    async def send(data: bytes) -> None:
        await stuck

    transport = QueuedTransport(send, lambda: closed.append(True))
    transport.write(b"x" * 100_000)
    await asyncio.sleep(0)  # the sender took it and waits on the peer
    for _ in range(3):
        transport.write(b"x" * 100_000)  # queued behind it
    assert transport.buffered() == 400_000
    transport.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert (transport.buffered(), transport._pending, closed) == (0, [], [True])


async def test_closing_a_connection_the_peer_reset_leaves_no_unretrieved_error() -> None:
    """amqtt's own close drained first, so a reset skipped its wait and asyncio later logged
    "Future exception was never retrieved" for the stream's closed future."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await accepted
    client.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.transport.abort()  # a reset, as a refused client that hangs up at once
    with contextlib.suppress(ConnectionError):
        await reader.read(10)  # the server has seen the reset
    closed: asyncio.Future[None] = writer._protocol._closed  # type: ignore[attr-defined]
    adapter = StreamWriterAdapter(writer)
    await close_quietly(adapter)
    await close_quietly(adapter)  # twice is harmless
    assert closed.done()
    assert not closed._log_traceback  # retrieved: nothing to log when collected
    del reader, writer, adapter, closed
    gc.collect()
    await asyncio.sleep(0)
    server.close()
    await server.wait_closed()
    assert [c for c in unhandled if "never retrieved" in str(c.get("message"))] == []
