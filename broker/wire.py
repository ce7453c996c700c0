"""MQTT 3.1.1 framing for the broker's hot path: split a byte stream into packets, and encode the
packets the delivery path sends (PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, PINGRESP).

Pure functions and one small splitter, no I/O, so they are tested on their own. amqtt's packet
classes remain the codecs of the rare packets (CONNECT, SUBSCRIBE, UNSUBSCRIBE, and the replies
to them); this module exists because building an amqtt packet object per message costs several
times more than the relay itself.

Errors are ``MalformedPacketError`` (a ``ChatMQError``): the connection that sent the bytes is
closed ([MQTT-4.8.0-1]); nothing here raises anything else for any ``bytes`` input.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatmq.errors import ChatMQError

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four bytes of variable-length encoding can carry (§2.2.3)."""

PINGRESP_BYTES = b"\xd0\x00"

# the fixed-header flags each packet type must carry ([MQTT-2.2.2-1], [MQTT-2.2.2-2]); PUBLISH varies
_REQUIRED_FLAGS = {PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, UNSUBSCRIBE: 2,
                   PINGREQ: 0, DISCONNECT: 0, CONNECT: 0}


class MalformedPacketError(ChatMQError):
    """The peer sent bytes that are not a valid MQTT 3.1.1 packet; its connection must close."""


@dataclass(slots=True)
class Packet:
    """One packet as read off the wire: its type, the fixed header's flags, and the bytes after
    the fixed header (the variable header and payload)."""

    kind: int
    flags: int
    body: bytes


@dataclass(slots=True)
class Publish:
    """A decoded PUBLISH: ``packet_id`` is ``None`` at QoS 0."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


class PacketSplitter:
    """Cuts a stream of bytes into whole packets.

    ``feed(data)`` returns every packet completed by ``data`` (possibly none), keeping a partial
    packet for the next call. ``max_packet`` bounds the remaining length a peer may announce.
    """

    __slots__ = ("_buffer", "_max_packet")

    def __init__(self, max_packet: int = MAX_REMAINING_LENGTH) -> None:
        self._buffer = b""
        self._max_packet = max_packet

    @property
    def pending(self) -> int:
        """Bytes held for a packet not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        buffer = self._buffer + data if self._buffer else data
        packets: list[Packet] = []
        append = packets.append
        required_flags = _REQUIRED_FLAGS
        max_packet = self._max_packet
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            first = buffer[pos]
            length = buffer[pos + 1]
            i = pos + 2
            if length & 0x80:  # a remaining length of more than one byte
                length &= 0x7F
                shift = 7
                complete = False
                while i < end:
                    byte = buffer[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacketError("remaining length longer than four bytes")
                if not complete:
                    break  # the length itself is not complete yet
                if length > max_packet:
                    raise MalformedPacketError(f"packet of {length} bytes is larger than allowed ({max_packet})")
            elif length > max_packet:
                raise MalformedPacketError(f"packet of {length} bytes is larger than allowed ({max_packet})")
            if end - i < length:
                break
            kind = first >> 4
            flags = first & 0x0F
            if kind != PUBLISH:
                required = required_flags.get(kind)
                if required is not None and flags != required:
                    raise MalformedPacketError(f"packet type {kind} with reserved flags {flags:#x}")
            pos = i + length
            append(Packet(kind, flags, buffer[i:pos]))
        self._buffer = buffer[pos:] if pos < end else b""
        return packets


def decode_publish(flags: int, body: bytes) -> Publish:
    """Decode a PUBLISH's flags and body; raises ``MalformedPacketError``."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacketError("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    dup = bool(flags & 8)
    if dup and qos == 0:
        raise MalformedPacketError("PUBLISH with DUP at QoS 0 [MQTT-3.3.1-2]")
    if len(body) < 2:
        raise MalformedPacketError("PUBLISH without a topic")
    topic_len = (body[0] << 8) | body[1]
    head = 2 + topic_len
    if len(body) < head + (2 if qos else 0):
        raise MalformedPacketError("PUBLISH shorter than its topic and packet id")
    try:
        topic = body[2:head].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacketError("PUBLISH topic is not UTF-8 [MQTT-1.5.3-1]") from exc
    packet_id: int | None = None
    if qos:
        packet_id = (body[head] << 8) | body[head + 1]
        if packet_id == 0:
            raise MalformedPacketError("PUBLISH with packet id 0 [MQTT-2.3.1-1]")
        head += 2
    return Publish(topic, body[head:], qos, bool(flags & 1), dup, packet_id)


def decode_packet_id(body: bytes) -> int:
    """The packet id of a PUBACK, PUBREC, PUBREL or PUBCOMP body."""
    if len(body) != 2:
        raise MalformedPacketError(f"acknowledgement of {len(body)} bytes, not 2")
    return (body[0] << 8) | body[1]


def encode_remaining_length(length: int) -> bytes:
    """The variable-length encoding of ``length`` (§2.2.3)."""
    if length < 128:
        return bytes((length,))
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_topic(topic: str) -> bytes:
    """A topic as a length-prefixed UTF-8 string (cached by the router per topic)."""
    raw = topic.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def encode_publish(topic: bytes, payload: bytes, qos: int, packet_id: int | None,
                   *, retain: bool = False, dup: bool = False) -> bytes:
    """A PUBLISH packet; ``topic`` is already ``encode_topic``-ed."""
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    if qos:
        assert packet_id is not None
        size = len(topic) + 2 + len(payload)
        return b"".join((bytes((first,)), encode_remaining_length(size), topic,
                         packet_id.to_bytes(2, "big"), payload))
    size = len(topic) + len(payload)
    return b"".join((bytes((first,)), encode_remaining_length(size), topic, payload))


def encode_ack(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 0b0010) or PUBCOMP for ``packet_id``."""
    return bytes((kind << 4 | (2 if kind == PUBREL else 0), 2, packet_id >> 8, packet_id & 0xFF))
