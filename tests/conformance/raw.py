"""A raw-socket MQTT client (3.1.1, or 3.1 or 5 by its ``protocol_level``) for the conformance
tests: it sends exactly what a test says and
lets the test read every packet the broker sends, flags included. Packets are encoded and cut with
the project's one MQTT codec (``chatmq.broker.wire``), whose encoders and splitter have unit tests
of their own (tests/unit/test_wire*.py) against the spec's byte layouts."""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass

from chatmq.broker.wire import (
    DISCONNECT_BYTES,
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    PacketSplitter,
    Properties,
    Will,
    decode_properties,
    decode_publish,
    encode_ack,
    encode_connect,
    encode_properties,
    encode_publish,
    encode_subscribe,
    encode_topic,
    encode_unsubscribe,
)

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP = 2, 3, 4, 5, 6, 7, 9, 11, 13
DISCONNECT = 14




@dataclass
class Received:
    """One packet from the broker."""

    kind: int
    flags: int
    body: bytes
    level: int = MQTT_311
    """The protocol level of the connection it came on (how its body is laid out)."""

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
        return decode_publish(self.flags, self.body, self.level).topic

    @property
    def packet_id(self) -> int:
        if self.kind == PUBLISH:
            packet_id = decode_publish(self.flags, self.body, self.level).packet_id
            assert packet_id is not None, "a QoS 0 PUBLISH has no packet id"
            return packet_id
        return (self.body[0] << 8) | self.body[1]  # acks, SUBACK, UNSUBACK: the id comes first

    @property
    def payload(self) -> bytes:
        return decode_publish(self.flags, self.body, self.level).payload

    @property
    def reason(self) -> int:
        """MQTT 5: the reason code of a CONNACK, DISCONNECT or acknowledgement (0 when left out)."""
        pos = {CONNACK: 1, DISCONNECT: 0}.get(self.kind, 2)
        return self.body[pos] if len(self.body) > pos else 0

    @property
    def properties(self) -> Properties:
        """MQTT 5: the properties of a PUBLISH, CONNACK, SUBACK, UNSUBACK, DISCONNECT or acknowledgement."""
        if self.kind == PUBLISH:
            props = decode_publish(self.flags, self.body, self.level).properties
            assert self.level == MQTT_5, "a PUBLISH has properties at MQTT 5 only"
            return props or Properties()  # None: an empty property block
        pos = {CONNACK: 2, DISCONNECT: 1, SUBACK: 2, UNSUBACK: 2}.get(self.kind, 3)
        if len(self.body) <= pos:
            return Properties()
        return decode_properties(self.body, pos, self.kind)[0]

    @property
    def codes(self) -> list[int]:
        """The return (reason) codes of a SUBACK or an MQTT 5 UNSUBACK, after any properties."""
        if self.level != MQTT_5:
            return list(self.body[2:])
        return list(self.body[decode_properties(self.body, 2, self.kind)[1]:])


class RawClient:
    """One TCP connection to the broker."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, protocol_level: int = MQTT_311,
                 source: str | None = None) -> None:
        """``source``: the local address to connect from (another loopback address is another client
        address to the broker's per-address bounds)."""
        self.sock = socket.create_connection((host, port), timeout=10,
                                             source_address=None if source is None else (source, 0))
        self.level = protocol_level
        self._splitter = PacketSplitter()
        self._packets: deque[Received] = deque()
        self._next_id = 0

    # --- sending -------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str = "", *, clean: bool = True, keepalive: int = 0,
                will: tuple[str, bytes, int, bool] | None = None,
                username: str | None = None, password: str | None = None,
                properties: Properties | None = None) -> Received:
        """CONNECT and return the CONNACK (``body[0]`` session present, ``body[1]`` return code)."""
        self.send(encode_connect(client_id, clean_session=clean, keepalive=keepalive,
                                 will=None if will is None else Will(*will), username=username, password=password,
                                 protocol_level=self.level, properties=properties))
        return self.expect(CONNACK)

    def subscribe(self, *filters: tuple[str, int]) -> list[int]:
        """SUBSCRIBE and return the SUBACK's return codes (at MQTT 5 the second item of each filter is
        its options byte)."""
        packet_id = self._id()
        self.send(encode_subscribe(packet_id, list(filters), protocol_level=self.level))
        suback = self.expect(SUBACK)
        assert suback.packet_id == packet_id
        return suback.codes

    def unsubscribe(self, *filters: str) -> Received:
        """UNSUBSCRIBE and return the UNSUBACK."""
        packet_id = self._id()
        self.send(encode_unsubscribe(packet_id, list(filters), protocol_level=self.level))
        return self.expect(UNSUBACK)

    def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False,
                packet_id: int | None = None, properties: Properties | None = None) -> int | None:
        """PUBLISH (not waiting for its acknowledgement); returns its packet id at QoS 1/2."""
        if qos:
            packet_id = packet_id or self._id()
        block = b""
        if self.level == MQTT_5:
            block = NO_PROPERTIES if properties is None else encode_properties(properties)
        self.send(encode_publish(encode_topic(topic), payload, qos, packet_id if qos else None, retain=retain,
                                 properties=block))
        return packet_id

    def ack(self, kind: int, packet_id: int) -> None:
        self.send(encode_ack(kind, packet_id))

    def disconnect(self) -> None:
        self.send(DISCONNECT_BYTES)
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
            self._packets.extend(Received(p.kind, p.flags, p.body, self.level) for p in self._splitter.feed(data))

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
        return self._packets.popleft() if self._packets else None
