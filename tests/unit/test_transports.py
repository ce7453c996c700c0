"""How the broker writes to WebSocket connections (``chatmq.broker.transports.QueuedTransport``)."""

from __future__ import annotations

import asyncio

from chatmq.broker.transports import QueuedTransport


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
