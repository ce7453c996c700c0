"""Retained messages (MQTT 3.1.1 §3.3.1.3)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.raw import PUBACK, RawClient

Raw = Callable[[], RawClient]


def retain(pub: RawClient, topic: str, payload: bytes) -> None:
    """A retained QoS 1 PUBLISH, acknowledged."""
    pub.publish(topic, payload, 1, retain=True)
    pub.expect(PUBACK)


def test_retain_3_3_1_6_a_new_subscription_gets_only_the_retained_messages_its_filter_matches(raw: Raw) -> None:
    pub = raw()
    pub.connect("ret-pub-1")
    retain(pub, "ret1/a/x", b"ax")
    retain(pub, "ret1/b/x", b"bx")
    sub = raw()
    sub.connect("ret-sub-1")
    sub.subscribe(("ret1/a/#", 1))
    got = sub.publishes(1)
    assert [(p.topic, p.payload, p.retain) for p in got] == [("ret1/a/x", b"ax", True)]
    assert sub.nothing_for(0.3)


def test_retain_3_3_1_9_live_messages_are_forwarded_with_retain_clear(raw: Raw) -> None:
    sub = raw()
    sub.connect("ret-sub-2")
    sub.subscribe(("ret2/t", 0))
    pub = raw()
    pub.connect("ret-pub-2")
    pub.publish("ret2/t", b"live", 0, retain=True)
    assert not sub.publishes(1)[0].retain


def test_retain_reconnecting_persistent_session_gets_no_retained_replay(raw: Raw) -> None:
    sub = raw()
    sub.connect("ret-sub-3", clean=False)
    sub.subscribe(("ret3/t", 0))
    other = raw()
    other.connect("ret-pub-3")
    other.publish("ret3/unrelated", b"not yours", 0, retain=True)
    other.publish("ret3/t", b"seen live", 0, retain=True)
    assert sub.publishes(1)[0].payload == b"seen live"
    sub.disconnect()
    back = raw()
    assert back.connect("ret-sub-3", clean=False).body[0] == 1
    assert back.nothing_for(0.5)  # a reconnect is not a new subscription (stock amqtt replayed all)


def test_retain_3_3_1_10_an_empty_retained_publish_clears_the_topic(raw: Raw) -> None:
    pub = raw()
    pub.connect("ret-pub-4")
    retain(pub, "ret4/t", b"old")
    retain(pub, "ret4/t", b"")
    sub = raw()
    sub.connect("ret-sub-4")
    sub.subscribe(("ret4/#", 0))
    assert sub.nothing_for(0.5)


def test_retain_3_3_1_8_resubscribing_replays_the_retained_message_again(raw: Raw) -> None:
    pub = raw()
    pub.connect("ret-pub-5")
    retain(pub, "ret5/t", b"kept")
    sub = raw()
    sub.connect("ret-sub-5")
    sub.subscribe(("ret5/t", 1))
    first = sub.publishes(1)[0]
    sub.ack(PUBACK, first.packet_id)
    sub.subscribe(("ret5/t", 1))  # [MQTT-3.8.4-3]: replaces the subscription, resends retained
    assert sub.publishes(1)[0].payload == b"kept"
