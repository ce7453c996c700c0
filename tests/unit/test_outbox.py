"""Per-session delivery (``chatmq.broker.outbox``): batching, packet ids, in-flight window, drop policy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatmq.broker.outbox import DeliveryLimits, DeliveryStats, Outbox
from chatmq.broker.wire import PUBLISH, PUBREL, PacketSplitter, Publish, decode_publish, encode_topic

TOPIC = encode_topic("t")


class FakeTransport:
    """Records each write; ``backlog`` is what it claims to still hold."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.backlog = 0
        self.drain_callbacks: list[Callable[[], None]] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def buffered(self) -> int:
        return self.backlog

    def when_drained(self, callback: Callable[[], None]) -> None:
        self.drain_callbacks.append(callback)

    def publishes(self) -> list[Publish]:
        packets = PacketSplitter().feed(b"".join(self.writes))
        return [decode_publish(p.flags, p.body) for p in packets if p.kind == PUBLISH]

    def kinds(self) -> list[int]:
        return [p.kind for p in PacketSplitter().feed(b"".join(self.writes))]


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def online(limits: DeliveryLimits | None = None) -> tuple[Outbox, FakeTransport, DeliveryStats, list[int]]:
    stats = DeliveryStats()
    box = Outbox(limits or DeliveryLimits(), stats)
    transport = FakeTransport()
    overflows: list[int] = []
    box.attach(transport, lambda: overflows.append(1))
    return box, transport, stats, overflows


async def test_messages_pushed_in_one_turn_go_out_in_one_write() -> None:
    box, transport, stats, _ = online()
    for i in range(3):
        box.push(TOPIC, b"m%d" % i, 0)
    await turn()
    assert len(transport.writes) == 1
    assert [p.payload for p in transport.publishes()] == [b"m0", b"m1", b"m2"]
    assert stats.delivered == 3


async def test_qos1_gets_packet_ids_of_its_own_and_waits_for_window() -> None:
    box, transport, _, _ = online(DeliveryLimits(max_inflight=2))
    for i in range(3):
        box.push(TOPIC, b"m%d" % i, 1)
    await turn()
    assert [(p.payload, p.packet_id) for p in transport.publishes()] == [(b"m0", 1), (b"m1", 2)]
    box.on_puback(1)
    await turn()
    assert [(p.payload, p.packet_id) for p in transport.publishes()][2:] == [(b"m2", 3)]
    assert sorted(box.inflight) == [2, 3]


async def test_a_full_queue_drops_qos0_and_counts_it() -> None:
    box, _, stats, overflows = online(DeliveryLimits(queue_size=2, max_inflight=1))
    box.push(TOPIC, b"a", 1)
    await turn()  # "a" in flight; the queue is empty
    assert box.push(TOPIC, b"b", 0)
    assert box.push(TOPIC, b"c", 0)
    assert not box.push(TOPIC, b"d", 0)
    assert stats.dropped_qos0 == 1
    assert overflows == []


async def test_a_full_queue_closes_a_slow_subscriber_rather_than_drop_qos1() -> None:
    box, _, stats, overflows = online(DeliveryLimits(queue_size=1, max_inflight=1))
    box.push(TOPIC, b"a", 1)
    await turn()
    box.push(TOPIC, b"b", 1)
    assert box.push(TOPIC, b"c", 1)  # kept, and the connection asked to close
    assert box.push(TOPIC, b"d", 1)
    assert overflows == [1]
    assert stats.slow_disconnects == 1
    assert box.queued == 3


async def test_while_away_qos0_is_not_stored_and_a_full_queue_refuses_with_a_count() -> None:
    stats = DeliveryStats()
    box = Outbox(DeliveryLimits(queue_size=1), stats)
    assert not box.push(TOPIC, b"q0", 0)
    assert box.push(TOPIC, b"q1", 1)
    assert not box.push(TOPIC, b"q2", 2)
    assert stats.dropped_offline == 1
    assert stats.dropped_qos0 == 0


async def test_reconnect_resends_unacked_with_dup_before_queued_ones() -> None:
    box, first, _, _ = online(DeliveryLimits(max_inflight=1))
    box.push(TOPIC, b"a", 1)
    box.push(TOPIC, b"b", 1)
    await turn()
    box.detach(first)
    second = FakeTransport()
    box.attach(second, lambda: None)
    await turn()
    resent = second.publishes()
    assert [(p.payload, p.dup, p.packet_id) for p in resent] == [(b"a", True, 1)]
    box.on_puback(1)
    await turn()
    assert [(p.payload, p.dup) for p in second.publishes()][1:] == [(b"b", False)]


async def test_qos2_flow_and_pubrel_resent_after_reconnect() -> None:
    box, first, _, _ = online()
    box.push(TOPIC, b"x", 2)
    await turn()
    box.on_pubrec(1)
    await turn()
    assert first.kinds() == [PUBLISH, PUBREL]
    box.detach(first)
    second = FakeTransport()
    box.attach(second, lambda: None)
    await turn()
    assert second.kinds() == [PUBREL]
    box.on_pubcomp(1)
    assert box.inflight == {}


async def test_detach_by_an_old_connection_leaves_a_newer_one_attached() -> None:
    box, first, _, _ = online()
    second = FakeTransport()
    box.attach(second, lambda: None)
    box.detach(first)
    assert box.online


async def test_a_congested_transport_is_not_written_until_it_drains() -> None:
    box, transport, _, _ = online(DeliveryLimits(high_water=10))
    box.push(TOPIC, b"a", 0)
    await turn()
    transport.backlog = 100
    box.push(TOPIC, b"b", 0)
    await turn()
    assert [p.payload for p in transport.publishes()] == [b"a"]
    transport.backlog = 0
    for callback in transport.drain_callbacks:
        callback()
    await turn()
    assert [p.payload for p in transport.publishes()] == [b"a", b"b"]


async def test_one_flush_fills_the_transport_up_to_high_water_and_waits_for_the_rest() -> None:
    box, transport, _, _ = online(DeliveryLimits(high_water=100))
    for i in range(20):
        box.push(TOPIC, b"%02d" % i, 0)  # 7 bytes each
    await turn()
    assert len(transport.writes) == 1
    assert len(transport.publishes()) == 15  # up to 100 bytes: 15 × 7 = 105
    assert len(transport.drain_callbacks) == 1
    transport.drain_callbacks.pop()()
    await turn()
    assert [p.payload for p in transport.publishes()] == [b"%02d" % i for i in range(20)]


async def test_a_half_full_queue_presses_publishers_until_it_is_down_to_a_quarter() -> None:
    box, transport, _, _ = online(DeliveryLimits(queue_size=8, high_water=10))
    box.push(TOPIC, b"first", 0)
    await turn()  # written; the transport is now over its high water
    transport.backlog = 100
    for i in range(4):
        box.push(TOPIC, b"%d" % i, 0)
    await turn()
    assert box.pressed
    waiter = asyncio.ensure_future(box.relieved(5))
    await turn()
    assert not waiter.done()
    transport.backlog = 0
    for callback in transport.drain_callbacks:
        callback()
    assert await waiter
    assert not box.pressed


async def test_a_subscriber_that_stays_behind_lets_the_publisher_go_after_the_wait() -> None:
    box, transport, _, _ = online(DeliveryLimits(queue_size=2, high_water=1))
    box.push(TOPIC, b"a", 0)
    await turn()
    transport.backlog = 100  # the subscriber reads nothing more
    box.push(TOPIC, b"b", 0)
    assert box.pressed
    assert not await box.relieved(0.05)


async def test_a_queue_past_its_byte_bound_drops_qos0_and_counts_it() -> None:
    box, transport, stats, overflows = online(DeliveryLimits(queue_bytes=1000, max_inflight=1))
    transport.backlog = 10**9  # the client reads nothing: everything stays queued
    assert all(box.push(TOPIC, b"x" * 300, 0) for _ in range(3))
    assert not box.push(TOPIC, b"x" * 300, 0)  # 4 x 303 bytes > 1000
    assert (stats.dropped_qos0, overflows, box.queued) == (1, [], 3)
    assert box.queued_bytes == 3 * (len(TOPIC) + 300)


async def test_a_qos1_subscriber_past_the_byte_bound_is_closed_as_too_slow() -> None:
    box, transport, stats, overflows = online(DeliveryLimits(queue_bytes=1000, max_inflight=1))
    transport.backlog = 10**9
    for _ in range(4):
        box.push(TOPIC, b"y" * 300, 1)
    assert (overflows, stats.slow_disconnects) == ([1], 1)


async def test_one_message_bigger_than_the_byte_bound_still_goes_through_an_empty_queue() -> None:
    box, transport, _, overflows = online(DeliveryLimits(queue_bytes=100))
    assert box.push(TOPIC, b"z" * 500, 1)
    await turn()
    assert [p.payload for p in transport.publishes()] == [b"z" * 500]
    assert (overflows, box.queued_bytes) == ([], 0)


async def test_the_byte_bound_presses_publishers_before_the_message_bound() -> None:
    box, transport, _, _ = online(DeliveryLimits(queue_size=1000, queue_bytes=2000))
    transport.backlog = 10**9
    box.push(TOPIC, b"p" * 600, 0)
    assert not box.pressed
    box.push(TOPIC, b"p" * 600, 0)
    assert box.pressed  # 1206 bytes >= half of 2000, with 2 of 1000 messages


async def test_a_cleared_outbox_holds_no_bytes() -> None:
    box, transport, _, _ = online(DeliveryLimits(queue_bytes=10**6))
    transport.backlog = 10**9
    for _ in range(10):
        box.push(TOPIC, b"q" * 1000, 1)
    assert box.queued_bytes > 0
    box.clear()
    assert (box.queued, box.queued_bytes, box.inflight, box.online) == (0, 0, {}, False)
