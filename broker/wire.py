"""MQTT framing (3.1, 3.1.1 and 5), the project's one MQTT codec: the broker's hot path splits a byte stream into
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

MQTT 5 (``protocol_level`` 5): the packets carry properties (``Properties``, encoded and decoded by
``encode_properties``/``decode_properties`` from the table ``PROPERTY_TABLE``), and acknowledgements
carry reason codes (``ReasonCode``). Every encoder and decoder whose layout differs by version takes
the connection's ``protocol_level``; at levels 3 and 4 their bytes are exactly MQTT 3.1.1's.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from chatmq.core.errors import ChatMQError

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
AUTH = 15
"""MQTT 5 only (§3.15); at levels 3 and 4 it is a packet a server must not receive."""

MQTT_311, MQTT_5 = 4, 5
MQTT_31 = 3
PROTOCOLS = {("MQTT", MQTT_311), ("MQTT", MQTT_5), ("MQIsdp", MQTT_31)}
"""The (protocol name, protocol level) pairs the node accepts at CONNECT."""

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four bytes of variable-length encoding can carry (§2.2.3)."""

PINGRESP_BYTES = b"\xd0\x00"
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"

MAX_PROPERTIES_LENGTH = 0xFFFF
"""The longest property block this node reads in a CONNECT (connect and will properties each): a
longer one is a malformed packet. Other packets' properties are bounded by ``max_packet_size``."""

MAX_CONNECT_LENGTH = 10 + 5 * (2 + 0xFFFF) + 2 * (4 + MAX_PROPERTIES_LENGTH)
"""The longest CONNECT body the node reads: MQTT 3.1.1's fixed fields and five length-prefixed
fields, plus MQTT 5's two property blocks (each at most ``MAX_PROPERTIES_LENGTH``)."""

# the fixed-header flags each packet type must carry ([MQTT-2.2.2-1], [MQTT-2.2.2-2]); PUBLISH varies
_REQUIRED_FLAGS = {PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, UNSUBSCRIBE: 2,
                   PINGREQ: 0, DISCONNECT: 0, CONNECT: 0, AUTH: 0}


class MalformedPacketError(ChatMQError):
    """The peer sent bytes that are not a valid MQTT packet; its connection must close (an MQTT 5
    client is told DISCONNECT 0x81 Malformed Packet first)."""


class PacketProtocolError(MalformedPacketError):
    """A packet MQTT 5 calls a Protocol Error rather than malformed (a repeated property, a property
    or subscription identifier of 0, no topic filters, retain handling 3): DISCONNECT 0x82."""


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
    properties: Properties | None = None
    """MQTT 5 only: the PUBLISH's properties (``None`` at levels 3 and 4, and for an empty property
    block, the common case, which so costs no ``Properties`` per message)."""


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


def decode_publish(flags: int, body: bytes, protocol_level: int = MQTT_311) -> Publish:
    """Decode a PUBLISH's flags and body (with its properties at level 5); raises ``MalformedPacketError``."""
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
    if protocol_level == MQTT_5:
        if head < len(body) and body[head] == 0:  # no properties: no decoding, no Properties
            return Publish(topic, body[head + 1:], qos, bool(flags & 1), dup, packet_id)
        props, head = decode_properties(body, head, PUBLISH)
        return Publish(topic, body[head:], qos, bool(flags & 1), dup, packet_id, props)
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
                   *, retain: bool = False, dup: bool = False, properties: bytes = b"") -> bytes:
    """A PUBLISH packet; ``topic`` is already ``encode_topic``-ed; ``properties`` is MQTT 5's
    ``encode_properties`` block (``NO_PROPERTIES`` when empty), ``b""`` at levels 3 and 4."""
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    if qos:
        assert packet_id is not None
        size = len(topic) + 2 + len(properties) + len(payload)
        return b"".join((bytes((first,)), encode_remaining_length(size), topic,
                         packet_id.to_bytes(2, "big"), properties, payload))
    size = len(topic) + len(properties) + len(payload)
    return b"".join((bytes((first,)), encode_remaining_length(size), topic, properties, payload))


def encode_ack(kind: int, packet_id: int, reason: int = 0, properties: Properties | None = None) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 0b0010) or PUBCOMP for ``packet_id``. A ``reason`` code or
    ``properties`` are MQTT 5's (§3.4.2.1); without them the packet is the same at every level
    (MQTT 5 lets the reason code 0 and empty properties be left out)."""
    first = kind << 4 | (2 if kind == PUBREL else 0)
    if not reason and properties is None:
        return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))
    body = packet_id.to_bytes(2, "big") + bytes((reason,))
    if properties is not None:
        body += encode_properties(properties)
    return encode_packet(first, body)


def decode_ack(kind: int, body: bytes, protocol_level: int) -> tuple[int, int]:
    """The packet id and reason code of a PUBACK, PUBREC, PUBREL or PUBCOMP body (reason 0 below
    level 5, or when left out); raises ``MalformedPacketError``."""
    if protocol_level != MQTT_5 or len(body) == 2:
        return decode_packet_id(body), 0
    if len(body) < 3:
        raise MalformedPacketError(f"acknowledgement of {len(body)} bytes")
    if len(body) > 3:
        _props, pos = decode_properties(body, 3, kind)
        if pos != len(body):
            raise MalformedPacketError("acknowledgement with bytes after its properties")
    return (body[0] << 8) | body[1], body[2]


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
    properties: Properties | None = None
    """MQTT 5 only: the CONNECT's properties."""
    will_properties: Properties | None = None
    """MQTT 5 only: the will's properties."""

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
    properties: Properties | None = None
    """MQTT 5 only: the will's properties."""


def encode_connect(client_id: str, *, clean_session: bool = True, keepalive: int = 0, will: Will | None = None,
                   username: str | None = None, password: str | bytes | None = None,
                   protocol_level: int = MQTT_311, properties: Properties | None = None) -> bytes:
    """A CONNECT packet (MQTT 3.1.1 unless ``protocol_level`` says otherwise: 3 is MQTT 3.1,
    ``MQIsdp``; 5 adds ``properties`` and the will's); keepalive 0: the broker never expects a ping."""
    v5 = protocol_level == MQTT_5
    flags = 0x02 if clean_session else 0
    payload = encode_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if v5:
            payload += encode_properties(will.properties)
        payload += encode_string(will.topic) + encode_string(will.message)
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        flags |= 0x40
        payload += encode_string(password)
    name = "MQIsdp" if protocol_level == MQTT_31 else "MQTT"
    head = encode_string(name) + bytes((protocol_level, flags)) + keepalive.to_bytes(2, "big")
    if v5:
        head += encode_properties(properties)
    return encode_packet(CONNECT << 4, head + payload)


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]], *, protocol_level: int = MQTT_311,
                     properties: Properties | None = None) -> bytes:
    """A SUBSCRIBE of ``(filter, qos)`` pairs; at level 5 the second item is the whole subscription
    options byte (``SubscriptionOptions.encode``) and ``properties`` are sent."""
    head = packet_id.to_bytes(2, "big")
    if protocol_level == MQTT_5:
        head += encode_properties(properties)
    body = head + b"".join(encode_string(f) + bytes((q,)) for f, q in filters)
    return encode_packet(SUBSCRIBE << 4 | 2, body)


def encode_unsubscribe(packet_id: int, filters: list[str], *, protocol_level: int = MQTT_311) -> bytes:
    """An UNSUBSCRIBE of ``filters`` (with an empty property block at level 5)."""
    head = packet_id.to_bytes(2, "big") + (NO_PROPERTIES if protocol_level == MQTT_5 else b"")
    return encode_packet(UNSUBSCRIBE << 4 | 2, head + b"".join(map(encode_string, filters)))


def encode_suback(packet_id: int, return_codes: Sequence[int], *, protocol_level: int = MQTT_311,
                  properties: Properties | None = None) -> bytes:
    """A SUBACK with one return code per filter (0x80: refused; MQTT 5 reason codes at level 5,
    after the ``properties``)."""
    head = packet_id.to_bytes(2, "big")
    if protocol_level == MQTT_5:
        head += encode_properties(properties)
    return encode_packet(SUBACK << 4, head + bytes(return_codes))


def encode_unsuback(packet_id: int, reason_codes: Sequence[int], *, protocol_level: int = MQTT_311,
                    properties: Properties | None = None) -> bytes:
    """An UNSUBACK: only the packet id below level 5; at level 5 ``properties`` and one reason code
    per filter (0x00 success, 0x11 no subscription existed) ([MQTT-3.11.3-1])."""
    if protocol_level != MQTT_5:
        return bytes((0xB0, 2)) + packet_id.to_bytes(2, "big")
    body = packet_id.to_bytes(2, "big") + encode_properties(properties) + bytes(reason_codes)
    return encode_packet(UNSUBACK << 4, body)


def encode_disconnect(reason: int = 0, properties: Properties | None = None) -> bytes:
    """An MQTT 5 DISCONNECT with ``reason`` (§3.14); with reason 0 and no properties it is the
    two bytes every level shares (``DISCONNECT_BYTES``)."""
    if not reason and properties is None:
        return DISCONNECT_BYTES
    body = bytes((reason,)) + (encode_properties(properties) if properties is not None else b"")
    return encode_packet(DISCONNECT << 4, body)


def decode_disconnect(body: bytes, protocol_level: int) -> tuple[int, Properties | None]:
    """A DISCONNECT's reason code and properties (0 and None below level 5, or left out)."""
    if protocol_level != MQTT_5 or not body:
        return 0, None
    reason = body[0]
    if len(body) == 1:
        return reason, None
    props, pos = decode_properties(body, 1, DISCONNECT)
    if pos != len(body):
        raise MalformedPacketError("DISCONNECT with bytes after its properties")
    return reason, props


def encode_auth(reason: int, properties: Properties | None = None) -> bytes:
    """An MQTT 5 AUTH (§3.15)."""
    return encode_packet(AUTH << 4, bytes((reason,)) + encode_properties(properties))


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
    v5 = proto_level == MQTT_5
    if v5:
        connect.properties, pos = decode_properties(body, pos, CONNECT, limit=MAX_PROPERTIES_LENGTH)
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
        if v5 and pos < len(body):
            connect.will_properties, pos = decode_properties(body, pos, WILL, limit=MAX_PROPERTIES_LENGTH)
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


def encode_connack(session_present: bool, return_code: int, *, protocol_level: int = MQTT_311,
                   properties: Properties | None = None) -> bytes:
    """A CONNACK (§3.2); session present is sent only with return code 0 ([MQTT-3.2.2-4]), and never
    at level 3 (MQTT 3.1 reserves the byte). ``return_code`` is MQTT 3.1.1's (or, at level 5, an
    MQTT 5 reason code from 0x80): at level 5 it becomes its reason code (``CONNACK_V5_OF_V3``,
    [MQTT-3.2.2-8]) and ``properties`` follow it."""
    if protocol_level != MQTT_5:
        present = 1 if session_present and return_code == 0 and protocol_level != MQTT_31 else 0
        return bytes((0x20, 2, present, return_code))
    reason = return_code if return_code >= 0x80 else CONNACK_V5_OF_V3[return_code]
    body = bytes((1 if session_present and reason == 0 else 0, reason)) + encode_properties(properties)
    return encode_packet(CONNACK << 4, body)


def _packet_id_of(body: bytes, what: str) -> int:
    if len(body) < 2:
        raise MalformedPacketError(f"{what} without a packet id")
    packet_id = (body[0] << 8) | body[1]
    if packet_id == 0:
        raise MalformedPacketError(f"{what} with packet id 0 [MQTT-2.3.1-1]")
    return packet_id


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """An MQTT 5 SUBSCRIBE's options for one filter (§3.8.3.1); below level 5 only ``qos``."""

    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0

    def encode(self) -> int:
        """The options byte."""
        return (self.qos | (4 if self.no_local else 0) | (8 if self.retain_as_published else 0)
                | self.retain_handling << 4)


@dataclass(slots=True)
class Subscribe:
    """A decoded MQTT 5 SUBSCRIBE."""

    packet_id: int
    properties: Properties
    topics: list[tuple[str, SubscriptionOptions]]


def decode_subscribe_v5(body: bytes) -> Subscribe:
    """An MQTT 5 SUBSCRIBE (§3.8); raises ``MalformedPacketError``: as ``decode_subscribe``, and for
    reserved option bits set ([MQTT-3.8.3-5]) or retain handling 3."""
    packet_id = _packet_id_of(body, "SUBSCRIBE")
    props, pos = decode_properties(body, 2, SUBSCRIBE)
    topics: list[tuple[str, SubscriptionOptions]] = []
    for topic_filter, options in _subscribe_entries(body, pos):
        if options & 0xC0:
            raise MalformedPacketError(f"SUBSCRIBE options {options:#04x} with reserved bits set [MQTT-3.8.3-5]")
        retain_handling = options >> 4
        if retain_handling == 3:
            raise PacketProtocolError("SUBSCRIBE with retain handling 3")
        topics.append((topic_filter, SubscriptionOptions(options & 3, bool(options & 4), bool(options & 8),
                                                         retain_handling)))
    return Subscribe(packet_id, props, topics)


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """A SUBSCRIBE's packet id and (topic filter, requested QoS) pairs; raises ``MalformedPacketError``
    (no filters [MQTT-3.8.3-3], a QoS byte other than 0, 1, 2 [MQTT-3-8.3-4], a cut-off filter,
    a filter that is not UTF-8)."""
    packet_id = _packet_id_of(body, "SUBSCRIBE")
    topics = _subscribe_entries(body, 2)
    for _filter, qos in topics:
        if qos > 2:
            raise MalformedPacketError(f"SUBSCRIBE with requested QoS {qos} [MQTT-3-8.3-4]")
    return packet_id, topics


def _subscribe_entries(body: bytes, pos: int) -> list[tuple[str, int]]:
    """The (topic filter, options byte) pairs from ``pos``; at least one, whose QoS bits are not 3."""
    topics: list[tuple[str, int]] = []
    end = len(body)
    while pos < end:
        field = _field(body, pos, "SUBSCRIBE topic filter")
        assert field is not None
        raw, pos = field
        if pos == end:
            raise MalformedPacketError("SUBSCRIBE topic filter without its QoS byte")
        options = body[pos]
        pos += 1
        if options & 3 == 3:
            raise MalformedPacketError("SUBSCRIBE with requested QoS 3 [MQTT-3-8.3-4]")
        topics.append((_text(raw, "SUBSCRIBE topic filter"), options))
    if not topics:
        raise PacketProtocolError("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    return topics


def decode_unsubscribe(body: bytes, protocol_level: int = MQTT_311) -> tuple[int, list[str]]:
    """An UNSUBSCRIBE's packet id and topic filters (its properties, at level 5, are read and
    dropped: only user properties may be there); raises ``MalformedPacketError`` (no filters
    [MQTT-3.10.3-2], a cut-off filter, a filter that is not UTF-8)."""
    packet_id = _packet_id_of(body, "UNSUBSCRIBE")
    topics: list[str] = []
    pos, end = 2, len(body)
    if protocol_level == MQTT_5:
        _props, pos = decode_properties(body, pos, UNSUBSCRIBE)
    while pos < end:
        field = _field(body, pos, "UNSUBSCRIBE topic filter")
        assert field is not None
        raw, pos = field
        topics.append(_text(raw, "UNSUBSCRIBE topic filter"))
    if not topics:
        raise PacketProtocolError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    return packet_id, topics


# --- MQTT 5: reason codes, properties ---------------------------------------------------------------
class ReasonCode(enum.IntEnum):
    """MQTT 5 reason codes (§2.4) the node sends."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


CONNACK_V5_OF_V3 = {0: ReasonCode.SUCCESS, 1: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
                    2: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, 3: ReasonCode.SERVER_UNAVAILABLE,
                    4: ReasonCode.BAD_USER_NAME_OR_PASSWORD, 5: ReasonCode.NOT_AUTHORIZED}
"""The MQTT 5 CONNACK reason code of each MQTT 3.1.1 CONNACK return code (§3.2.2.3)."""


class PropertyType(enum.Enum):
    BYTE = "byte"
    TWO_BYTE = "two_byte"
    FOUR_BYTE = "four_byte"
    VARINT = "varint"
    STRING = "string"
    BINARY = "binary"
    STRING_PAIR = "string_pair"


_B, _2, _4, _V = PropertyType.BYTE, PropertyType.TWO_BYTE, PropertyType.FOUR_BYTE, PropertyType.VARINT
_S, _BIN, _PAIR = PropertyType.STRING, PropertyType.BINARY, PropertyType.STRING_PAIR

PROPERTY_TABLE: dict[int, tuple[str, PropertyType, frozenset[int]]] = {
    # id: (Properties field, type, the packets it may appear in; WILL = CONNECT's will properties)
    0x01: ("payload_format_indicator", _B, frozenset({PUBLISH, -1})),
    0x02: ("message_expiry_interval", _4, frozenset({PUBLISH, -1})),
    0x03: ("content_type", _S, frozenset({PUBLISH, -1})),
    0x08: ("response_topic", _S, frozenset({PUBLISH, -1})),
    0x09: ("correlation_data", _BIN, frozenset({PUBLISH, -1})),
    0x0B: ("subscription_identifier", _V, frozenset({PUBLISH, SUBSCRIBE})),
    0x11: ("session_expiry_interval", _4, frozenset({CONNECT, CONNACK, DISCONNECT})),
    0x12: ("assigned_client_identifier", _S, frozenset({CONNACK})),
    0x13: ("server_keep_alive", _2, frozenset({CONNACK})),
    0x15: ("authentication_method", _S, frozenset({CONNECT, CONNACK, AUTH})),
    0x16: ("authentication_data", _BIN, frozenset({CONNECT, CONNACK, AUTH})),
    0x17: ("request_problem_information", _B, frozenset({CONNECT})),
    0x18: ("will_delay_interval", _4, frozenset({-1})),
    0x19: ("request_response_information", _B, frozenset({CONNECT})),
    0x1A: ("response_information", _S, frozenset({CONNACK})),
    0x1C: ("server_reference", _S, frozenset({CONNACK, DISCONNECT})),
    0x1F: ("reason_string", _S, frozenset({CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
                                            DISCONNECT, AUTH})),
    0x21: ("receive_maximum", _2, frozenset({CONNECT, CONNACK})),
    0x22: ("topic_alias_maximum", _2, frozenset({CONNECT, CONNACK})),
    0x23: ("topic_alias", _2, frozenset({PUBLISH})),
    0x24: ("maximum_qos", _B, frozenset({CONNACK})),
    0x25: ("retain_available", _B, frozenset({CONNACK})),
    0x26: ("user_properties", _PAIR, frozenset({CONNECT, CONNACK, PUBLISH, -1, PUBACK, PUBREC, PUBREL, PUBCOMP,
                                               SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH})),
    0x27: ("maximum_packet_size", _4, frozenset({CONNECT, CONNACK})),
    0x28: ("wildcard_subscription_available", _B, frozenset({CONNACK})),
    0x29: ("subscription_identifier_available", _B, frozenset({CONNACK})),
    0x2A: ("shared_subscription_available", _B, frozenset({CONNACK})),
}
"""MQTT 5's properties (§2.2.2.2): identifier → (field of ``Properties``, type, packets allowed in)."""

WILL = -1
"""The ``PROPERTY_TABLE`` packet kind of a CONNECT's will properties."""

_PROPERTY_ID = {name: (ident, kind) for ident, (name, kind, _where) in PROPERTY_TABLE.items()}


@dataclass(slots=True)
class Properties:
    """A packet's MQTT 5 properties; ``None`` (or empty) for each one absent. Only
    ``user_properties`` (in order) and ``subscription_identifier`` (on a PUBLISH to a subscriber
    matched by several subscriptions) may repeat; ``subscription_identifier`` is a list for that."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifier: list[int] = field(default_factory=list)
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: list[tuple[str, str]] = field(default_factory=list)
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


NO_PROPERTIES = b"\x00"
"""An empty property block: its length, 0."""

def decode_varint(data: bytes, pos: int, what: str = "variable byte integer") -> tuple[int, int]:
    """The variable byte integer (§1.5.5) at ``pos`` and the position after it; raises
    ``MalformedPacketError`` when it is cut off or longer than four bytes."""
    value = 0
    shift = 0
    end = len(data)
    for _ in range(4):
        if pos >= end:
            raise MalformedPacketError(f"{what}: cut off")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MalformedPacketError(f"{what}: longer than four bytes")


def encode_varint(value: int) -> bytes:
    """A variable byte integer (§1.5.5); ``ValueError`` outside 0..268,435,455."""
    return encode_remaining_length(value)


def decode_properties(data: bytes, pos: int, kind: int, *, limit: int | None = None) -> tuple[Properties, int]:
    """The property block at ``pos`` of packet ``kind`` (``WILL`` for will properties) and the
    position after it. Raises ``MalformedPacketError`` for a block cut off or longer than ``limit``,
    an unknown property or one not allowed in ``kind``, a repeated property (but user properties and
    subscription identifiers [MQTT-2.2.2-2]), a byte property other than 0/1 where the spec says so,
    a zero receive maximum, maximum packet size or subscription identifier, and bad UTF-8."""
    length, pos = decode_varint(data, pos, "property length")
    if limit is not None and length > limit:
        raise MalformedPacketError(f"property block of {length} bytes, more than {limit}")
    end = pos + length
    if end > len(data):
        raise MalformedPacketError(f"property block of {length} bytes announced, {len(data) - pos} left")
    data = data[:end]  # nothing below reads past the block
    props = Properties()
    seen: set[int] = set()
    while pos < end:
        ident, pos = decode_varint(data, pos, "property identifier")
        entry = PROPERTY_TABLE.get(ident)
        if entry is None:
            raise MalformedPacketError(f"unknown property {ident:#04x}")
        name, ptype, where = entry
        if kind not in where:
            raise MalformedPacketError(f"property {name} ({ident:#04x}) not allowed in packet type {kind}")
        if ident in seen and ptype is not _PAIR and not (ident == 0x0B and kind == PUBLISH):
            raise PacketProtocolError(f"property {name} ({ident:#04x}) given twice [MQTT-2.2.2-2]")
        seen.add(ident)
        value: int | str | bytes
        if ptype is _B:
            if pos >= end:
                raise MalformedPacketError(f"property {name}: cut off")
            value = data[pos]
            pos += 1
            if value > 1 and name != "maximum_qos":
                raise PacketProtocolError(f"property {name} is {value}, not 0 or 1")
        elif ptype is _2 or ptype is _4:
            size = 2 if ptype is _2 else 4
            if end - pos < size:
                raise MalformedPacketError(f"property {name}: cut off")
            value = int.from_bytes(data[pos:pos + size], "big")
            pos += size
        elif ptype is _V:
            value, pos = decode_varint(data, pos, f"property {name}")
        else:
            raw, pos = _property_field(data, pos, name)
            if ptype is _BIN:
                value = raw
            elif ptype is _S:
                value = _text(raw, f"property {name}")
            else:
                second, pos = _property_field(data, pos, name)
                props.user_properties.append((_text(raw, "user property name"), _text(second, "user property value")))
                continue
        if name == "subscription_identifier":
            assert isinstance(value, int)
            if value == 0:
                raise PacketProtocolError("subscription identifier 0 [MQTT-3.8.2-1]")
            props.subscription_identifier.append(value)
            continue
        if value == 0 and name in ("receive_maximum", "maximum_packet_size", "topic_alias"):
            raise PacketProtocolError(f"property {name} is 0")
        setattr(props, name, value)
    return props, pos


def _property_field(data: bytes, pos: int, name: str) -> tuple[bytes, int]:
    """A length-prefixed property value (``data`` ends with its property block)."""
    field = _field(data, pos, f"property {name}")
    if field is None:
        raise MalformedPacketError(f"property {name}: cut off")
    return field


def encode_properties(props: Properties | None) -> bytes:
    """A property block (its length, then each property present, in ``PROPERTY_TABLE`` order)."""
    if props is None:
        return NO_PROPERTIES
    out = bytearray()
    for name, (ident, ptype) in _PROPERTY_ID.items():
        value = getattr(props, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        if ptype is _PAIR:
            for key, text in value:
                out += bytes((ident,)) + encode_string(key) + encode_string(text)
        elif ptype is _V:
            for number in value:
                out += bytes((ident,)) + encode_varint(number)
        elif ptype is _B:
            out += bytes((ident, value))
        elif ptype is _2:
            out += bytes((ident,)) + value.to_bytes(2, "big")
        elif ptype is _4:
            out += bytes((ident,)) + value.to_bytes(4, "big")
        else:
            out += bytes((ident,)) + encode_string(value)
    return encode_varint(len(out)) + bytes(out)


FORWARDED_PROPERTIES = ("payload_format_indicator", "content_type", "response_topic", "correlation_data",
                        "user_properties")
"""The PUBLISH properties the node passes unchanged to every subscriber ([MQTT-3.3.2-4], [MQTT-3.3.2-15],
[MQTT-3.3.2-16], [MQTT-3.3.2-17], [MQTT-3.3.2-20]); the message expiry interval is forwarded as
what remains of it (``publish_properties``)."""


def forwarded_properties(props: Properties | None) -> bytes:
    """The encoded properties (without their length) a publisher's PUBLISH passes to subscribers."""
    if props is None or (  # none of FORWARDED_PROPERTIES, the common case: nothing to encode
            props.payload_format_indicator is None and props.content_type is None and props.response_topic is None
            and props.correlation_data is None and not props.user_properties):
        return b""
    kept = Properties(**{name: getattr(props, name) for name in FORWARDED_PROPERTIES})
    block = encode_properties(kept)
    return block[decode_varint(block, 0)[1]:]


def publish_properties(forwarded: bytes, expiry: int | None, alias: int | None = None) -> bytes:
    """An MQTT 5 PUBLISH's property block to a subscriber: the message expiry interval left (if the
    message has one, [MQTT-3.3.2-6]), the topic alias the node gave its topic on this connection,
    and the ``forwarded_properties``."""
    if expiry is not None:
        forwarded = b"\x02" + expiry.to_bytes(4, "big") + forwarded
    if alias is not None:
        forwarded = b"\x23" + alias.to_bytes(2, "big") + forwarded
    return encode_varint(len(forwarded)) + forwarded


ALIASED_TOPIC = b"\x00\x00"
"""The topic field of a PUBLISH whose topic alias stands for its topic (§3.3.2.3.4)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """How the node answers a client's QoS 1/2 PUBLISH: the PUBACK/PUBREC reason code and, at MQTT 5,
    properties (a reason string, user properties). Below level 5 only success is said."""

    reason: int = ReasonCode.SUCCESS
    properties: Properties | None = None


ACCEPTED = Ack()
