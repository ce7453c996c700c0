"""The broker's routing and retained messages (``chatmq.broker.router``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import assume, given
from hypothesis import strategies as st

from chatmq.broker.outbox import DeliveryLimits
from chatmq.broker.router import Router, SubscriptionExtras, filter_matches
from chatmq.broker.topic_index import InvalidFilterError, TopicIndex
from chatmq.broker.wire import PUBLISH, PacketSplitter, Publish, SubscriptionOptions, decode_publish


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def buffered(self) -> int:
        return 0

    def when_drained(self, callback: Callable[[], None]) -> None:
        callback()

    def publishes(self) -> list[Publish]:
        return [decode_publish(p.flags, p.body) for p in PacketSplitter().feed(self.data) if p.kind == PUBLISH]


def connect(router: Router, client_id: str) -> Sink:
    sink = Sink()
    router.outbox(client_id).attach(sink, lambda: None)
    return sink


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_delivered_qos_is_the_lower_of_publish_and_subscription() -> None:
    router = Router()
    low, high = connect(router, "low"), connect(router, "high")
    router.subscribe("low", "t", 0)
    router.subscribe("high", "t", 2)
    router.publish("t", b"x", 1)
    await turn()
    assert [p.qos for p in low.publishes()] == [0]
    assert [p.qos for p in high.publishes()] == [1]


async def test_overlapping_subscriptions_get_one_copy_at_the_highest_qos() -> None:
    router = Router()
    sink = connect(router, "c")
    router.subscribe("c", "a/#", 0)
    router.subscribe("c", "a/+", 1)
    router.subscribe("c", "a/b", 0)
    router.publish("a/b", b"x", 2)
    await turn()
    assert [(p.payload, p.qos) for p in sink.publishes()] == [(b"x", 1)]


async def test_the_receive_check_is_asked_per_subscriber() -> None:
    router = Router(may_receive=lambda client, topic: client == "allowed")
    allowed, denied = connect(router, "allowed"), connect(router, "denied")
    for client in ("allowed", "denied"):
        router.subscribe(client, "#", 1)
    router.publish("t", b"x", 1)
    await turn()
    assert len(allowed.publishes()) == 1
    assert denied.publishes() == []


async def test_retained_messages_replay_only_for_the_new_filter_with_retain_set() -> None:
    router = Router()
    router.publish("a/1", b"one", 1, retain=True)
    router.publish("b/1", b"other", 1, retain=True)
    sink = connect(router, "c")
    router.subscribe("c", "a/+", 1)
    await turn()
    assert [(p.topic, p.retain) for p in sink.publishes()] == [("a/1", True)]
    router.publish("a/1", b"live", 1, retain=True)
    await turn()
    assert [(p.payload, p.retain) for p in sink.publishes()][1:] == [(b"live", False)]  # [MQTT-3.3.1-9]


async def test_an_empty_retained_publish_clears_the_topic() -> None:
    router = Router()
    router.publish("t", b"kept", 0, retain=True)
    router.publish("t", b"", 0, retain=True)
    sink = connect(router, "c")
    router.subscribe("c", "t", 0)
    await turn()
    assert sink.publishes() == []


async def test_retained_replay_respects_the_receive_check() -> None:
    router = Router(may_receive=lambda client, topic: topic != "secret")
    router.publish("secret", b"s", 0, retain=True)
    router.publish("open", b"o", 0, retain=True)
    sink = connect(router, "c")
    router.subscribe("c", "#", 0)
    await turn()
    assert [p.topic for p in sink.publishes()] == ["open"]


async def test_invalid_filters_are_refused_with_0x80() -> None:
    router = Router()
    assert router.subscribe("c", "a/#/b", 1) == 0x80
    assert router.subscribe("c", "a+", 1) == 0x80
    assert router.subscribe("c", "a/+", 2) == 2


async def test_forget_drops_subscriptions_and_what_was_owed() -> None:
    router = Router()
    connect(router, "c")
    router.subscribe("c", "t", 1)
    router.forget("c")
    assert router.publish("t", b"x", 1) == 0
    assert "c" not in router.outboxes


LEVEL = st.sampled_from(["a", "b", "", "$x", "+", "#"])


@given(st.lists(LEVEL, min_size=1, max_size=4), st.lists(st.sampled_from(["a", "b", "", "$x"]), min_size=1, max_size=4))
def test_filter_matches_agrees_with_the_index(filter_levels: list[str], topic_levels: list[str]) -> None:
    topic_filter = "/".join(filter_levels)
    topic = "/".join(topic_levels)
    assume(topic != "")
    index: TopicIndex[str] = TopicIndex()
    try:
        index.subscribe("s", topic_filter, 0)
    except InvalidFilterError:
        assume(False)
    assert filter_matches(topic_filter, topic) == ("s" in index.match(topic))


async def test_direct_delivery_is_downgraded_to_the_subscription_qos() -> None:
    router = Router()
    sink = connect(router, "c")
    router.subscribe("c", "users/u/inbox", 0)
    assert router.deliver("c", "users/u/inbox", b"x", 1)
    assert not router.deliver("nobody", "users/u/inbox", b"x", 1)
    await turn()
    assert [p.qos for p in sink.publishes()] == [0]


async def test_publish_names_the_outbox_it_left_half_full() -> None:
    router = Router(DeliveryLimits(queue_size=4))
    connect(router, "slow")
    router.subscribe("slow", "t", 0)
    router.publish("t", b"1", 0)
    assert router.pressed is None
    router.publish("t", b"2", 0)  # no turn of the loop yet: both still queued
    assert router.pressed is router.outboxes["slow"]


# --- MQTT 5 subscription options and identifiers, against a brute-force model -----------------------
_LEVELS = ["a", "b", "+"]


@st.composite
def _v5_subscriptions(draw: st.DrawFn) -> list[tuple[str, str, SubscriptionExtras | None]]:
    subs = []
    for _ in range(draw(st.integers(1, 8))):
        client = draw(st.sampled_from(["c1", "c2", "c3"]))
        levels = draw(st.lists(st.sampled_from(_LEVELS), min_size=1, max_size=2))
        topic_filter = "/".join(levels) + draw(st.sampled_from(["", "/#"]))
        extras = None
        if draw(st.booleans()):
            options = SubscriptionOptions(0, no_local=draw(st.booleans()), retain_as_published=draw(st.booleans()))
            extras = SubscriptionExtras(options, draw(st.one_of(st.none(), st.integers(1, 300))))
        subs.append((client, topic_filter, extras))
    return subs


@given(_v5_subscriptions(), st.sampled_from(["a", "a/b", "b/a", "a/a/b"]), st.sampled_from(["c1", "c2", None]),
       st.booleans())
def test_options_and_identifiers_match_a_brute_force_model(
        subs: list[tuple[str, str, SubscriptionExtras | None]], topic: str, publisher: str | None,
        retain: bool) -> None:
    async def run() -> None:
        router = Router()
        sinks = {c: Sink() for c in ("c1", "c2", "c3")}
        for client, sink in sinks.items():
            router.outbox(client).attach(sink, lambda: None, protocol_level=5)
        latest: dict[tuple[str, str], SubscriptionExtras | None] = {}
        for client, topic_filter, extras in subs:
            router.subscribe(client, topic_filter, 0, replay=False, extras=extras)
            latest[(client, topic_filter)] = extras  # a new subscription to a filter replaces the old
        router.publish(topic, b"x", 0, retain, publisher=publisher)
        await turn()
        for client, sink in sinks.items():
            matching = [extras for (c, f), extras in latest.items() if c == client and filter_matches(f, topic)]
            delivering = [e for e in matching if not (client == publisher and e is not None and e.options.no_local)]
            got = [decode_publish(p.flags, p.body, 5) for p in PacketSplitter().feed(sink.data) if p.kind == PUBLISH]
            if not delivering:
                assert got == [], (client, matching)
                continue
            (message,) = got
            assert message.retain == (retain and any(e is not None and e.options.retain_as_published
                                                      for e in delivering))
            identifiers = message.properties.subscription_identifier if message.properties is not None else []
            assert sorted(identifiers) == sorted(
                e.identifier for e in delivering if e is not None and e.identifier is not None)
    asyncio.run(run())


async def test_shared_subscription_round_robin_and_a_leaving_members_messages() -> None:
    router = Router()
    sinks = {c: connect(router, c) for c in ("m1", "m2", "m3")}
    for client in sinks:
        assert router.subscribe(client, "$share/g/s/#", 1) == 1
    for i in range(6):
        router.publish("s/x", b"%d" % i, 1)
    await turn()
    assert {c: [p.payload for p in s.publishes()] for c, s in sinks.items()} == {
        "m1": [b"0", b"3"], "m2": [b"1", b"4"], "m3": [b"2", b"5"]}
    router.outbox("m1").detach()
    assert router.member_left("m1") == 0  # in flight: they wait for m1 to resume (§4.8.2)
    assert router.member_left("m1", ending=True) == 2  # its session ended: both unacknowledged go on
    await turn()
    moved = [p.payload for c in ("m2", "m3") for p in sinks[c].publishes()]
    assert sorted(moved) == [b"0", b"1", b"2", b"3", b"4", b"5"]
    router.forget("m2")
    router.forget("m3")
    router.forget("m1")
    assert router.shared == {}
    assert len(router.index) == 0
    assert router.subscribe("m1", "$share//s", 0) == 0x80


async def test_shared_subscription_queued_messages_go_on_at_once_and_qos2_in_flight_never() -> None:
    router = Router(DeliveryLimits(max_inflight=1))
    sinks = {c: connect(router, c) for c in ("m1", "m2")}
    for client in sinks:
        assert router.subscribe(client, "$share/g/q/#", 2) == 2
    for i in range(4):
        router.publish("q/x", b"%d" % i, 2)
    await turn()
    assert [p.payload for p in sinks["m1"].publishes()] == [b"0"]  # b"2" waits for room in flight
    router.outbox("m1").detach()
    assert router.member_left("m1") == 1  # the queued one goes on at once
    assert router.member_left("m1", ending=True) == 0  # QoS 2 in flight is never given to another [MQTT-4.8.2-5]
    router.forget("m1")
    assert router.outbox("m2").queued == 2  # b"3" and b"2", behind b"1" in flight
    assert router.subscribe("m1", "$share/g/s/#/x", 0) == 0x80
