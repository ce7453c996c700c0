"""MQTT 5 (and 3.1) in the one codec, ``chatmq.broker.wire``: properties, the v5 layouts of each
packet, and that levels 3 and 4 keep MQTT 3.1.1's bytes exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatmq.broker.wire import (
    CONNACK,
    CONNECT,
    DISCONNECT_BYTES,
    MAX_PROPERTIES_LENGTH,
    MQTT_5,
    MQTT_31,
    PROPERTY_TABLE,
    PUBACK,
    PUBLISH,
    PUBREL,
    SUBSCRIBE,
    WILL,
    MalformedPacketError,
    Properties,
    PropertyType,
    ReasonCode,
    SubscriptionOptions,
    Will,
    decode_ack,
    decode_connect,
    decode_disconnect,
    decode_properties,
    decode_publish,
    decode_subscribe,
    decode_subscribe_v5,
    decode_unsubscribe,
    decode_varint,
    encode_ack,
    encode_connack,
    encode_connect,
    encode_disconnect,
    encode_properties,
    encode_publish,
    encode_suback,
    encode_subscribe,
    encode_topic,
    encode_unsuback,
    encode_unsubscribe,
    encode_varint,
)


def _every_property() -> Properties:
    return Properties(
        payload_format_indicator=1, message_expiry_interval=3600, content_type="text/plain",
        response_topic="r/t", correlation_data=b"\x00\x01", subscription_identifier=[1, 268_435_455],
        session_expiry_interval=0xFFFFFFFF, assigned_client_identifier="a", server_keep_alive=30,
        authentication_method="m", authentication_data=b"d", request_problem_information=0,
        will_delay_interval=5, request_response_information=1, response_information="ri",
        server_reference="s", reason_string="why", receive_maximum=10, topic_alias_maximum=5, topic_alias=2,
        maximum_qos=1, retain_available=1, user_properties=[("k", "v"), ("k", "v2")], maximum_packet_size=1024,
        wildcard_subscription_available=1, subscription_identifier_available=0, shared_subscription_available=0,
    )


def test_the_property_table_covers_every_field_of_properties() -> None:
    assert sorted(name for name, _type, _where in PROPERTY_TABLE.values()) == sorted(Properties.__dataclass_fields__)
    assert len(PROPERTY_TABLE) == 27


def test_every_property_encodes_and_decodes_back() -> None:
    props = _every_property()
    block = encode_properties(props)
    everywhere = frozenset().union(*(where for _name, _type, where in PROPERTY_TABLE.values()))
    for name, _type, where in PROPERTY_TABLE.values():
        assert where <= everywhere, name
    # decode against a table where every property is allowed: the kind check is tested apart
    decoded, end = _decode_anywhere(block)
    assert end == len(block)
    assert decoded == props


def _decode_anywhere(block: bytes) -> tuple[Properties, int]:
    saved = dict(PROPERTY_TABLE)
    try:
        for ident, (name, ptype, _where) in saved.items():
            PROPERTY_TABLE[ident] = (name, ptype, frozenset({PUBLISH}))
        return decode_properties(block, 0, PUBLISH)
    finally:
        PROPERTY_TABLE.update(saved)


def test_property_bytes_are_the_spec_layout() -> None:
    block = encode_properties(Properties(message_expiry_interval=10, user_properties=[("a", "b")]))
    assert block == b"\x0c" + b"\x02\x00\x00\x00\x0a" + b"\x26\x00\x01a\x00\x01b"
    assert encode_properties(None) == b"\x00"
    assert encode_properties(Properties()) == b"\x00"


@pytest.mark.parametrize(("block", "kind", "why"), [
    (b"\x02\x7f\x00", PUBLISH, "unknown property"),
    (b"\x02\x11\x00", PUBLISH, "not allowed"),  # session expiry interval on a PUBLISH
    (b"\x04\x01\x01\x01\x01", PUBLISH, "given twice"),
    (b"\x02\x01\x02", PUBLISH, "not 0 or 1"),
    (b"\x03\x21\x00\x00", CONNECT, "is 0"),  # receive maximum 0
    (b"\x02\x0b\x00", SUBSCRIBE, "subscription identifier 0"),
    (b"\x05\x02\x00\x00", PUBLISH, "announced"),
    (b"\x02\x02\x00", PUBLISH, "cut off"),
    (b"\x03\x03\x00\x05", PUBLISH, "announced"),
    (b"\x02\x0b\x80\x01", SUBSCRIBE, "cut off"),  # a varint running past the block (into a payload)
    (b"\x01\x80\x01\x01", PUBLISH, "cut off"),  # an identifier running past the block
    (b"\x80\x80\x80\x80\x01", PUBLISH, "longer than four bytes"),
    (b"\x04\x03\x00\x01\xff", PUBLISH, "not UTF-8"),
])
def test_bad_property_blocks_are_malformed(block: bytes, kind: int, why: str) -> None:
    with pytest.raises(MalformedPacketError, match=why):
        decode_properties(block, 0, kind)


def test_a_property_block_over_its_limit_is_malformed_before_it_is_read() -> None:
    with pytest.raises(MalformedPacketError, match="more than"):
        decode_properties(encode_varint(MAX_PROPERTIES_LENGTH + 1), 0, CONNECT, limit=MAX_PROPERTIES_LENGTH)


def test_user_properties_repeat_in_order_and_publish_subscription_identifiers_repeat() -> None:
    block = encode_properties(Properties(user_properties=[("x", "1"), ("x", "2")], subscription_identifier=[3, 4]))
    props, _end = decode_properties(block, 0, PUBLISH)
    assert props.user_properties == [("x", "1"), ("x", "2")]
    assert props.subscription_identifier == [3, 4]
    with pytest.raises(MalformedPacketError, match="twice"):
        decode_properties(block, 0, SUBSCRIBE)


@given(st.integers(0, 268_435_455))
def test_varints_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert decode_varint(raw + b"tail", 0) == (value, len(raw))


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from([CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, WILL]))
def test_any_bytes_decode_or_are_malformed(data: bytes, kind: int) -> None:
    """Nothing but ``MalformedPacketError``; what decodes stays inside the input and encodes back."""
    try:
        props, end = decode_properties(data, 0, kind)
    except MalformedPacketError:
        return
    assert end <= len(data)
    assert decode_properties(encode_properties(props), 0, kind)[0] == props


# --- packets ---------------------------------------------------------------------------------------
def test_v5_connect_with_properties_and_will_properties_decodes() -> None:
    will = Will("w/t", b"bye", 1, True, Properties(will_delay_interval=10, content_type="c"))
    packet = encode_connect("c5", keepalive=20, will=will, username="u", password="p", protocol_level=MQTT_5,
                            properties=Properties(session_expiry_interval=60, receive_maximum=5))
    connect = decode_connect(packet[2:])
    assert (connect.proto_name, connect.proto_level, connect.client_id) == ("MQTT", 5, "c5")
    assert connect.properties == Properties(session_expiry_interval=60, receive_maximum=5)
    assert connect.will_properties == Properties(will_delay_interval=10, content_type="c")
    assert (connect.will_topic, connect.will_message, connect.username, connect.password) == ("w/t", b"bye", "u", "p")


def test_a_will_property_in_the_connect_properties_is_malformed() -> None:
    packet = encode_connect("c5", protocol_level=MQTT_5, properties=Properties(will_delay_interval=1))
    with pytest.raises(MalformedPacketError, match="not allowed"):
        decode_connect(packet[2:])


def test_mqtt_31_connect_is_mqisdp_level_3() -> None:
    connect = decode_connect(encode_connect("c3", protocol_level=MQTT_31)[2:])
    assert (connect.proto_name, connect.proto_level) == ("MQIsdp", 3)


def test_connack_per_level() -> None:
    assert encode_connack(True, 0) == b"\x20\x02\x01\x00"
    assert encode_connack(True, 0, protocol_level=MQTT_31) == b"\x20\x02\x00\x00"
    assert encode_connack(True, 0, protocol_level=MQTT_5) == b"\x20\x03\x01\x00\x00"
    assert encode_connack(True, 5, protocol_level=MQTT_5) == b"\x20\x03\x00\x87\x00"  # not authorized
    assert encode_connack(False, ReasonCode.BAD_AUTHENTICATION_METHOD, protocol_level=MQTT_5) == b"\x20\x03\x00\x8c\x00"
    with_props = encode_connack(False, 0, protocol_level=MQTT_5, properties=Properties(maximum_packet_size=9))
    assert with_props == b"\x20\x08\x00\x00\x05\x27\x00\x00\x00\x09"


def test_v5_publish_has_properties_after_the_packet_id() -> None:
    block = encode_properties(Properties(content_type="j"))
    packet = encode_publish(encode_topic("a/b"), b"pay", 1, 7, properties=block)
    assert packet == b"\x32" + bytes((5 + 2 + len(block) + 3,)) + b"\x00\x03a/b\x00\x07" + block + b"pay"
    message = decode_publish(0x02, packet[2:], MQTT_5)
    assert (message.topic, message.packet_id, message.payload) == ("a/b", 7, b"pay")
    assert message.properties == Properties(content_type="j")
    assert decode_publish(0x02, packet[2:]).payload == block + b"pay"  # 3.1.1 reads no properties


def test_mqtt_311_bytes_are_unchanged() -> None:
    """The encoders' 3.1.1 output, byte for byte as before MQTT 5."""
    assert encode_publish(b"\x00\x01t", b"p", 0, None) == b"\x30\x04\x00\x01tp"
    assert encode_publish(b"\x00\x01t", b"p", 2, 1, retain=True, dup=True) == b"\x3d\x06\x00\x01t\x00\x01p"
    assert encode_ack(PUBACK, 258) == b"\x40\x02\x01\x02"
    assert encode_ack(PUBREL, 1) == b"\x62\x02\x00\x01"
    assert encode_suback(1, [0, 0x80]) == b"\x90\x04\x00\x01\x00\x80"
    assert encode_unsuback(9, []) == b"\xb0\x02\x00\x09"
    assert encode_subscribe(1, [("t", 1)]) == b"\x82\x06\x00\x01\x00\x01t\x01"
    assert encode_unsubscribe(1, ["t"]) == b"\xa2\x05\x00\x01\x00\x01t"
    assert encode_disconnect() == DISCONNECT_BYTES


def test_v5_acknowledgements() -> None:
    assert encode_ack(PUBACK, 1, ReasonCode.NO_MATCHING_SUBSCRIBERS) == b"\x40\x03\x00\x01\x10"
    with_reason = encode_ack(PUBACK, 1, 0x87, Properties(reason_string="no"))
    assert with_reason == b"\x40\x09\x00\x01\x87\x05\x1f\x00\x02no"
    assert decode_ack(PUBACK, with_reason[2:], MQTT_5) == (1, 0x87)
    assert decode_ack(PUBACK, b"\x00\x02", MQTT_5) == (2, 0)
    assert decode_ack(PUBACK, b"\x00\x02\x10", MQTT_5) == (2, 0x10)
    with pytest.raises(MalformedPacketError):
        decode_ack(PUBACK, b"\x00\x02\x10", 4)  # 3.1.1: exactly two bytes
    with pytest.raises(MalformedPacketError):
        decode_ack(PUBACK, b"\x00\x02\x10\x00\xff", MQTT_5)


def test_v5_subscribe_options() -> None:
    options = SubscriptionOptions(2, no_local=True, retain_as_published=True, retain_handling=2)
    packet = encode_subscribe(3, [("a/#", options.encode())], protocol_level=MQTT_5,
                              properties=Properties(subscription_identifier=[9]))
    request = decode_subscribe_v5(packet[2:])
    assert request.packet_id == 3
    assert request.topics == [("a/#", options)]
    assert request.properties.subscription_identifier == [9]
    for bad in (0x40, 0x30, 0x03):
        with pytest.raises(MalformedPacketError):
            decode_subscribe_v5(b"\x00\x01\x00\x00\x01t" + bytes((bad,)))
    with pytest.raises(MalformedPacketError, match="QoS"):
        decode_subscribe(b"\x00\x01\x00\x01t\x04")  # 3.1.1 keeps refusing option bits


def test_v5_suback_unsuback_unsubscribe_disconnect() -> None:
    assert encode_suback(1, [0x87], protocol_level=MQTT_5) == b"\x90\x04\x00\x01\x00\x87"
    assert encode_unsuback(1, [0, 0x11], protocol_level=MQTT_5) == b"\xb0\x05\x00\x01\x00\x00\x11"
    packet = encode_unsubscribe(4, ["x", "y"], protocol_level=MQTT_5)
    assert decode_unsubscribe(packet[2:], MQTT_5) == (4, ["x", "y"])
    assert encode_disconnect(0x8E) == b"\xe0\x01\x8e"
    assert decode_disconnect(b"", MQTT_5) == (0, None)
    assert decode_disconnect(b"\x04", MQTT_5) == (4, None)
    reason, props = decode_disconnect(encode_disconnect(0, Properties(session_expiry_interval=5))[2:], MQTT_5)
    assert (reason, props) == (0, Properties(session_expiry_interval=5))


def test_property_types_are_the_spec_types() -> None:
    assert PROPERTY_TABLE[0x26][1] is PropertyType.STRING_PAIR
    assert PROPERTY_TABLE[0x0B][1] is PropertyType.VARINT
    assert PROPERTY_TABLE[0x02][1] is PropertyType.FOUR_BYTE
    assert PROPERTY_TABLE[0x21][1] is PropertyType.TWO_BYTE
