"""Properties of the MQTT codec (``chatmq.broker.wire``) for any bytes a client may send.

Every function that parses a client's bytes (``PacketSplitter.feed``, ``decode_publish``,
``decode_packet_id``, ``decode_connect``, ``decode_subscribe``, ``decode_unsubscribe``) either
decodes or raises ``MalformedPacketError``: never another exception, never a hang (hypothesis's
deadline), never more memory than the input warrants. What the encoders make decodes back to
what went in (the client-side encoders too: ``chatmq bench soak`` and the live fuzz test speak
through them).

Inputs are both plain random bytes and valid packets mutated (``tests.fuzzing.mutate``: bit flips,
cuts, wrong remaining lengths, random types and flags), so the decoders are reached past their
first check.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatmq.broker.wire import (
    CONNACK,
    CONNECT,
    DISCONNECT_BYTES,
    MAX_REMAINING_LENGTH,
    PINGREQ_BYTES,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    MalformedPacketError,
    Packet,
    PacketSplitter,
    Will,
    decode_connect,
    decode_packet_id,
    decode_publish,
    decode_subscribe,
    decode_unsubscribe,
    encode_ack,
    encode_connack,
    encode_connect,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
    encode_topic,
    encode_unsubscribe,
)
from tests.fuzzing import mutate

PROPERTY = settings(deadline=2000, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
"""A generous deadline: a decoder that takes seconds on a few KiB is a hang, not noise."""

ACKS = (PUBACK, PUBREC, PUBREL, PUBCOMP)


# --------------------------------------------------------------------------------------------
# Inputs: valid packets, then mutated
# --------------------------------------------------------------------------------------------

topics = st.text(max_size=40)
no_nul = st.text(max_size=60).filter(lambda t: "\x00" not in t)
packet_ids = st.integers(1, 0xFFFF)
payloads = st.one_of(st.binary(max_size=200), st.binary(min_size=1000, max_size=3000))
"""Small payloads, and some large enough to arrive over several reads."""
wills = st.builds(Will, no_nul, st.binary(max_size=100), st.integers(0, 2), st.booleans())
filters = st.lists(st.tuples(no_nul, st.integers(0, 2)), min_size=1, max_size=4)


@st.composite
def valid_packets(draw: st.DrawFn) -> bytes:
    """One packet a client may send, made by the codec's encoders."""
    kind = draw(st.sampled_from(("connect", "subscribe", "unsubscribe", "publish", "ack", "ping", "disconnect")))
    if kind == "connect":
        return encode_connect(draw(no_nul), clean_session=draw(st.booleans()), keepalive=draw(st.integers(0, 0xFFFF)),
                              will=draw(st.none() | wills), username=draw(st.none() | no_nul),
                              password=draw(st.none() | no_nul))
    if kind == "subscribe":
        return encode_subscribe(draw(packet_ids), draw(filters))
    if kind == "unsubscribe":
        return encode_unsubscribe(draw(packet_ids), [f for f, _ in draw(filters)])
    if kind == "publish":
        qos = draw(st.integers(0, 2))
        return encode_publish(encode_topic(draw(topics)), draw(payloads), qos,
                              draw(packet_ids) if qos else None, retain=draw(st.booleans()),
                              dup=bool(qos) and draw(st.booleans()))
    if kind == "ack":
        return encode_ack(draw(st.sampled_from(ACKS)), draw(packet_ids))
    return PINGREQ_BYTES if kind == "ping" else DISCONNECT_BYTES


def mutated(packet: bytes) -> st.SearchStrategy[bytes]:
    """``packet`` with one to four mutations (``tests.fuzzing.mutate``)."""
    return st.builds(mutate, st.just(packet), st.randoms(use_true_random=False))


client_streams = st.one_of(
    st.binary(max_size=4096),
    st.lists(valid_packets(), min_size=1, max_size=6).map(b"".join),
    st.lists(valid_packets().flatmap(mutated), min_size=1, max_size=6).map(b"".join),
)
"""What a client may send: noise, a valid session, or a valid session mutated packet by packet."""

cuts = st.one_of(st.integers(1, 64), st.integers(65, 8192))
"""How many bytes each read brings."""


@st.composite
def packet_bodies(draw: st.DrawFn) -> Packet:
    """A valid packet with its body (after the fixed header) and flags mutated, or noise."""
    [packet] = PacketSplitter().feed(draw(valid_packets()))
    body = draw(st.one_of(mutated(packet.body), st.just(packet.body), st.binary(max_size=300)))
    flags = draw(st.one_of(st.just(packet.flags), st.integers(0, 15)))
    return Packet(packet.kind, flags, body)


def decode(packet: Packet) -> object:
    """The packet decoded as the broker decodes it (a body the broker does not parse is returned)."""
    if packet.kind == PUBLISH:
        return decode_publish(packet.flags, packet.body)
    if packet.kind in ACKS:
        return decode_packet_id(packet.body)
    if packet.kind == CONNECT:
        return decode_connect(packet.body)
    if packet.kind == SUBSCRIBE:
        return decode_subscribe(packet.body)
    if packet.kind == UNSUBSCRIBE:
        return decode_unsubscribe(packet.body)
    return packet.body


@dataclass
class Outcome:
    packets: list[Packet]
    pending: int
    malformed: bool


def split(stream: bytes, cut: int, max_packet: int = MAX_REMAINING_LENGTH) -> Outcome:
    """``stream`` fed to a splitter ``cut`` bytes at a time (until it raises)."""
    splitter = PacketSplitter(max_packet)
    packets: list[Packet] = []
    for start in range(0, len(stream), cut):
        try:
            packets += splitter.feed(stream[start:start + cut])
        except MalformedPacketError:
            return Outcome(packets, splitter.pending, True)
    return Outcome(packets, splitter.pending, False)


# --------------------------------------------------------------------------------------------
# Decoding: only MalformedPacketError, bounded, the same however the bytes arrive
# --------------------------------------------------------------------------------------------

@PROPERTY
@given(client_streams, cuts)
def test_any_byte_stream_decodes_or_raises_malformed_and_nothing_else(stream: bytes, cut: int) -> None:
    outcome = split(stream, cut)
    for packet in outcome.packets:
        with contextlib.suppress(MalformedPacketError):
            decode(packet)


@PROPERTY
@given(packet_bodies(), st.sampled_from((PUBLISH, *ACKS, CONNECT, SUBSCRIBE, UNSUBSCRIBE)))
def test_any_packet_body_decodes_or_raises_malformed_and_nothing_else(packet: Packet, kind: int) -> None:
    for as_kind in (packet.kind, kind):  # as itself, and as another type's body
        with contextlib.suppress(MalformedPacketError):
            decode(Packet(as_kind, packet.flags, packet.body))


@PROPERTY
@given(client_streams, cuts)
def test_bytes_split_anywhere_give_the_same_packets_or_the_same_refusal(stream: bytes, cut: int) -> None:
    whole, pieces = split(stream, len(stream) or 1), split(stream, cut)
    assert pieces.malformed == whole.malformed
    if not whole.malformed:
        assert pieces.packets == whole.packets
        assert pieces.pending == whole.pending


@PROPERTY
@given(client_streams, cuts, st.one_of(st.integers(0, 300), st.integers(301, 5000)))
def test_the_splitter_never_holds_more_than_one_allowed_packet(stream: bytes, cut: int, max_packet: int) -> None:
    splitter = PacketSplitter(max_packet)
    taken = 0
    for start in range(0, len(stream), cut):
        try:
            packets = splitter.feed(stream[start:start + cut])
        except MalformedPacketError:
            return
        assert all(len(p.body) <= max_packet for p in packets)
        taken += sum(2 + len(p.body) for p in packets)
        # a fixed header (at most 5 bytes) and less than the allowed body wait for the rest
        assert splitter.pending <= 4 + max_packet
        assert taken + splitter.pending <= start + cut


@settings(deadline=None, max_examples=30)
@given(st.lists(valid_packets().flatmap(mutated), min_size=5, max_size=30).map(b"".join), st.integers(1, 30),
       st.integers(64, 4096))
def test_decoding_allocates_in_proportion_to_the_input(session: bytes, repeat: int, cut: int) -> None:
    stream = session * repeat
    tracemalloc.start()
    try:
        outcome = split(stream, cut)
        decoded = []
        for packet in outcome.packets:
            with contextlib.suppress(MalformedPacketError):
                decoded.append(decode(packet))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the input, its packets' bodies, their decoded fields and Python's objects around them
    assert peak <= 8 * len(stream) + 2000 * (len(outcome.packets) + 1) + 64 * 1024, (peak, len(stream))


@pytest.mark.parametrize("header", [
    b"\x30\xff\xff\xff\x7f",  # announces 256 MiB - 1 and sends none of it
    b"\x82\xff\xff\xff\x7f",
])
def test_an_announced_length_is_refused_from_the_header_alone(header: bytes) -> None:
    with pytest.raises(MalformedPacketError, match="larger than allowed"):
        PacketSplitter(64 * 1024).feed(header)


# --------------------------------------------------------------------------------------------
# Round trips: what the encoders make decodes to what went in
# --------------------------------------------------------------------------------------------

@PROPERTY
@given(st.text(max_size=200), st.binary(max_size=1000), st.integers(0, 2), packet_ids, st.booleans(), st.booleans(),
       st.integers(1, 50))
def test_a_publish_decodes_to_what_was_encoded(topic: str, payload: bytes, qos: int, packet_id: int, retain: bool,
                                               dup: bool, cut: int) -> None:
    dup = dup and qos > 0  # DUP at QoS 0 is malformed [MQTT-3.3.1-2]
    wire = encode_publish(encode_topic(topic), payload, qos, packet_id if qos else None, retain=retain, dup=dup)
    outcome = split(wire, cut)
    assert not outcome.malformed
    [packet] = outcome.packets
    message = decode_publish(packet.flags, packet.body)
    assert (message.topic, message.payload, message.qos, message.retain, message.dup, message.packet_id) == (
        topic, payload, qos, retain, dup, packet_id if qos else None)


@PROPERTY
@given(st.sampled_from(ACKS), packet_ids)
def test_an_acknowledgement_decodes_to_its_kind_and_packet_id(kind: int, packet_id: int) -> None:
    [packet] = PacketSplitter().feed(encode_ack(kind, packet_id))
    assert packet.kind == kind
    assert decode_packet_id(packet.body) == packet_id


@PROPERTY
@given(st.booleans(), st.integers(0, 5))
def test_a_connack_decodes_to_its_return_code(session_present: bool, code: int) -> None:
    [packet] = PacketSplitter().feed(encode_connack(session_present, code))
    assert (packet.kind, packet.flags) == (CONNACK, 0)
    assert packet.body == bytes((int(session_present and code == 0), code))


@PROPERTY
@given(st.integers(0, MAX_REMAINING_LENGTH))
def test_every_remaining_length_decodes_to_itself(length: int) -> None:
    header = b"\x30" + encode_remaining_length(length)
    splitter = PacketSplitter(max_packet=length)
    packets = splitter.feed(header)
    if length == 0:
        assert packets == [Packet(PUBLISH, 0, b"")]
    else:  # waits for the body; with one byte less allowed, refused: the length was read exactly
        assert (packets, splitter.pending) == ([], len(header))
        with pytest.raises(MalformedPacketError):
            PacketSplitter(max_packet=length - 1).feed(header)


@PROPERTY
@given(no_nul, st.booleans(), st.integers(0, 0xFFFF), st.none() | wills, st.none() | no_nul, st.none() | no_nul)
def test_a_connect_decodes_to_what_was_encoded(client_id: str, clean: bool, keepalive: int, will: Will | None,
                                               username: str | None, password: str | None) -> None:
    [packet] = PacketSplitter().feed(encode_connect(client_id, clean_session=clean, keepalive=keepalive, will=will,
                                                    username=username, password=password))
    assert packet.kind == CONNECT
    connect = decode_connect(packet.body)
    assert (connect.proto_name, connect.proto_level, connect.clean_session, connect.keep_alive) == (
        "MQTT", 4, clean, keepalive)
    assert (connect.client_id, connect.username, connect.password) == (client_id, username, password)
    assert connect.will_flag == (will is not None)
    if will is not None:
        assert (connect.will_topic, connect.will_message, connect.will_qos, connect.will_retain) == (
            will.topic, will.message, will.qos, will.retain)


@PROPERTY
@given(packet_ids, filters)
def test_a_subscribe_and_an_unsubscribe_decode_to_their_filters(packet_id: int,
                                                                 pairs: list[tuple[str, int]]) -> None:
    [subscribe, unsubscribe] = PacketSplitter().feed(
        encode_subscribe(packet_id, pairs) + encode_unsubscribe(packet_id, [f for f, _ in pairs]))
    assert (subscribe.kind, subscribe.flags, unsubscribe.kind, unsubscribe.flags) == (SUBSCRIBE, 2, UNSUBSCRIBE, 2)
    assert decode_subscribe(subscribe.body) == (packet_id, pairs)
    assert decode_unsubscribe(unsubscribe.body) == (packet_id, [f for f, _ in pairs])
