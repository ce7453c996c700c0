"""How the broker's own read and write paths reach a connection under amqtt's adapters.

amqtt (pinned) wraps every connection in a ``ReaderAdapter``/``WriterAdapter`` whose reads are
per packet field and whose WebSocket writer is not safe for concurrent use. The delivery path
reads in large chunks and writes whole batches instead, through the objects here:

* ``chunk_reader(reader)``: an async callable returning the next bytes received (``b""`` at
  the end of the connection);
* ``transport_for(writer)``: an ``outbox.Transport`` for the connection, which also ``close()``s it;
* ``BinaryWebSocketsReader``: amqtt's WebSocket reader for the CONNECT, refusing text frames;
* ``close_quietly(writer)``: closes a connection whose peer may have hung up first.

MQTT over WebSocket is carried in binary frames only (MQTT 3.1.1 §6.0, [MQTT-6.0.0-1]): a text
frame closes the connection (``MalformedPacketError`` from the chunk reader; ``NoDataError``,
after a close with code 1003, from the CONNECT reader) instead of being decoded as UTF-8.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Awaitable, Callable

from amqtt.adapters import (
    ReaderAdapter,
    StreamReaderAdapter,
    StreamWriterAdapter,
    WebSocketsReader,
    WebSocketsWriter,
    WriterAdapter,
)
from amqtt.errors import NoDataError
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from chatmq.broker.wire import MalformedPacketError

CHUNK = 256 * 1024


def chunk_reader(reader: ReaderAdapter) -> Callable[[], Awaitable[bytes]]:
    """The fastest way to read ``reader``'s connection in chunks."""
    if isinstance(reader, StreamReaderAdapter):
        stream: asyncio.StreamReader = reader._reader

        async def read_stream() -> bytes:
            try:
                data: bytes = await stream.read(CHUNK)
            except (ConnectionError, OSError):
                return b""
            return data

        return read_stream
    if isinstance(reader, WebSocketsReader):
        conn: Connection = reader._protocol
        leftover: list[bytes] = [reader._stream.read()]  # what amqtt read past the CONNECT

        async def read_ws() -> bytes:
            if leftover:
                rest = leftover.pop()
                if rest:
                    return bytes(rest)
            try:
                message: str | bytes = await conn.recv()
            except ConnectionClosed:
                return b""
            if isinstance(message, str):
                raise MalformedPacketError("a WebSocket text frame: MQTT travels in binary frames [MQTT-6.0.0-1]")
            return bytes(message)

        return read_ws

    async def read_any() -> bytes:
        try:
            data: bytes = await reader.read(1)
        except (ConnectionError, OSError, EOFError):
            return b""
        return data

    return read_any


class BinaryWebSocketsReader(WebSocketsReader):  # type: ignore[misc]
    """amqtt's ``WebSocketsReader`` (used for the CONNECT), closing the connection on a text frame
    (close code 1003, unsupported data) with ``NoDataError`` rather than decoding it."""

    _stream: io.BytesIO

    async def _feed_buffer(self, n: int = 1) -> None:
        buffer = bytearray(self._stream.read())
        while len(buffer) < n:
            try:
                message: str | bytes = await self._protocol.recv()
            except ConnectionClosed:
                break
            if isinstance(message, str):
                await self._protocol.close(CloseCode.UNSUPPORTED_DATA, "MQTT needs binary frames")
                raise NoDataError("a WebSocket text frame: MQTT travels in binary frames [MQTT-6.0.0-1]")
            buffer.extend(message)
        self._stream = io.BytesIO(buffer)


class StreamTransport:
    """A TCP (or TLS) connection: writes go straight to the asyncio transport."""

    __slots__ = ("_drains", "_writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._drains: set[asyncio.Future[None]] = set()

    def write(self, data: bytes) -> None:
        if not self._writer.transport.is_closing():
            self._writer.transport.write(data)

    def buffered(self) -> int:
        return int(self._writer.transport.get_write_buffer_size())

    def when_drained(self, callback: Callable[[], None]) -> None:
        task = asyncio.ensure_future(self._writer.drain())
        self._drains.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._drains.discard(t)
            if not t.cancelled():
                t.exception()  # a reset connection: its reader ends the session
            callback()

        task.add_done_callback(done)

    def close(self) -> None:
        self._writer.transport.close()
        for task in list(self._drains):
            task.cancel()


class QueuedTransport:
    """A connection written through an awaitable ``send`` (WebSocket, or any other amqtt adapter):
    batches go out one ``send`` at a time, from one sender task that lives while there is data."""

    __slots__ = ("_callbacks", "_close", "_pending", "_send_one", "_sender", "_size")

    def __init__(self, send: Callable[[bytes], Awaitable[None]], close: Callable[[], None]) -> None:
        self._send_one = send
        self._close = close
        self._pending: list[bytes] = []
        self._size = 0
        self._sender: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], None]] = []

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        try:
            while self._pending:
                data = b"".join(self._pending)
                self._pending.clear()
                try:
                    await self._send_one(data)
                except (ConnectionClosed, ConnectionError, OSError):
                    self._pending.clear()
                finally:
                    self._size = max(0, self._size - len(data))  # 0 already when closed meanwhile
        finally:
            self._sender = None
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def buffered(self) -> int:
        return self._size

    def when_drained(self, callback: Callable[[], None]) -> None:
        if self._sender is None:
            asyncio.get_running_loop().call_soon(callback)
        else:
            self._callbacks.append(callback)

    def close(self) -> None:
        """Close the connection; what was not sent yet is let go at once (a session kept for its
        client's return must not hold a dead connection's backlog)."""
        with contextlib.suppress(Exception):
            self._close()
        self._pending.clear()
        self._size = 0
        if self._sender is not None:
            self._sender.cancel()


Closable = StreamTransport | QueuedTransport


async def close_quietly(writer: WriterAdapter) -> None:
    """Close amqtt's ``writer``; a peer that hung up first is not an error.

    amqtt's stream ``close()`` drains before it closes and waits: a reset seen by the drain
    skipped the wait, leaving asyncio's "closed" future holding the reset, which asyncio then
    logged as "Future exception was never retrieved" when it was collected. Here the stream is
    closed and waited for either way, so the reset is retrieved and nothing is logged.
    """
    try:
        await writer.close()
    except (ConnectionError, OSError, TimeoutError):
        if isinstance(writer, StreamWriterAdapter):
            stream = writer._writer
            stream.close()
            with contextlib.suppress(ConnectionError, OSError):
                await stream.wait_closed()


def transport_for(writer: WriterAdapter) -> Closable:
    """The ``Transport`` for amqtt's ``writer``."""
    if isinstance(writer, StreamWriterAdapter):
        return StreamTransport(writer._writer)
    if isinstance(writer, WebSocketsWriter):
        conn: Connection = writer._protocol
        return QueuedTransport(conn.send, conn.transport.close)

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    closing: set[asyncio.Future[None]] = set()

    def close() -> None:
        task = asyncio.ensure_future(close_quietly(writer))
        closing.add(task)
        task.add_done_callback(closing.discard)

    return QueuedTransport(send, close)
