"""CONNECT, SUBSCRIBE and UNSUBSCRIBE decoding and CONNACK encoding (``chatmq.broker.wire``)."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmq.broker.wire import (
    MalformedPacketError,
    decode_connect,
    decode_subscribe,
    decode_unsubscribe,
    encode_connack,
    encode_connect,
    encode_string,
    encode_subscribe,
)


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def _connect_body(flags: int, *fields: str | bytes, keep_alive: int = 60, name: bytes = b"MQTT",
                  level: int = 4) -> bytes:
    return _s(name) + bytes((level, flags)) + keep_alive.to_bytes(2, "big") + b"".join(_s(f) for f in fields)


def test_the_benchmarks_connect_decodes() -> None:
    frame = encode_connect("dev-1", keepalive=30)
    assert frame[:2] == b"\x10\x11"
    connect = decode_connect(frame[2:])
    assert (connect.proto_name, connect.proto_level, connect.keep_alive, connect.client_id) == ("MQTT", 4, 30, "dev-1")
    assert connect.clean_session
    assert (connect.will_flag, connect.username_flag, connect.password_flag, connect.reserved_flag) == (False,) * 4
    assert (connect.will_topic, connect.will_message, connect.username, connect.password) == (None,) * 4


def test_every_field_decodes_in_order() -> None:
    # user name, password, will retain, will QoS 2, will, clean session
    body = _connect_body(0x80 | 0x40 | 0x20 | 0x10 | 0x04 | 0x02, "cid", "will/t", b"\x00\xffbye", "ann", "s3cret")
    connect = decode_connect(body)
    assert (connect.client_id, connect.will_topic, connect.will_message) == ("cid", "will/t", b"\x00\xffbye")
    assert (connect.username, connect.password) == ("ann", "s3cret")
    assert (connect.will_qos, connect.will_retain, connect.clean_session) == (2, True, True)


def test_golden_bytes_of_a_connect_with_credentials() -> None:
    frame = bytes.fromhex("101600044d51545404c0003c0001610003626f6200027077")[2:]
    connect = decode_connect(frame)
    assert (connect.client_id, connect.username, connect.password, connect.keep_alive) == ("a", "bob", "pw", 60)
    assert not connect.clean_session


def test_fields_the_flags_announce_but_the_body_lacks_are_none() -> None:
    """amqtt left them None; the caller then refuses (code 4) or closes ([MQTT-3.1.2-9])."""
    assert decode_connect(_connect_body(0x02)).client_id is None
    assert decode_connect(_connect_body(0x82, "cid")).username is None
    assert decode_connect(_connect_body(0xC2, "cid", "ann")).password is None
    no_message = decode_connect(_connect_body(0x06, "cid", "will/t"))
    assert (no_message.will_topic, no_message.will_message) == (None, None)


def test_the_protocol_name_and_level_are_left_to_the_caller() -> None:
    connect = decode_connect(_connect_body(0x02, "c", name=b"MQIsdp", level=3))
    assert (connect.proto_name, connect.proto_level) == ("MQIsdp", 3)
    assert decode_connect(_connect_body(0x02, "c", name=b"\xff")).proto_name != "MQTT"


@pytest.mark.parametrize(("body", "why"), [
    (b"", "shorter than its protocol name"),
    (b"\x00\x04MQTT\x04\x02\x00", "shorter than its variable header"),
    (b"\x00\x09MQTT", "shorter than its variable header"),
    (_connect_body(0x02)[:-1], "shorter than its variable header"),
    (_connect_body(0x02) + b"\x00", "client id: length cut off"),
    (_connect_body(0x02) + b"\x00\x05abc", "client id: 5 bytes announced, 3 left"),
    (_connect_body(0x02, b"\xc3\x28"), "client id is not UTF-8 [MQTT-1.5.3-1]"),
    (_connect_body(0x02, "a\x00b"), "client id contains U+0000 [MQTT-1.5.3-2]"),
    (_connect_body(0x06, "c", b"\xff", b"m"), "will topic is not UTF-8"),
    (_connect_body(0x82, "c", b"\xfe"), "user name is not UTF-8"),
    (_connect_body(0x02, "c") + b"junk", "4 bytes after its last field"),
    (_connect_body(0x02 | 0x18 | 0x04, "c", "t", "m"), "will QoS 3 [MQTT-3.1.2-14]"),
    (_connect_body(0x02 | 0x08, "c"), "no will [MQTT-3.1.2-13]"),
    (_connect_body(0x02 | 0x20, "c"), "[MQTT-3.1.2-15]"),
])
def test_malformed_connects_raise_a_clear_error(body: bytes, why: str) -> None:
    with pytest.raises(MalformedPacketError, match=re.escape(why)):
        decode_connect(body)


def test_a_password_that_is_not_utf8_is_kept_as_amqtt_kept_it() -> None:
    assert decode_connect(_connect_body(0xC2, "c", "u", b"\xff")).password == "b'\\xff'"


@given(st.binary(max_size=80))
def test_any_bytes_decode_or_raise_malformed(body: bytes) -> None:
    for decode in (decode_connect, decode_subscribe, decode_unsubscribe):
        with contextlib.suppress(MalformedPacketError):
            decode(body)


@given(st.text(max_size=40).filter(lambda t: "\x00" not in t), st.integers(0, 0xFFFF), st.booleans())
def test_connects_round_trip(client_id: str, keep_alive: int, clean: bool) -> None:
    frame = encode_connect(client_id, keepalive=keep_alive, clean_session=clean)
    connect = decode_connect(frame[3:] if frame[1] & 0x80 else frame[2:])
    assert (connect.client_id, connect.keep_alive, connect.clean_session) == (client_id, keep_alive, clean)


def test_connack_golden_bytes() -> None:
    assert encode_connack(False, 0) == b"\x20\x02\x00\x00"
    assert encode_connack(True, 0) == b"\x20\x02\x01\x00"
    assert encode_connack(True, 5) == b"\x20\x02\x00\x05"  # session present only when accepted [MQTT-3.2.2-4]


def test_subscribe_golden_bytes() -> None:
    frame = encode_subscribe(7, [("idle/x/1", 1)])
    assert frame[0] == 0x82
    assert decode_subscribe(frame[2:]) == (7, [("idle/x/1", 1)])
    body = b"\x01\x02" + encode_string("a/+") + b"\x00" + encode_string("#") + b"\x02"
    assert decode_subscribe(body) == (0x0102, [("a/+", 0), ("#", 2)])


@pytest.mark.parametrize(("body", "why"), [
    (b"", "without a packet id"),
    (b"\x00", "without a packet id"),
    (b"\x00\x00" + _s("t") + b"\x00", "packet id 0"),
    (b"\x00\x01", "without topic filters"),
    (b"\x00\x01" + _s("t"), "without its QoS byte"),
    (b"\x00\x01" + _s("t") + b"\x03", "requested QoS 3"),
    (b"\x00\x01" + _s("t") + b"\x81", "requested QoS 129"),
    (b"\x00\x01\x00\x09ab", "9 bytes announced"),
    (b"\x00\x01" + _s(b"\xff") + b"\x00", "not UTF-8"),
])
def test_malformed_subscribes_raise_a_clear_error(body: bytes, why: str) -> None:
    with pytest.raises(MalformedPacketError, match=why):
        decode_subscribe(body)


def test_unsubscribe_decodes_and_rejects_what_is_malformed() -> None:
    assert decode_unsubscribe(b"\x00\x05" + _s("a/b") + _s("c")) == (5, ["a/b", "c"])
    with pytest.raises(MalformedPacketError, match=r"without topic filters \[MQTT-3.10.3-2\]"):
        decode_unsubscribe(b"\x00\x05")
    with pytest.raises(MalformedPacketError, match="cut off"):
        decode_unsubscribe(b"\x00\x05\x00")
