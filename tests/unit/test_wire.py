"""MQTT framing of the broker's hot path (``chatmq.broker.wire``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmq.broker.wire import (
    PUBACK,
    PUBLISH,
    PUBREL,
    MalformedPacketError,
    Packet,
    PacketSplitter,
    PacketTooLargeError,
    Will,
    decode_connect,
    decode_packet_id,
    decode_publish,
    encode_ack,
    encode_connect,
    encode_publish,
    encode_remaining_length,
    encode_string,
    encode_suback,
    encode_subscribe,
    encode_topic,
    encode_unsubscribe,
)


def test_publish_round_trips_through_the_splitter() -> None:
    frame = encode_publish(encode_topic("a/b"), b"hello", 1, 7, retain=True, dup=True)
    [packet] = PacketSplitter().feed(frame)
    assert packet.kind == PUBLISH
    message = decode_publish(packet.flags, packet.body)
    assert (message.topic, message.payload, message.qos, message.packet_id) == ("a/b", b"hello", 1, 7)
    assert message.retain
    assert message.dup


def test_qos0_publish_has_no_packet_id() -> None:
    [packet] = PacketSplitter().feed(encode_publish(encode_topic("t"), b"x", 0, None))
    assert decode_publish(packet.flags, packet.body).packet_id is None


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8), st.integers(min_value=1, max_value=50))
def test_packets_split_anywhere_come_out_whole_and_in_order(payloads: list[bytes], cut: int) -> None:
    stream = b"".join(encode_publish(encode_topic(f"t/{i}"), p, 0, None) for i, p in enumerate(payloads))
    splitter = PacketSplitter()
    got = []
    for start in range(0, len(stream), cut):
        got += splitter.feed(stream[start:start + cut])
    assert [decode_publish(p.flags, p.body).payload for p in got] == payloads
    assert splitter.pending == 0


@pytest.mark.parametrize("length", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455])
def test_remaining_length_encoding_matches_the_spec_table(length: int) -> None:
    encoded = encode_remaining_length(length)
    assert len(encoded) == 1 + (length > 127) + (length > 16_383) + (length > 2_097_151)
    value = sum((b & 0x7F) << (7 * i) for i, b in enumerate(encoded))
    assert value == length


def test_a_five_byte_remaining_length_is_malformed() -> None:
    with pytest.raises(MalformedPacketError):
        PacketSplitter().feed(b"\x30\xff\xff\xff\xff\x01")


def test_an_oversized_packet_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(MalformedPacketError):
        PacketSplitter(max_packet=10).feed(b"\x30\x0b")


def test_wrong_reserved_flags_are_malformed() -> None:
    with pytest.raises(MalformedPacketError):
        PacketSplitter().feed(b"\x60\x02\x00\x01")  # PUBREL must carry flags 0b0010 [MQTT-3.6.1-1]


@pytest.mark.parametrize(("flags", "body"), [
    (0b0110, b"\x00\x01t\x00\x01"),  # QoS 3
    (0b1000, b"\x00\x01tpayload"),  # DUP at QoS 0
    (0b0010, b"\x00\x01t\x00\x00"),  # packet id 0
    (0b0000, b"\x00\x05ab"),  # topic longer than the packet
    (0b0000, b"\x00\x02\xff\xfe"),  # topic not UTF-8
    (0b0000, b"\x00"),
])
def test_bad_publishes_are_malformed(flags: int, body: bytes) -> None:
    with pytest.raises(MalformedPacketError):
        decode_publish(flags, body)


@given(st.binary(max_size=64))
def test_no_input_raises_anything_but_malformed(data: bytes) -> None:
    try:
        for packet in PacketSplitter().feed(data):
            if packet.kind == PUBLISH:
                decode_publish(packet.flags, packet.body)
            elif packet.kind == PUBACK:
                decode_packet_id(packet.body)
    except MalformedPacketError:
        pass


def test_acks_carry_their_packet_id_and_pubrel_its_flags() -> None:
    assert encode_ack(PUBACK, 0x1234) == b"\x40\x02\x12\x34"
    assert encode_ack(PUBREL, 1) == b"\x62\x02\x00\x01"


# --- client-side encoders (benchmarks, conformance tests) ----------------------------------


@pytest.mark.parametrize(("n", "encoded"), [
    (0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"), (2_097_151, "ffff7f"),
    (2_097_152, "80808001"), (268_435_455, "ffffff7f"),
])
def test_encode_remaining_length(n: int, encoded: str) -> None:
    assert encode_remaining_length(n).hex() == encoded


@pytest.mark.parametrize("n", [-1, 268_435_456])
def test_encode_remaining_length_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_remaining_length(n)


def test_encode_connect_and_subscribe_bytes() -> None:
    assert encode_connect("c1").hex() == "100e" + "00044d5154540402" + "0000" + "00026331"
    assert encode_connect("c1", keepalive=60, clean_session=False).hex() == (
        "100e" + "00044d5154540400" + "003c" + "00026331")
    assert encode_subscribe(1, [("a/b", 1)]).hex() == "8208" + "0001" + "0003612f62" + "01"


def test_encode_connect_with_will_and_credentials() -> None:
    packet = encode_connect("c", will=Will("w/t", b"bye", qos=1, retain=True), username="u", password="p")
    connect = decode_connect(packet[2:])
    assert (connect.client_id, connect.will_topic, connect.will_message) == ("c", "w/t", b"bye")
    assert (connect.will_qos, connect.will_retain, connect.username, connect.password) == (1, True, "u", "p")


def test_encode_unsubscribe_and_suback_bytes() -> None:
    assert encode_unsubscribe(7, ["a", "b/c"]).hex() == "a20a" + "0007" + "000161" + "0003622f63"
    assert encode_suback(7, [0, 1, 0x80]).hex() == "9005" + "0007" + "000180"


def test_encode_string_refuses_more_than_65535_bytes() -> None:
    assert encode_string(b"x" * 0xFFFF)[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="65536 bytes"):
        encode_string("x" * 0x10000)
def test_an_oversized_announcement_is_refused_from_its_fixed_header_alone() -> None:
    header = b"\x30" + encode_remaining_length(200 * 1024 * 1024)  # a 200 MB PUBLISH announced, no body
    with pytest.raises(PacketTooLargeError) as raised:
        PacketSplitter(max_packet=128 * 1024).feed(header)
    assert (raised.value.length, raised.value.limit) == (200 * 1024 * 1024, 128 * 1024)


def test_a_big_packet_fed_in_many_chunks_is_held_as_chunks_and_joined_once() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_publish(encode_topic("big"), payload, 0, None) + encode_publish(encode_topic("s"), b"!", 0, None)
    splitter = PacketSplitter()
    got: list[Packet] = []
    for start in range(0, len(stream), 1000):
        got += splitter.feed(stream[start:start + 1000])
        if not got:
            assert splitter.pending == min(start + 1000, len(stream))
            assert len(splitter._parts) == start // 1000 + 1  # kept as received: no copy per chunk
    assert [decode_publish(p.flags, p.body).payload for p in got] == [payload, b"!"]
    assert splitter.pending == 0
