"""Sessions: persistence (clean session 0), redelivery, takeover, client identifiers (MQTT 3.1.1 §3.1, §4.4)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.raw import PUBACK, PUBCOMP, PUBREC, PUBREL, RawClient

Raw = Callable[[], RawClient]


def test_sessions_3_1_2_4_persistent_session_queues_qos1_and_qos2_while_away_for_anonymous_clients(raw: Raw) -> None:
    sub = raw()
    assert sub.connect("persist-1", clean=False).body == b"\x00\x00"
    assert sub.subscribe(("persist/1", 2)) == [2]
    sub.disconnect()
    pub = raw()
    pub.connect("persist-1-pub")
    pub.publish("persist/1", b"q0", 0)
    pub.publish("persist/1", b"q1", 1)
    pub.expect(PUBACK)
    pub.publish("persist/1", b"q2", 2)
    pub.expect(PUBREC)
    back = raw()
    assert back.connect("persist-1", clean=False).body == b"\x01\x00"  # [MQTT-3.2.2-2] session present
    got = back.publishes(2)
    assert [(p.payload, p.qos) for p in got] == [(b"q1", 1), (b"q2", 2)]  # QoS 0 is not stored [MQTT-3.1.2-5]
    assert back.nothing_for(0.5)


def test_sessions_4_4_0_1_unacknowledged_qos1_is_resent_with_dup_on_reconnect(raw: Raw) -> None:
    sub = raw()
    sub.connect("redeliver-1", clean=False)
    sub.subscribe(("redeliver/1", 1))
    pub = raw()
    pub.connect("redeliver-1-pub")
    pub.publish("redeliver/1", b"once", 1)
    first = sub.publishes(1)[0]
    assert not first.dup
    sub.close()  # no PUBACK
    back = raw()
    back.connect("redeliver-1", clean=False)
    again = back.publishes(1)[0]
    assert (again.payload, again.dup, again.packet_id) == (b"once", True, first.packet_id)  # [MQTT-3.3.1-1]
    back.ack(PUBACK, again.packet_id)
    back.disconnect()
    last = raw()
    last.connect("redeliver-1", clean=False)
    assert last.nothing_for(0.5)  # acknowledged: not sent again


def test_sessions_4_4_0_1_qos2_in_flight_is_resent_with_dup_then_pubrel(raw: Raw) -> None:
    sub = raw()
    sub.connect("redeliver-2", clean=False)
    sub.subscribe(("redeliver/2", 2))
    pub = raw()
    pub.connect("redeliver-2-pub")
    pub.publish("redeliver/2", b"exactly", 2)
    first = sub.publishes(1)[0]
    sub.close()
    back = raw()
    back.connect("redeliver-2", clean=False)
    again = back.publishes(1)[0]
    assert (again.payload, again.dup, again.qos) == (b"exactly", True, 2)
    back.ack(PUBREC, again.packet_id)
    assert back.expect(PUBREL).packet_id == first.packet_id
    back.close()  # PUBREL not answered
    last = raw()
    last.connect("redeliver-2", clean=False)
    assert last.expect(PUBREL).packet_id == first.packet_id  # resent, the PUBLISH is not
    last.ack(PUBCOMP, first.packet_id)
    assert last.nothing_for(0.3)


def test_sessions_3_1_2_6_clean_session_discards_the_previous_session(raw: Raw) -> None:
    sub = raw()
    sub.connect("clean-1", clean=False)
    sub.subscribe(("clean/1", 1))
    sub.disconnect()
    clean = raw()
    assert clean.connect("clean-1", clean=True).body == b"\x00\x00"  # [MQTT-3.2.2-1]
    pub = raw()
    pub.connect("clean-1-pub")
    pub.publish("clean/1", b"x", 1)
    pub.expect(PUBACK)
    assert clean.nothing_for(0.5)  # the old subscription went with the old session


def test_sessions_3_1_4_2_a_second_connect_with_the_same_client_id_takes_over(raw: Raw) -> None:
    old = raw()
    old.connect("twin")
    new = raw()
    assert new.connect("twin").body[1] == 0
    assert old.closed_by_broker()
    new.subscribe(("twin/t", 0))
    new.publish("twin/t", b"still here")
    assert new.publishes(1)[0].payload == b"still here"


def test_sessions_3_1_4_2_takeover_of_a_persistent_session_keeps_its_subscriptions(raw: Raw) -> None:
    old = raw()
    old.connect("twin-persist", clean=False)
    old.subscribe(("twin/p", 1))
    new = raw()
    assert new.connect("twin-persist", clean=False).body == b"\x01\x00"
    assert old.closed_by_broker()
    pub = raw()
    pub.connect("twin-persist-pub")
    pub.publish("twin/p", b"to the new one", 1)
    assert new.publishes(1)[0].payload == b"to the new one"


def test_sessions_3_1_3_6_zero_length_client_id_with_clean_session_is_accepted(raw: Raw) -> None:
    first, second = raw(), raw()
    assert first.connect("").body == b"\x00\x00"
    assert second.connect("").body == b"\x00\x00"
    first.subscribe(("anon/t", 0))
    second.publish("anon/t", b"hi")
    assert first.publishes(1)[0].payload == b"hi"
    assert first.is_open()  # two empty ids are two clients: no takeover


def test_sessions_3_1_3_8_zero_length_client_id_without_clean_session_is_rejected(raw: Raw) -> None:
    client = raw()
    connack = client.connect("", clean=False)
    assert connack.body[1] == 0x02  # identifier rejected [MQTT-3.2.2-4]: session present 0
    assert connack.body[0] == 0
    assert client.closed_by_broker()
