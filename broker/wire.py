"""MQTT 3.1.1 framing, the project's one MQTT codec: the broker's hot path splits a byte stream into
packets and encodes the packets the delivery path sends (PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
PINGRESP); the client side (CONNECT, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT) serves the benchmarks' load
clients and the conformance tests' raw client.

Pure functions and one small splitter, no I/O, so they are tested on their own. It also decodes
CONNECT, SUBSCRIBE and UNSUBSCRIBE and encodes CONNACK: amqtt's codecs read those field by field
with an await per field and build several objects per packet, which was most of a connection's
decoding cost (``chatmq bench broker``'s ``connect_idle`` row, docs/benchmarks.md). This module
exists because building an amqtt packet object per message costs several times more than the
relay itself.

Errors are ``MalformedPacketError`` (a ``ChatMQError``): the connection that sent the bytes is
closed ([MQTT-4.8.0-1]); nothing here raises anything else for any ``bytes`` input.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatmq.core.errors import ChatMQError

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four bytes of variable-length encoding can carry (§2.2.3)."""

PINGRESP_BYTES = b"\xd0\x00"
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"

MAX_CONNECT_LENGTH = 10 + 5 * (2 + 0xFFFF)
"""The longest CONNECT body MQTT 3.1.1 allows: its fixed fields and five length-prefixed fields."""

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


class PacketTooLargeError(MalformedPacketError):
    """A fixed header announced a remaining length above the node's ``max_packet_size``."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"packet of {length} bytes announced, larger than allowed ({limit})")
        self.length = length
        self.limit = limit


class PacketSplitter:
    """Cuts a stream of bytes into whole packets.

    ``feed(data)`` returns every packet completed by ``data`` (possibly none), keeping a partial
    packet for the next call. ``max_packet`` bounds the remaining length a peer may announce: a
    larger one raises ``PacketTooLargeError`` as soon as its fixed header is read, before its body.
    A partial packet's chunks are kept as they came and joined once, when it is complete (no copy
    per chunk).
    """

    __slots__ = ("_held", "_max_packet", "_need", "_parts")

    def __init__(self, max_packet: int = MAX_REMAINING_LENGTH) -> None:
        self._parts: list[bytes] = []
        self._held = 0
        self._need = 0
        self._max_packet = max_packet

    @property
    def pending(self) -> int:
        """Bytes held for a packet not yet complete."""
        return self._held

    def feed(self, data: bytes) -> list[Packet]:
        if self._parts:
            self._parts.append(data)
            self._held += len(data)
            if self._held < self._need:
                return []  # the held packet is still incomplete: nothing to parse
            buffer = b"".join(self._parts)
            self._parts = []
            self._held = 0
        else:
            buffer = data
        packets: list[Packet] = []
        append = packets.append
        required_flags = _REQUIRED_FLAGS
        max_packet = self._max_packet
        pos = 0
        end = len(buffer)
        need = 1
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
                    raise PacketTooLargeError(length, max_packet)
            elif length > max_packet:
                raise PacketTooLargeError(length, max_packet)
            if end - i < length:
                need = i + length - pos
                break
            kind = first >> 4
            flags = first & 0x0F
            if kind != PUBLISH:
                required = required_flags.get(kind)
                if required is not None and flags != required:
                    raise MalformedPacketError(f"packet type {kind} with reserved flags {flags:#x}")
            pos = i + length
            append(Packet(kind, flags, buffer[i:pos]))
        if pos < end:
            rest = buffer[pos:] if pos else buffer
            self._parts = [rest]
            self._held = len(rest)
            self._need = max(need, self._held + 1)
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
    """The variable-length encoding of ``length`` (§2.2.3); ``ValueError`` outside 0..268,435,455."""
    if 0 <= length < 128:
        return bytes((length,))
    if not 0 < length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length out of range: {length}")
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_packet(first: int, body: bytes) -> bytes:
    """A whole packet: the fixed header's first byte, the remaining length, then ``body``."""
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def encode_string(value: str | bytes) -> bytes:
    """An MQTT string (or binary data): two bytes of length, then the (UTF-8) bytes; ``ValueError``
    past 65,535 bytes."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise ValueError(f"MQTT string of {len(raw)} bytes (at most 65535)")
    return len(raw).to_bytes(2, "big") + raw


def encode_topic(topic: str) -> bytes:
    """A topic as a length-prefixed UTF-8 string (cached by the router per topic)."""
    return encode_string(topic)


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


@dataclass(slots=True)
class Connect:
    """A decoded CONNECT body. The fields its flags announce but the body lacks are ``None`` (as
    amqtt left them), so the caller refuses or closes as before; ``client_id`` is ``None`` when the
    body ends before it and ``""`` when it is empty."""

    proto_name: str
    proto_level: int
    flags: int
    keep_alive: int
    client_id: str | None
    will_topic: str | None = None
    will_message: bytes | None = None
    username: str | None = None
    password: str | None = None

    @property
    def clean_session(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def will_flag(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def will_qos(self) -> int:
        return (self.flags >> 3) & 3

    @property
    def will_retain(self) -> bool:
        return bool(self.flags & 0x20)

    @property
    def password_flag(self) -> bool:
        return bool(self.flags & 0x40)

    @property
    def username_flag(self) -> bool:
        return bool(self.flags & 0x80)

    @property
    def reserved_flag(self) -> bool:
        return bool(self.flags & 0x01)


@dataclass(frozen=True, slots=True)
class Will:
    """A CONNECT's will: published on ``topic`` when the connection ends without DISCONNECT."""

    topic: str
    message: bytes
    qos: int = 0
    retain: bool = False


def encode_connect(client_id: str, *, clean_session: bool = True, keepalive: int = 0, will: Will | None = None,
                   username: str | None = None, password: str | bytes | None = None,
                   protocol_level: int = 4) -> bytes:
    """A CONNECT packet (MQTT 3.1.1 unless ``protocol_level`` says otherwise); keepalive 0: the
    broker never expects a ping."""
    flags = 0x02 if clean_session else 0
    payload = encode_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += encode_string(will.topic) + encode_string(will.message)
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        flags |= 0x40
        payload += encode_string(password)
    head = encode_string("MQTT") + bytes((protocol_level, flags)) + keepalive.to_bytes(2, "big")
    return encode_packet(CONNECT << 4, head + payload)


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """A SUBSCRIBE of ``(filter, qos)`` pairs."""
    body = packet_id.to_bytes(2, "big") + b"".join(encode_string(f) + bytes((q,)) for f, q in filters)
    return encode_packet(SUBSCRIBE << 4 | 2, body)


def encode_unsubscribe(packet_id: int, filters: list[str]) -> bytes:
    """An UNSUBSCRIBE of ``filters``."""
    return encode_packet(UNSUBSCRIBE << 4 | 2, packet_id.to_bytes(2, "big") + b"".join(map(encode_string, filters)))


def encode_suback(packet_id: int, return_codes: list[int]) -> bytes:
    """A SUBACK with one return code per filter (0x80: refused)."""
    return encode_packet(SUBACK << 4, packet_id.to_bytes(2, "big") + bytes(return_codes))


def _field(body: bytes, pos: int, what: str) -> tuple[bytes, int] | None:
    """The length-prefixed field at ``pos`` and the position after it; None when the body ends at
    ``pos``; raises when it ends inside the field."""
    end = len(body)
    if pos == end:
        return None
    if end - pos < 2:
        raise MalformedPacketError(f"{what}: length cut off")
    size = (body[pos] << 8) | body[pos + 1]
    pos += 2
    if end - pos < size:
        raise MalformedPacketError(f"{what}: {size} bytes announced, {end - pos} left")
    return body[pos:pos + size], pos + size


def _text(raw: bytes, what: str) -> str:
    """A UTF-8 string field ([MQTT-1.5.3-1]: ill-formed UTF-8 closes the connection; [MQTT-1.5.3-2]: no U+0000)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacketError(f"{what} is not UTF-8 [MQTT-1.5.3-1]") from exc
    if "\x00" in text:
        raise MalformedPacketError(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    return text


def decode_connect(body: bytes) -> Connect:
    """Decode a CONNECT's body (after the fixed header); raises ``MalformedPacketError``.

    Checked here: the fixed fields are complete, every field present lies inside the body and
    nothing follows the last one, strings are UTF-8 without U+0000, and the will QoS and will
    retain flags are 0 without a will ([MQTT-3.1.2-13], [MQTT-3.1.2-15]) and the will QoS is not
    3 ([MQTT-3.1.2-14]). The protocol name and level, the reserved flag and the credentials are
    the caller's checks (some are answered with a CONNACK)."""
    if len(body) < 2:
        raise MalformedPacketError("CONNECT shorter than its protocol name")
    name_len = (body[0] << 8) | body[1]
    pos = 2 + name_len
    if len(body) < pos + 4:
        raise MalformedPacketError("CONNECT shorter than its variable header")
    proto_name = body[2:pos].decode("utf-8", "replace")
    proto_level, flags = body[pos], body[pos + 1]
    keep_alive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    connect = Connect(proto_name, proto_level, flags, keep_alive, None)
    if connect.will_flag:
        if connect.will_qos == 3:
            raise MalformedPacketError("CONNECT with will QoS 3 [MQTT-3.1.2-14]")
    elif flags & 0x38:
        raise MalformedPacketError("CONNECT with will QoS or will retain but no will [MQTT-3.1.2-13], [MQTT-3.1.2-15]")
    field = _field(body, pos, "client id")
    if field is None:
        return connect
    connect.client_id = _text(field[0], "client id")
    pos = field[1]
    if connect.will_flag:
        field = _field(body, pos, "will topic")
        if field is None:
            return connect
        topic, pos = field
        field = _field(body, pos, "will message")
        if field is None:
            return connect
        connect.will_topic = _text(topic, "will topic")
        connect.will_message, pos = field
    if connect.username_flag:
        field = _field(body, pos, "user name")
        if field is None:
            return connect
        connect.username = _text(field[0], "user name")
        pos = field[1]
    if connect.password_flag:
        field = _field(body, pos, "password")
        if field is None:
            return connect
        raw, pos = field
        try:
            connect.password = raw.decode("utf-8")
        except UnicodeDecodeError:
            connect.password = str(raw)  # binary data (§3.1.3.5); kept as amqtt did
    if pos != len(body):
        raise MalformedPacketError(f"CONNECT with {len(body) - pos} bytes after its last field")
    return connect


def encode_connack(session_present: bool, return_code: int) -> bytes:
    """A CONNACK (§3.2); session present is sent only with return code 0 ([MQTT-3.2.2-4])."""
    return bytes((0x20, 2, 1 if session_present and return_code == 0 else 0, return_code))


def _packet_id_of(body: bytes, what: str) -> int:
    if len(body) < 2:
        raise MalformedPacketError(f"{what} without a packet id")
    packet_id = (body[0] << 8) | body[1]
    if packet_id == 0:
        raise MalformedPacketError(f"{what} with packet id 0 [MQTT-2.3.1-1]")
    return packet_id


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """A SUBSCRIBE's packet id and (topic filter, requested QoS) pairs; raises ``MalformedPacketError``
    (no filters [MQTT-3.8.3-3], a QoS byte other than 0, 1, 2 [MQTT-3-8.3-4], a cut-off filter,
    a filter that is not UTF-8)."""
    packet_id = _packet_id_of(body, "SUBSCRIBE")
    topics: list[tuple[str, int]] = []
    pos, end = 2, len(body)
    while pos < end:
        field = _field(body, pos, "SUBSCRIBE topic filter")
        assert field is not None
        raw, pos = field
        if pos == end:
            raise MalformedPacketError("SUBSCRIBE topic filter without its QoS byte")
        qos = body[pos]
        pos += 1
        if qos > 2:
            raise MalformedPacketError(f"SUBSCRIBE with requested QoS {qos} [MQTT-3-8.3-4]")
        topics.append((_text(raw, "SUBSCRIBE topic filter"), qos))
    if not topics:
        raise MalformedPacketError("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    return packet_id, topics


def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    """An UNSUBSCRIBE's packet id and topic filters; raises ``MalformedPacketError`` (no filters
    [MQTT-3.10.3-2], a cut-off filter, a filter that is not UTF-8)."""
    packet_id = _packet_id_of(body, "UNSUBSCRIBE")
    topics: list[str] = []
    pos, end = 2, len(body)
    while pos < end:
        field = _field(body, pos, "UNSUBSCRIBE topic filter")
        assert field is not None
        raw, pos = field
        topics.append(_text(raw, "UNSUBSCRIBE topic filter"))
    if not topics:
        raise MalformedPacketError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    return packet_id, topics
