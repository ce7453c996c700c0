"""MQTT 5 and MQTT 3.1 at the plain node, by the MQTT 5 spec's normative statements (``[MQTT-x.y.z-n]``)
or, where a behaviour has no numbered statement, its section (``v5_3_14_2_...`` for §3.14.2).

What these check is what a client sees on the wire: the CONNACK's reason code and properties, the
PUBLISH layout (properties after the packet id), reason codes on acknowledgements, and the server's
DISCONNECT with its reason before it closes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from chatmq.broker.wire import (
    AUTH,
    Properties,
    ReasonCode,
    SubscriptionOptions,
    Will,
    encode_auth,
    encode_connect,
    encode_disconnect,
    encode_packet,
    encode_publish,
    encode_subscribe,
    encode_topic,
)
from tests.conformance.conftest import PlainNode
from tests.conformance.raw import (
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    RawClient,
    Received,
)

Raw = Callable[[], RawClient]


def _connected(raw5: Raw, client_id: str, **kwargs: object) -> RawClient:
    client = raw5()
    connack = client.connect(client_id, **kwargs)  # type: ignore[arg-type]
    assert connack.reason == 0, connack
    return client


# --- CONNECT / CONNACK -----------------------------------------------------------------------------
def test_v5_3_1_2_2_a_level_5_connect_is_accepted_with_a_v5_connack(raw5: Raw, node: PlainNode) -> None:
    client = raw5()
    connack = client.connect("v5-accepted")
    assert connack.kind == CONNACK
    assert (connack.body[0], connack.reason) == (0, ReasonCode.SUCCESS)
    props = connack.properties
    assert props.maximum_packet_size is not None
    assert props.maximum_packet_size > 0
    assert props.shared_subscription_available is None  # absent: available
    assert props.subscription_identifier_available is None  # absent: available
    assert props.assigned_client_identifier is None  # the client named itself
    assert client.nothing_for(0.2)


def test_v3_1_an_mqisdp_level_3_connect_is_accepted(raw31: Raw) -> None:
    client = raw31()
    connack = client.connect("v31-client")
    assert connack.body == b"\x00\x00"  # MQTT 3.1: no session present flag, return code 0
    assert client.subscribe(("v31/t", 1)) == [1]
    client.publish("v31/t", b"hi", 1)
    got = [p for p in (client.read(), client.read()) if p is not None]
    assert sorted(p.kind for p in got) == [PUBLISH, PUBACK]
    assert next(p for p in got if p.kind == PUBLISH).payload == b"hi"


def test_v3_1_an_empty_client_id_is_rejected(raw31: Raw) -> None:
    client = raw31()
    assert client.connect("").body == b"\x00\x02"  # MQTT 3.1: client ids of 1 to 23 characters
    assert client.closed_by_broker()


def test_v5_3_1_2_2_an_unknown_protocol_level_is_refused_then_closed(node: PlainNode) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(encode_connect("lvl6", protocol_level=6))
        assert sock.recv(16) == b"\x20\x02\x00\x01"
        assert sock.recv(16) == b""


def test_v5_3_2_2_16_a_zero_length_client_id_gets_an_assigned_client_identifier(raw5: Raw) -> None:
    client = raw5()
    connack = client.connect("", clean=False)  # MQTT 5 allows it without clean start too
    assert connack.reason == 0
    assigned = connack.properties.assigned_client_identifier
    assert assigned


def test_v5_4_12_0_1_an_authentication_method_is_refused_with_bad_authentication_method(raw5: Raw) -> None:
    client = raw5()
    connack = client.connect("auth-method", properties=Properties(authentication_method="SCRAM-SHA-1"))
    assert connack.reason == ReasonCode.BAD_AUTHENTICATION_METHOD
    assert connack.body[0] == 0
    assert client.closed_by_broker()


def test_v5_3_15_auth_without_a_method_is_answered_with_disconnect_bad_authentication_method(raw5: Raw) -> None:
    client = _connected(raw5, "auth-later")
    client.send(encode_auth(0x19))  # re-authenticate
    disconnect = client.expect(DISCONNECT)
    assert disconnect.reason == ReasonCode.BAD_AUTHENTICATION_METHOD
    assert client.closed_by_broker()


def test_v5_auth_is_a_packet_a_v311_server_must_not_receive(raw: Raw) -> None:
    client = raw()
    assert client.connect("auth-311").body == b"\x00\x00"
    client.send(encode_packet(AUTH << 4, b"\x00"))
    assert client.read() is None
    assert client.closed_by_broker()


# --- PUBLISH ---------------------------------------------------------------------------------------
def test_v5_3_3_2_a_v5_subscriber_gets_publishes_with_a_property_block(raw5: Raw, raw: Raw) -> None:
    sub = _connected(raw5, "v5-sub")
    assert sub.subscribe(("v5/relay", 1)) == [1]
    pub = raw()
    pub.connect("v311-pub")
    pub.publish("v5/relay", b"q0")
    pub.publish("v5/relay", b"q1", 1)
    first, second = sub.publishes(2)
    assert (first.topic, first.payload, first.qos) == ("v5/relay", b"q0", 0)
    assert first.body == b"\x00\x08v5/relay\x00q0"  # topic, empty property block, payload
    assert (second.payload, second.qos) == (b"q1", 1)
    assert second.body[12:] == b"\x00q1"  # after the topic and packet id: property length 0, payload
    sub.ack(PUBACK, second.packet_id)
    assert sub.nothing_for(0.2)


def test_v5_3_3_2_a_v311_subscriber_of_a_v5_publisher_sees_mqtt_311_bytes(raw5: Raw, raw: Raw) -> None:
    sub = raw()
    sub.connect("v311-sub")
    assert sub.subscribe(("mix/t", 1)) == [1]
    pub = _connected(raw5, "v5-pub")
    pub.publish("mix/t", b"body", 1, properties=Properties(user_properties=[("k", "v")], content_type="text/plain"))
    assert pub.expect(PUBACK).body[:2] == b"\x00\x01"
    (got,) = sub.publishes(1)
    assert got.body == b"\x00\x05mix/t" + got.body[7:9] + b"body"  # no properties at 3.1.1


def test_v5_2_2_2_2_a_repeated_property_is_a_protocol_error(raw5: Raw, node: PlainNode) -> None:
    client = _connected(raw5, "dup-prop")
    props = b"\x02\x00\x00\x00\x01"  # message expiry interval ...
    block = bytes((len(props) * 2,)) + props * 2  # ... twice
    client.send(encode_packet(0x30, b"\x00\x01t" + block + b"x"))
    assert client.expect(DISCONNECT).reason == ReasonCode.PROTOCOL_ERROR
    assert client.closed_by_broker()


def test_v5_3_2_2_17_a_topic_alias_above_the_maximum_is_refused(raw5: Raw) -> None:
    client = raw5()
    assert client.connect("alias-big").properties.topic_alias_maximum == 10  # the setting's default
    client.publish("alias/t", b"x", properties=Properties(topic_alias=11))
    assert client.expect(DISCONNECT).reason == ReasonCode.TOPIC_ALIAS_INVALID
    assert client.closed_by_broker()


def test_v5_3_3_2_3_4_a_topic_alias_set_with_a_topic_then_stands_for_it(raw5: Raw) -> None:
    sub = _connected(raw5, "alias-sub")
    assert sub.subscribe(("alias/a", 0), ("alias/b", 0)) == [0, 0]
    pub = _connected(raw5, "alias-pub")
    pub.publish("alias/a", b"1", properties=Properties(topic_alias=3))
    pub.publish("", b"2", properties=Properties(topic_alias=3))
    pub.publish("alias/b", b"3", properties=Properties(topic_alias=3))  # re-set
    pub.publish("", b"4", properties=Properties(topic_alias=3))
    got = sub.publishes(4)
    assert [(p.topic, p.payload) for p in got] == [("alias/a", b"1"), ("alias/a", b"2"), ("alias/b", b"3"),
                                                   ("alias/b", b"4")]
    assert all(p.properties.topic_alias is None for p in got)  # aliases are per connection, not forwarded


def test_v5_3_3_4_an_unknown_topic_alias_or_no_topic_at_all_is_a_protocol_error(raw5: Raw) -> None:
    unknown = _connected(raw5, "alias-unknown")
    unknown.publish("", b"x", properties=Properties(topic_alias=4))
    assert unknown.expect(DISCONNECT).reason == ReasonCode.PROTOCOL_ERROR
    no_topic = _connected(raw5, "alias-none")
    no_topic.publish("", b"x")
    assert no_topic.expect(DISCONNECT).reason == ReasonCode.PROTOCOL_ERROR


def test_v5_3_4_2_acknowledgements_with_reason_codes_and_properties_are_read(raw5: Raw, raw: Raw) -> None:
    sub = _connected(raw5, "ack-reasons", clean=False, properties=Properties(session_expiry_interval=300))
    assert sub.subscribe(("acks/t", 1)) == [1]
    pub = raw()
    pub.connect("ack-pub")
    pub.publish("acks/t", b"one", 1)
    (got,) = sub.publishes(1)
    # PUBACK with reason 0x10 (no matching subscribers) and a reason string property
    props = b"\x1f\x00\x02ok"
    sub.send(encode_packet(PUBACK << 4, got.packet_id.to_bytes(2, "big") + b"\x10" + bytes((len(props),)) + props))
    assert sub.nothing_for(0.2)
    sub.disconnect()
    again = raw5()
    connack = again.connect("ack-reasons", clean=False)
    assert (connack.body[0], connack.reason) == (1, 0)
    assert again.nothing_for(0.3)  # acknowledged: not resent


def test_v5_3_7_2_pubrel_of_an_unknown_packet_id_gets_pubcomp_packet_identifier_not_found(raw5: Raw) -> None:
    client = _connected(raw5, "pubrel-unknown")
    client.send(encode_packet(PUBREL << 4 | 2, b"\x00\x07"))
    pubcomp = client.expect(PUBCOMP)
    assert (pubcomp.packet_id, pubcomp.reason) == (7, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)


# --- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------------------------
def test_v5_3_9_3_suback_reason_codes_in_filter_order(raw5: Raw) -> None:
    client = _connected(raw5, "suback-codes")
    codes = client.subscribe(("ok/0", 0), ("ok/2", SubscriptionOptions(2).encode()), ("bad/#/x", 1),
                             ("$share/g/t", 1), ("$share//t", 1), ("$share/g+/t", 1), ("$share/g", 1))
    assert codes == [0, 2, ReasonCode.TOPIC_FILTER_INVALID, 1] + [ReasonCode.TOPIC_FILTER_INVALID] * 3


def test_v5_3_8_3_5_reserved_subscription_option_bits_make_the_subscribe_malformed(raw5: Raw) -> None:
    client = _connected(raw5, "sub-reserved")
    client.send(encode_packet(0x82, b"\x00\x01\x00\x00\x01t\xc1"))
    assert client.expect(DISCONNECT).reason == ReasonCode.MALFORMED_PACKET
    assert client.closed_by_broker()


def test_v5_3_3_4_3_subscription_identifiers_come_with_each_matching_publish(raw5: Raw) -> None:
    sub = _connected(raw5, "sub-ids")
    sub.send(encode_subscribe(1, [("ids/+", 1)], protocol_level=5, properties=Properties(subscription_identifier=[7])))
    assert sub.expect(SUBACK).codes == [1]
    sub.send(encode_subscribe(2, [("ids/#", 0)], protocol_level=5,
                              properties=Properties(subscription_identifier=[300])))
    assert sub.expect(SUBACK).codes == [0]
    assert sub.subscribe(("ids/a", 0)) == [0]  # no identifier
    pub = _connected(raw5, "sub-ids-pub")
    pub.publish("ids/a", b"x", retain=True)
    (got,) = sub.publishes(1)
    assert sorted(got.properties.subscription_identifier) == [7, 300]
    late = _connected(raw5, "sub-ids-late")  # a retained message carries the new subscription's identifier
    late.send(encode_subscribe(1, [("ids/#", 0)], protocol_level=5, properties=Properties(subscription_identifier=[9])))
    assert late.expect(SUBACK).codes == [0]
    (retained,) = late.publishes(1)
    assert retained.retain
    assert retained.properties.subscription_identifier == [9]


def test_v5_3_8_3_3_no_local_keeps_a_clients_own_publishes_from_it(raw5: Raw) -> None:
    client = _connected(raw5, "no-local")
    assert client.subscribe(("nl/t", SubscriptionOptions(0, no_local=True).encode())) == [0]
    other = _connected(raw5, "no-local-other")
    client.publish("nl/t", b"mine")
    other.publish("nl/t", b"theirs")
    (got,) = client.publishes(1)
    assert got.payload == b"theirs"
    assert client.nothing_for(0.3)


def test_v5_3_3_1_12_retain_as_published_keeps_the_retain_flag(raw5: Raw) -> None:
    rap, plain = _connected(raw5, "rap"), _connected(raw5, "not-rap")
    assert rap.subscribe(("rap/t", SubscriptionOptions(0, retain_as_published=True).encode())) == [0]
    assert plain.subscribe(("rap/t", 0)) == [0]
    pub = _connected(raw5, "rap-pub")
    pub.publish("rap/t", b"kept", retain=True)
    assert rap.publishes(1)[0].retain
    assert not plain.publishes(1)[0].retain  # [MQTT-3.3.1-13]


def test_v5_3_3_1_9_retain_handling_0_1_2(raw5: Raw) -> None:
    pub = _connected(raw5, "rh-pub")
    pub.publish("rh/t", b"retained", retain=True)
    always = _connected(raw5, "rh-0")
    assert always.subscribe(("rh/t", 0)) == [0]
    assert always.publishes(1)[0].payload == b"retained"
    assert always.subscribe(("rh/t", 0)) == [0]
    assert always.publishes(1)[0].payload == b"retained"  # 0: at every subscribe
    new_only = _connected(raw5, "rh-1")
    rh1 = SubscriptionOptions(0, retain_handling=1).encode()
    assert new_only.subscribe(("rh/t", rh1)) == [0]
    assert new_only.publishes(1)[0].payload == b"retained"
    assert new_only.subscribe(("rh/t", rh1)) == [0]
    assert new_only.nothing_for(0.3)  # 1: only when the subscription is new [MQTT-3.3.1-10]
    never = _connected(raw5, "rh-2")
    assert never.subscribe(("rh/t", SubscriptionOptions(0, retain_handling=2).encode())) == [0]
    assert never.nothing_for(0.3)  # 2: never [MQTT-3.3.1-11]


def test_v5_3_11_3_1_unsuback_has_a_reason_code_per_filter_in_order(raw5: Raw) -> None:
    client = _connected(raw5, "unsuback-codes")
    assert client.subscribe(("un/a", 0)) == [0]
    unsuback = client.unsubscribe("never/there", "un/a")
    assert unsuback.codes == [ReasonCode.NO_SUBSCRIPTION_EXISTED, ReasonCode.SUCCESS]


# --- DISCONNECT --------------------------------------------------------------------------------------
def test_v5_3_1_4_3_a_taken_over_connection_gets_disconnect_session_taken_over(raw5: Raw) -> None:
    first = _connected(raw5, "taken")
    _connected(raw5, "taken")
    assert first.expect(DISCONNECT).reason == ReasonCode.SESSION_TAKEN_OVER
    assert first.closed_by_broker()


def test_v5_3_14_2_disconnect_with_will_message_publishes_the_will(raw5: Raw, raw: Raw) -> None:
    watcher = raw()
    watcher.connect("will-watch")
    assert watcher.subscribe(("will/v5", 0)) == [0]
    client = _connected(raw5, "will-v5", will=("will/v5", b"gone", 0, False))
    client.send(encode_disconnect(ReasonCode.DISCONNECT_WITH_WILL))
    (will,) = watcher.publishes(1)
    assert will.payload == b"gone"


def test_v5_3_14_4_3_normal_disconnect_discards_the_will(raw5: Raw, raw: Raw) -> None:
    watcher = raw()
    watcher.connect("will-watch-0")
    assert watcher.subscribe(("will/v5/0", 0)) == [0]
    client = _connected(raw5, "will-v5-0", will=("will/v5/0", b"gone", 0, False))
    client.send(encode_disconnect(0, Properties()))
    assert client.closed_by_broker()
    assert watcher.nothing_for(0.3)


def test_v5_level_is_per_connection_a_resumed_session_speaks_the_new_level(raw5: Raw, raw: Raw) -> None:
    old = raw()
    assert old.connect("switch", clean=False).body == b"\x00\x00"
    assert old.subscribe(("switch/t", 1)) == [1]
    old.disconnect()
    pub = raw()
    pub.connect("switch-pub")
    pub.publish("switch/t", b"queued", 1)
    pub.expect(PUBACK)
    new = raw5()
    connack = new.connect("switch", clean=False)
    assert (connack.body[0], connack.reason) == (1, 0)
    (got,) = new.publishes(1)
    assert got.payload == b"queued"
    assert got.properties == Properties()


# --- message properties, expiry, the client's limits -------------------------------------------------
def test_v5_3_3_2_17_request_response_properties_reach_the_subscriber_unchanged(raw5: Raw) -> None:
    """[MQTT-3.3.2-15] response topic, [MQTT-3.3.2-16] correlation data, [MQTT-3.3.2-17] user
    properties (in order), [MQTT-3.3.2-4] payload format indicator, [MQTT-3.3.2-20] content type."""
    sub = _connected(raw5, "props-sub")
    assert sub.subscribe(("props/t", 1)) == [1]
    pub = _connected(raw5, "props-pub")
    sent = Properties(payload_format_indicator=1, content_type="application/json", response_topic="reply/me",
                      correlation_data=b"\x00\xffid", user_properties=[("a", "1"), ("b", "2"), ("a", "3")])
    pub.publish("props/t", b"{}", 1, properties=sent)
    (got,) = sub.publishes(1)
    assert got.properties == sent


def test_v5_3_3_2_6_the_remaining_message_expiry_interval_is_forwarded(raw5: Raw) -> None:
    sub = _connected(raw5, "expiry-sub")
    assert sub.subscribe(("expiry/t", 1)) == [1]
    pub = _connected(raw5, "expiry-pub")
    pub.publish("expiry/t", b"x", 1, properties=Properties(message_expiry_interval=100))
    (got,) = sub.publishes(1)
    expiry = got.properties.message_expiry_interval
    assert expiry is not None
    assert 0 < expiry <= 100


def test_v5_3_3_2_5_an_expired_message_is_not_delivered_at_any_level(raw5: Raw, raw: Raw) -> None:
    away, old = raw5(), raw()
    assert away.connect("expiry-away", clean=False, properties=Properties(session_expiry_interval=300)).reason == 0
    assert old.connect("expiry-old", clean=False).body == b"\x00\x00"
    assert away.subscribe(("expiry/away", 1)) == [1]
    assert old.subscribe(("expiry/away", 1)) == [1]
    away.disconnect()
    old.disconnect()
    pub = _connected(raw5, "expiry-away-pub")
    pub.publish("expiry/away", b"stale", 1, properties=Properties(message_expiry_interval=1))
    pub.publish("expiry/away", b"fresh", 1, properties=Properties(message_expiry_interval=3600))
    assert [pub.expect(PUBACK).packet_id for _ in range(2)] == [1, 2]
    time.sleep(2.2)  # the first message's interval passes (a lower bound: not fragile on a slow machine)
    back = raw5()
    assert back.connect("expiry-away", clean=False).body[0] == 1
    (got,) = back.publishes(1)
    assert got.payload == b"fresh"
    assert back.nothing_for(0.3)
    again = raw()  # a 3.1.1 subscriber does not get the expired one either, and gets no properties
    assert again.connect("expiry-old", clean=False).body == b"\x01\x00"
    (got,) = again.publishes(1)
    assert got.body == b"\x00\x0bexpiry/away" + got.body[13:15] + b"fresh"
    assert again.nothing_for(0.3)


def test_v5_3_1_2_25_a_message_over_the_clients_maximum_packet_size_is_not_sent(raw5: Raw) -> None:
    sub = raw5()
    assert sub.connect("small-client", properties=Properties(maximum_packet_size=64)).reason == 0
    assert sub.subscribe(("small/t", 0)) == [0]
    pub = _connected(raw5, "small-pub")
    pub.publish("small/t", b"x" * 100)
    pub.publish("small/t", b"fits")
    (got,) = sub.publishes(1)
    assert got.payload == b"fits"
    assert sub.nothing_for(0.3)


def test_v5_3_3_4_9_no_more_than_the_clients_receive_maximum_in_flight(raw5: Raw) -> None:
    sub = raw5()
    assert sub.connect("recv-max", properties=Properties(receive_maximum=1)).reason == 0
    assert sub.subscribe(("recv/t", 1)) == [1]
    pub = _connected(raw5, "recv-pub")
    for i in range(3):
        pub.publish("recv/t", b"m%d" % i, 1)
    for i in range(3):
        (got,) = sub.publishes(1)
        assert got.payload == b"m%d" % i
        assert sub.nothing_for(0.3)  # the next waits for this one's PUBACK
        sub.ack(PUBACK, got.packet_id)


# --- session expiry ----------------------------------------------------------------------------------
def _queue_while_away(raw5: Raw, client_id: str, expiry: int | None, *, at_disconnect: int | None = None) -> None:
    """Connect ``client_id`` (clean start 0, Session Expiry Interval ``expiry``), subscribe, leave
    (with ``at_disconnect`` as DISCONNECT's interval), then have a QoS 1 message published for it."""
    client = raw5()
    props = Properties(session_expiry_interval=expiry) if expiry is not None else None
    assert client.connect(client_id, clean=False, properties=props).reason == 0
    assert client.subscribe((f"away/{client_id}", 1)) == [1]
    if at_disconnect is None:
        client.disconnect()
    else:
        client.send(encode_disconnect(0, Properties(session_expiry_interval=at_disconnect)))
        assert client.closed_by_broker()
    pub = _connected(raw5, f"{client_id}-pub")
    pub.publish(f"away/{client_id}", b"while away", 1)
    assert pub.expect(PUBACK).reason == 0


def test_v5_3_1_2_11_no_session_expiry_interval_ends_the_session_with_the_connection(raw5: Raw) -> None:
    _queue_while_away(raw5, "sx-zero", None)
    back = raw5()
    assert back.connect("sx-zero", clean=False).body[0] == 0  # session present 0
    assert back.nothing_for(0.3)


def test_v5_3_1_2_11_a_session_expiry_interval_keeps_the_session(raw5: Raw) -> None:
    _queue_while_away(raw5, "sx-kept", 300)
    back = raw5()
    assert back.connect("sx-kept", clean=False, properties=Properties(session_expiry_interval=300)).body[0] == 1
    assert back.publishes(1)[0].payload == b"while away"


def test_v5_3_1_2_11_the_session_expires_after_its_interval(raw5: Raw) -> None:
    _queue_while_away(raw5, "sx-short", 1)
    time.sleep(1.5)  # a lower bound: not fragile on a slow machine
    back = raw5()
    assert back.connect("sx-short", clean=False).body[0] == 0
    assert back.nothing_for(0.3)


def test_v5_3_14_2_1_disconnect_can_change_the_session_expiry_interval(raw5: Raw) -> None:
    _queue_while_away(raw5, "sx-changed", 300, at_disconnect=0)
    back = raw5()
    assert back.connect("sx-changed", clean=False).body[0] == 0  # DISCONNECT ended it


def test_v5_3_14_2_2_a_session_expiry_interval_at_disconnect_after_0_is_a_protocol_error(raw5: Raw) -> None:
    client = _connected(raw5, "sx-bad")
    client.send(encode_disconnect(0, Properties(session_expiry_interval=60)))
    assert client.expect(DISCONNECT).reason == ReasonCode.PROTOCOL_ERROR
    assert client.closed_by_broker()


def test_v5_3_1_2_4_clean_start_discards_the_session_yet_the_new_one_outlives_its_connection(raw5: Raw) -> None:
    _queue_while_away(raw5, "sx-clean", 300)
    fresh = raw5()
    connack = fresh.connect("sx-clean", clean=True, properties=Properties(session_expiry_interval=300))
    assert connack.body[0] == 0
    assert fresh.nothing_for(0.3)
    assert fresh.subscribe(("away/sx-clean2", 1)) == [1]
    fresh.disconnect()
    back = raw5()
    assert back.connect("sx-clean", clean=False).body[0] == 1


# --- shared subscriptions ----------------------------------------------------------------------------
def test_v5_4_8_2_a_shared_subscription_gives_each_message_to_one_member_in_turn(raw5: Raw, raw: Raw) -> None:
    first, second = _connected(raw5, "share-1"), raw()
    assert second.connect("share-2").body == b"\x00\x00"  # MQTT 3.1.1 clients may share too
    assert first.subscribe(("$share/grp/share/+", 1)) == [1]
    assert second.subscribe(("$share/grp/share/+", 0)) == [0]
    pub = _connected(raw5, "share-pub")
    for i in range(4):
        pub.publish("share/t", b"m%d" % i, 1)
    got_first = first.publishes(2)
    got_second = second.publishes(2)
    assert [p.payload for p in got_first] == [b"m0", b"m2"]
    assert [p.payload for p in got_second] == [b"m1", b"m3"]
    assert [p.qos for p in got_second] == [0, 0]  # each member at its own QoS
    assert first.nothing_for(0.2)
    assert second.nothing_for(0.1)


def test_v5_4_8_2_a_leaving_members_unacknowledged_messages_go_to_another_member(raw5: Raw) -> None:
    leaving, staying = _connected(raw5, "share-leave"), _connected(raw5, "share-stay")
    assert leaving.subscribe(("$share/g2/leave/t", 1)) == [1]
    assert staying.subscribe(("$share/g2/leave/t", 1)) == [1]
    pub = _connected(raw5, "share-leave-pub")
    pub.publish("leave/t", b"a", 1)
    pub.publish("leave/t", b"b", 1)
    (held,) = leaving.publishes(1)  # never acknowledged
    (kept,) = staying.publishes(1)
    assert {held.payload, kept.payload} == {b"a", b"b"}
    staying.ack(PUBACK, kept.packet_id)
    leaving.close()  # the connection breaks
    (moved,) = staying.publishes(1)
    assert moved.payload == held.payload


def test_v5_4_8_2_4_a_qos2_message_in_flight_is_completed_when_the_member_resumes(raw5: Raw) -> None:
    keep = Properties(session_expiry_interval=300)
    member = _connected(raw5, "share-q2-a", properties=keep)
    other = _connected(raw5, "share-q2-b")
    assert member.subscribe(("$share/gq2/q2/t", 2)) == [2]
    assert other.subscribe(("$share/gq2/q2/t", 2)) == [2]
    pub = _connected(raw5, "share-q2-pub")
    pub.publish("q2/t", b"first", 2)
    (sent,) = member.publishes(1)  # its turn; never acknowledged
    member.close()
    assert other.nothing_for(0.3)  # never given to another member [MQTT-4.8.2-4]
    back = raw5()
    assert back.connect("share-q2-a", clean=False, properties=keep).body[0] == 1
    (again,) = back.publishes(1)
    assert (again.payload, again.packet_id, again.dup) == (b"first", sent.packet_id, True)
    back.ack(PUBREC, again.packet_id)
    assert back.expect(PUBREL).packet_id == again.packet_id
    back.ack(PUBCOMP, again.packet_id)
    assert back.nothing_for(0.2)  # once
    assert other.nothing_for(0.1)


def test_v5_4_8_2_5_a_qos2_message_in_flight_to_a_session_that_ended_goes_to_no_other_member(raw5: Raw) -> None:
    member = _connected(raw5, "share-q2end-a")  # session expiry 0: the session ends with the connection
    other = _connected(raw5, "share-q2end-b")
    assert member.subscribe(("$share/gq2e/q2e/t", 2)) == [2]
    assert other.subscribe(("$share/gq2e/q2e/t", 2)) == [2]
    pub = _connected(raw5, "share-q2end-pub")
    pub.publish("q2e/t", b"first", 2)
    member.publishes(1)
    member.close()
    assert other.nothing_for(0.3)
    pub.publish("q2e/t", b"second", 2)  # the group goes on with the member that is left
    (got,) = other.publishes(1)
    assert got.payload == b"second"


def test_v5_4_8_2_a_resumed_member_gets_its_qos1_message_again_and_no_other_member_gets_it(raw5: Raw) -> None:
    keep = Properties(session_expiry_interval=300, receive_maximum=1)
    member = _connected(raw5, "share-q1-a", properties=keep)
    other = _connected(raw5, "share-q1-b")
    assert member.subscribe(("$share/gq1/q1/t", 1)) == [1]
    assert other.subscribe(("$share/gq1/q1/t", 1)) == [1]
    pub = _connected(raw5, "share-q1-pub")
    for i in range(4):
        pub.publish("q1/t", b"m%d" % i, 1)
    (held,) = member.publishes(1)  # m0; m2 waits behind it (receive maximum 1)
    got = other.publishes(2)  # not acknowledged: their packet ids stay in use
    assert [held.payload, *(p.payload for p in got)] == [b"m0", b"m1", b"m3"]
    member.close()  # m2, never sent to it, goes to the other member at once
    (moved,) = other.publishes(1)
    assert moved.payload == b"m2"
    assert moved.packet_id not in {p.packet_id for p in got}  # with that member's own packet id
    back = raw5()
    assert back.connect("share-q1-a", clean=False, properties=keep).body[0] == 1
    (again,) = back.publishes(1)  # only the one it had been sent, with its packet id [MQTT-4.4.0-1]
    assert (again.payload, again.packet_id, again.dup) == (b"m0", held.packet_id, True)
    back.ack(PUBACK, again.packet_id)
    assert back.nothing_for(0.3)
    assert other.nothing_for(0.1)


def test_v5_4_8_2_a_members_qos1_message_in_flight_goes_to_another_member_when_its_session_ends(raw5: Raw) -> None:
    member = _connected(raw5, "share-end-a", properties=Properties(session_expiry_interval=300))
    other = _connected(raw5, "share-end-b")
    assert member.subscribe(("$share/gend/end/t", 1)) == [1]
    assert other.subscribe(("$share/gend/end/t", 1)) == [1]
    pub = _connected(raw5, "share-end-pub")
    pub.publish("end/t", b"m0", 1)
    pub.publish("end/t", b"m1", 1)
    (held,) = member.publishes(1)
    (kept,) = other.publishes(1)  # not acknowledged: its packet id stays in use
    member.close()
    assert other.nothing_for(0.3)  # waiting for the member to resume
    fresh = raw5()
    assert fresh.connect("share-end-a", clean=True).body[0] == 0  # clean start: the old session ends
    (moved,) = other.publishes(1)
    assert moved.payload == held.payload
    assert moved.packet_id != kept.packet_id  # the receiving member's own packet id
    assert fresh.nothing_for(0.2)


def test_v5_4_8_2_no_retained_messages_for_a_shared_subscription(raw5: Raw) -> None:
    pub = _connected(raw5, "share-ret-pub")
    pub.publish("share/ret", b"retained", retain=True)
    member = _connected(raw5, "share-ret")
    assert member.subscribe(("$share/g3/share/ret", 0)) == [0]
    assert member.nothing_for(0.3)
    unsubscribed = member.unsubscribe("$share/g3/share/ret", "$share/g3/other")
    assert unsubscribed.codes == [ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED]
    pub.publish("share/ret", b"after")
    assert member.nothing_for(0.3)


def test_v5_3_1_3_2_the_wills_properties_go_with_it(raw5: Raw) -> None:
    watcher = _connected(raw5, "will-props-watch")
    assert watcher.subscribe(("will/props", 0)) == [0]
    client = raw5()
    will = Will("will/props", b"gone", 0, False,
                Properties(content_type="text/plain", user_properties=[("why", "lost")], message_expiry_interval=60))
    client.send(encode_connect("will-props", will=will, protocol_level=5))
    assert client.expect(CONNACK).reason == 0
    client.close()  # no DISCONNECT: the will goes
    (got,) = watcher.publishes(1)
    assert got.payload == b"gone"
    props = got.properties
    assert (props.content_type, props.user_properties) == ("text/plain", [("why", "lost")])
    assert props.message_expiry_interval is not None
    assert 0 < props.message_expiry_interval <= 60


# --- will delay interval -----------------------------------------------------------------------------
def _with_delayed_will(raw5: Raw, client_id: str, topic: str, delay: int, expiry: int, *,
                       clean: bool = True) -> RawClient:
    client = raw5()
    will = Will(topic, b"gone", 0, False, Properties(will_delay_interval=delay, user_properties=[("k", "v")]))
    client.send(encode_connect(client_id, clean_session=clean, will=will, protocol_level=5,
                               properties=Properties(session_expiry_interval=expiry)))
    assert client.expect(CONNACK).reason == 0
    return client


def test_v5_3_1_3_9_a_session_resumed_within_the_will_delay_sends_no_will(raw5: Raw) -> None:
    watcher = _connected(raw5, "wd-resume-watch")
    assert watcher.subscribe(("wd/resume", 0)) == [0]
    _with_delayed_will(raw5, "wd-resume", "wd/resume", 1, 300).close()  # the connection breaks
    back = raw5()
    assert back.connect("wd-resume", clean=False, properties=Properties(session_expiry_interval=300)).body[0] == 1
    assert watcher.nothing_for(1.6)  # past the delay: no will [MQTT-3.1.3-9]


def test_v5_3_1_3_2_the_will_is_published_once_its_delay_passed_with_its_properties(raw5: Raw) -> None:
    watcher = _connected(raw5, "wd-late-watch")
    assert watcher.subscribe(("wd/late", 0)) == [0]
    _with_delayed_will(raw5, "wd-late", "wd/late", 1, 300).close()
    assert watcher.nothing_for(0.5)  # the delay (1 s) has not passed
    (will,) = watcher.publishes(1)
    assert will.payload == b"gone"
    assert will.properties.user_properties == [("k", "v")]
    assert will.properties.will_delay_interval is None  # a will property, not a PUBLISH's
    assert watcher.nothing_for(0.2)  # once


def test_v5_3_1_3_2_a_session_ending_before_the_will_delay_publishes_the_will_then(raw5: Raw) -> None:
    watcher = _connected(raw5, "wd-end-watch")
    assert watcher.subscribe(("wd/end/+", 0)) == [0]
    _with_delayed_will(raw5, "wd-end-0", "wd/end/0", 600, 0).close()  # session expiry 0: it ends now
    (first,) = watcher.publishes(1)
    assert first.topic == "wd/end/0"
    _with_delayed_will(raw5, "wd-end-new", "wd/end/new", 600, 300).close()
    fresh = raw5()
    assert fresh.connect("wd-end-new", clean=True).body[0] == 0  # clean start ends the old session
    (second,) = watcher.publishes(1)
    assert second.topic == "wd/end/new"
    _with_delayed_will(raw5, "wd-end-exp", "wd/end/exp", 600, 1).close()  # the session expires in 1 s
    (third,) = watcher.publishes(1)
    assert third.topic == "wd/end/exp"
    assert watcher.nothing_for(0.2)


# --- receive maximum (client → node), malformed packets ------------------------------------------------
def test_v5_3_3_4_7_more_qos2_publishes_than_the_receive_maximum_get_disconnect_0x93(raw5: Raw) -> None:
    client = raw5()
    connack = client.connect("rm-over")
    limit = connack.properties.receive_maximum
    assert limit == 1024  # the setting's default
    client.send(b"".join(encode_publish(encode_topic("rm/t"), b"x", 2, i + 1, properties=b"\x00")
                         for i in range(limit + 1)))  # none released (no PUBREL)
    acks = [client.read() for _ in range(limit)]
    assert [(p.kind, p.packet_id) for p in acks if p is not None] == [(PUBREC, i + 1) for i in range(limit)]
    assert client.expect(DISCONNECT).reason == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert client.closed_by_broker()


def test_v5_3_3_4_7_released_qos2_publishes_free_their_place(raw5: Raw) -> None:
    client = _connected(raw5, "rm-released")
    for i in range(1030):  # more than the receive maximum in all, never more than one unreleased
        client.publish("rm/free", b"x", 2, packet_id=i % 65535 + 1)
        assert client.expect(PUBREC).packet_id == i % 65535 + 1
        client.ack(PUBREL, i % 65535 + 1)
        assert client.expect(PUBCOMP).packet_id == i % 65535 + 1


def test_v5_4_13_1_a_malformed_packet_gets_disconnect_0x81_before_the_close(raw5: Raw, raw: Raw) -> None:
    client = _connected(raw5, "malformed-v5")
    client.send(encode_packet(PUBLISH << 4, b"\x00\x03m/t\x05"))  # a property block longer than the packet
    assert client.expect(DISCONNECT).reason == ReasonCode.MALFORMED_PACKET
    assert client.closed_by_broker()
    old = raw()
    assert old.connect("malformed-311").body == b"\x00\x00"
    old.send(encode_packet(PUBLISH << 4, b"\x00\x03m/t\x05"[:2]))  # a topic longer than the packet
    assert old.read() is None  # MQTT 3.1.1: closed with nothing said
    assert old.closed_by_broker()


# --- topic aliases (node → client) ---------------------------------------------------------------------
def _topics_and_aliases(got: list[Received]) -> list[tuple[str, int | None]]:
    return [(p.topic, p.properties.topic_alias) for p in got]


def test_v5_3_1_2_26_topic_aliases_to_a_client_up_to_its_topic_alias_maximum(raw5: Raw, raw: Raw) -> None:
    asks = Properties(topic_alias_maximum=2, session_expiry_interval=300)
    sub = _connected(raw5, "alias-out", properties=asks)
    assert sub.subscribe(("ta/#", 0)) == [0]
    pub = raw()
    pub.connect("alias-out-pub")
    for topic in ("ta/1", "ta/1", "ta/2", "ta/3", "ta/1", "ta/3"):
        pub.publish(topic, topic.encode())
    got = sub.publishes(6)
    assert _topics_and_aliases(got) == [("ta/1", 1), ("", 1), ("ta/2", 2), ("ta/3", None), ("", 1), ("ta/3", None)]
    assert [p.payload for p in got] == [b"ta/1", b"ta/1", b"ta/2", b"ta/3", b"ta/1", b"ta/3"]
    sub.close()
    back = raw5()
    assert back.connect("alias-out", clean=False, properties=asks).body[0] == 1
    pub.publish("ta/1", b"again", 1)
    (again,) = back.publishes(1)
    assert _topics_and_aliases([again]) == [("ta/1", 1)]  # no alias carried over from a connection [MQTT-3.3.2-7]


def test_v5_3_1_2_26_an_alias_is_set_only_by_a_publish_that_was_sent(raw5: Raw, raw: Raw) -> None:
    sub = _connected(raw5, "alias-held", properties=Properties(topic_alias_maximum=5, receive_maximum=1))
    assert sub.subscribe(("tb/#", 1)) == [1]
    pub = raw()
    pub.connect("alias-held-pub")
    for topic in ("tb/a", "tb/b", "tb/b"):
        pub.publish(topic, b"x", 1)
    (first,) = sub.publishes(1)  # the others wait for room in flight
    sub.ack(PUBACK, first.packet_id)
    (second,) = sub.publishes(1)
    sub.ack(PUBACK, second.packet_id)
    (third,) = sub.publishes(1)
    assert _topics_and_aliases([first, second, third]) == [("tb/a", 1), ("tb/b", 2), ("", 2)]
