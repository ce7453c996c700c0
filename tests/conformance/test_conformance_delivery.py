"""Delivery: QoS downgrade, overlapping subscriptions, per-subscriber packet ids, topic rules
(MQTT 3.1.1 §3.3, §3.8.4, §4.7)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.raw import PUBACK, PUBCOMP, PUBREC, PUBREL, RawClient

Raw = Callable[[], RawClient]


def test_qos_3_8_4_6_delivered_qos_is_the_lower_of_publish_and_subscription(raw: Raw) -> None:
    subs = {}
    for granted in (0, 1, 2):
        client = raw()
        client.connect(f"qos-sub-{granted}")
        assert client.subscribe(("qos/t", granted)) == [granted]
        subs[granted] = client
    pub = raw()
    pub.connect("qos-pub")
    for qos in (0, 1, 2):
        pub.publish("qos/t", b"p%d" % qos, qos)
    for granted, client in subs.items():
        got = client.publishes(3)
        assert [p.qos for p in got] == [min(q, granted) for q in (0, 1, 2)], granted
        for p in got:
            if p.qos == 1:
                client.ack(PUBACK, p.packet_id)
            elif p.qos == 2:
                client.ack(PUBREC, p.packet_id)
                client.expect(5 + 1)  # PUBREL
                client.ack(PUBCOMP, p.packet_id)


def test_qos_3_3_5_1_overlapping_subscriptions_deliver_one_copy_at_the_highest_qos(raw: Raw) -> None:
    sub = raw()
    sub.connect("overlap-1")
    assert sub.subscribe(("overlap/#", 0), ("overlap/+", 1), ("overlap/a", 0)) == [0, 1, 0]
    pub = raw()
    pub.connect("overlap-pub")
    pub.publish("overlap/a", b"x", 2)
    got = sub.publishes(1)
    assert [(p.payload, p.qos) for p in got] == [(b"x", 1)]
    assert sub.nothing_for(0.3)


def test_qos_2_3_1_packet_ids_are_per_subscriber(raw: Raw) -> None:
    a, b = raw(), raw()
    a.connect("ids-a")
    b.connect("ids-b")
    a.subscribe(("ids/one", 1))
    b.subscribe(("ids/one", 1), ("ids/two", 1))
    pub = raw()
    pub.connect("ids-pub")
    pub.publish("ids/two", b"only b", 1, packet_id=500)
    pub.publish("ids/one", b"both", 1, packet_id=501)
    got_a = a.publishes(1)
    got_b = b.publishes(2)
    assert [(p.payload, p.packet_id) for p in got_a] == [(b"both", 1)]
    assert [(p.payload, p.packet_id) for p in got_b] == [(b"only b", 1), (b"both", 2)]


def test_topics_4_7_2_1_dollar_topics_are_not_matched_by_a_leading_wildcard(raw: Raw) -> None:
    hash_sub, plus_sub, dollar_sub = raw(), raw(), raw()
    hash_sub.connect("dollar-hash")
    plus_sub.connect("dollar-plus")
    dollar_sub.connect("dollar-exact")
    hash_sub.subscribe(("#", 0))
    plus_sub.subscribe(("+/status", 0))
    dollar_sub.subscribe(("$app/#", 0))
    pub = raw()
    pub.connect("dollar-pub")
    pub.publish("$app/status", b"internal")
    assert dollar_sub.publishes(1)[0].topic == "$app/status"
    assert hash_sub.nothing_for(0.3)
    assert plus_sub.nothing_for(0.1)


def test_topics_4_7_1_malformed_filters_get_failure_return_codes(raw: Raw) -> None:
    sub = raw()
    sub.connect("bad-filters")
    assert sub.subscribe(("a/#/b", 1), ("a+", 1), ("ok/+", 1)) == [0x80, 0x80, 1]


def test_topics_3_3_2_2_a_publish_to_a_wildcard_topic_closes_the_connection(raw: Raw) -> None:
    client = raw()
    client.connect("wild-pub")
    client.publish("a/+", b"x")
    assert client.closed_by_broker()


def test_protocol_4_8_0_1_malformed_packets_close_the_connection_not_the_node(raw: Raw) -> None:
    for junk in (b"\x30\xff\xff\xff\xff\x01", b"\x36\x05\x00\x01t\x00\x01", b"\x62\x02\x00\x01"[:1] + b"\x00",
                 b"\x10\x00"):
        client = raw()
        client.connect("junk")
        client.send(junk)
        assert client.closed_by_broker(), junk
    healthy = raw()
    healthy.connect("after-junk")
    healthy.subscribe(("junk/ok", 0))
    healthy.publish("junk/ok", b"fine")
    assert healthy.publishes(1)[0].payload == b"fine"


def test_qos_4_3_3_2_a_resent_qos2_publish_is_delivered_once(raw: Raw) -> None:
    sub = raw()
    sub.connect("qos2-once-sub")
    sub.subscribe(("qos2/once", 0))
    pub = raw()
    pub.connect("qos2-once-pub")
    pub.publish("qos2/once", b"exactly once", 2, packet_id=9)
    assert pub.expect(PUBREC).packet_id == 9
    pub.send(b"\x3c" + bytes([2 + 9 + 2 + 12]) + b"\x00\x09qos2/once\x00\x09exactly once")  # DUP resend
    assert pub.expect(PUBREC).packet_id == 9
    pub.ack(PUBREL, 9)
    assert pub.expect(PUBCOMP).packet_id == 9
    assert [p.payload for p in sub.publishes(1)] == [b"exactly once"]
    assert sub.nothing_for(0.3)


def test_unsubscribe_3_10_4_4_unsuback_always_and_no_more_messages(raw: Raw) -> None:
    sub = raw()
    sub.connect("unsub-1")
    sub.subscribe(("unsub/a", 0))
    sub.unsubscribe("unsub/a", "never/subscribed")  # [MQTT-3.10.4-5]: UNSUBACK even with no match
    pub = raw()
    pub.connect("unsub-pub")
    pub.publish("unsub/a", b"x", 1)
    pub.expect(PUBACK)
    assert sub.nothing_for(0.3)
