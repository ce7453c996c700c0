"""A raw-socket MQTT 3.1.1 client for the conformance tests: it encodes and decodes packets itself
(independently of the broker's code), sends exactly what a test says, and lets the test read
every packet the broker sends, flags included."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP = 2, 3, 4, 5, 6, 7, 9, 11, 13


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _frame(first: int, body: bytes) -> bytes:
    length = len(body)
    out = bytearray([first])
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + body


@dataclass
class Received:
    """One packet from the broker."""

    kind: int
    flags: int
    body: bytes

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 8)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    @property
    def topic(self) -> str:
        (size,) = struct.unpack("!H", self.body[:2])
        return self.body[2:2 + size].decode()

    @property
    def packet_id(self) -> int:
        if self.kind == PUBLISH:
            (size,) = struct.unpack("!H", self.body[:2])
            return int(struct.unpack("!H", self.body[2 + size:4 + size])[0])
        return int(struct.unpack("!H", self.body[:2])[0])

    @property
    def payload(self) -> bytes:
        (size,) = struct.unpack("!H", self.body[:2])
        return self.body[2 + size + (2 if self.qos else 0):]


class RawClient:
    """One TCP connection to the broker."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self._buffer = b""
        self._next_id = 0

    # --- sending -------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str = "", *, clean: bool = True, keepalive: int = 0,
                will: tuple[str, bytes, int, bool] | None = None,
                username: str | None = None, password: str | None = None) -> Received:
        """CONNECT and return the CONNACK (``body[0]`` session present, ``body[1]`` return code)."""
        flags = 0x02 if clean else 0
        payload = _string(client_id)
        if will is not None:
            topic, message, qos, retain = will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _string(topic) + _string(message)
        if username is not None:
            flags |= 0x80
            payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
        body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
        self.send(_frame(0x10, body))
        return self.expect(CONNACK)

    def subscribe(self, *filters: tuple[str, int]) -> list[int]:
        """SUBSCRIBE and return the SUBACK's return codes."""
        packet_id = self._id()
        body = struct.pack("!H", packet_id) + b"".join(_string(f) + bytes([q]) for f, q in filters)
        self.send(_frame(0x82, body))
        suback = self.expect(SUBACK)
        assert suback.packet_id == packet_id
        return list(suback.body[2:])

    def unsubscribe(self, *filters: str) -> None:
        packet_id = self._id()
        self.send(_frame(0xA2, struct.pack("!H", packet_id) + b"".join(_string(f) for f in filters)))
        self.expect(UNSUBACK)

    def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False,
                packet_id: int | None = None) -> int | None:
        """PUBLISH (not waiting for its acknowledgement); returns its packet id at QoS 1/2."""
        body = _string(topic)
        if qos:
            packet_id = packet_id or self._id()
            body += struct.pack("!H", packet_id)
        self.send(_frame(0x30 | (qos << 1) | (1 if retain else 0), body + payload))
        return packet_id

    def ack(self, kind: int, packet_id: int) -> None:
        self.send(_frame((kind << 4) | (2 if kind == PUBREL else 0), struct.pack("!H", packet_id)))

    def disconnect(self) -> None:
        self.send(b"\xe0\x00")
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- receiving -----------------------------------------------------------------
    def read(self, timeout: float = 5.0) -> Received | None:
        """The next packet, or None when the broker closed the connection or sent nothing in time."""
        deadline = time.monotonic() + timeout
        while True:
            packet = self._parse()
            if packet is not None:
                return packet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data

    def expect(self, kind: int, timeout: float = 5.0) -> Received:
        packet = self.read(timeout)
        assert packet is not None, f"expected packet type {kind}, got nothing"
        assert packet.kind == kind, f"expected packet type {kind}, got {packet}"
        return packet

    def publishes(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The next ``count`` PUBLISH packets (other packets are skipped)."""
        got: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            packet = self.read(max(0.0, deadline - time.monotonic()))
            assert packet is not None, f"got {len(got)} of {count} publishes: {got}"
            if packet.kind == PUBLISH:
                got.append(packet)
        return got

    def nothing_for(self, seconds: float) -> bool:
        """True when no packet arrives (and the connection stays open) for ``seconds``."""
        return self.read(seconds) is None and self.is_open()

    def is_open(self) -> bool:
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)
        return bool(data)

    def closed_by_broker(self, timeout: float = 5.0) -> bool:
        """True when the broker closes the connection within ``timeout`` (packets before that are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
        return False

    def _parse(self) -> Received | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return None
        self._buffer = buf[i + length:]
        return Received(buf[0] >> 4, buf[0] & 0x0F, buf[i:i + length])
