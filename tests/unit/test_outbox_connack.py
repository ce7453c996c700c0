"""The CONNACK on the outbox (``Outbox.attach(first=…, flush=False)``, ``schedule_flush``,
``flush_control``): first on the wire, in one write with what the read loop's first turn queued."""

from __future__ import annotations

from chatmq.broker.outbox import DeliveryLimits, DeliveryStats, Outbox
from chatmq.broker.wire import CONNACK, PUBACK, PUBLISH, PUBREL, SUBACK, encode_ack, encode_connack, encode_topic
from tests.unit.test_outbox import FakeTransport, turn

CONNACK_PRESENT = encode_connack(True, 0)
SUBACK_BYTES = b"\x90\x03\x00\x01\x01"


async def test_connack_waits_for_the_first_turn_and_goes_out_with_the_suback() -> None:
    box, transport = Outbox(DeliveryLimits(), DeliveryStats()), FakeTransport()
    box.attach(transport, lambda: None, first=CONNACK_PRESENT, flush=False)
    await turn()
    assert transport.writes == []  # nothing until the read loop starts
    box.schedule_flush()
    box.send_raw(SUBACK_BYTES)
    await turn()
    assert transport.writes == [CONNACK_PRESENT + SUBACK_BYTES]


async def test_connack_precedes_the_resent_in_flight_and_the_queue() -> None:
    box, first = Outbox(DeliveryLimits(), DeliveryStats()), FakeTransport()
    box.attach(first, lambda: None)
    box.push(encode_topic("t"), b"a", 2)
    box.push(encode_topic("t"), b"b", 1)
    await turn()
    box.on_pubrec(1)  # id 1 released (PUBREL pending), id 2 still unacknowledged
    box.detach(first)
    box.push(encode_topic("t"), b"c", 1)  # queued while away
    again = FakeTransport()
    box.attach(again, lambda: None, first=CONNACK_PRESENT, flush=False)
    box.schedule_flush()
    await turn()
    assert len(again.writes) == 1
    assert again.writes[0].startswith(CONNACK_PRESENT)
    assert again.kinds() == [CONNACK, PUBREL, PUBLISH, PUBLISH]
    assert [(p.payload, p.dup) for p in again.publishes()] == [(b"b", True), (b"c", False)]


async def test_flush_control_writes_acks_now_and_leaves_messages_queued() -> None:
    box, transport = Outbox(DeliveryLimits(), DeliveryStats()), FakeTransport()
    box.attach(transport, lambda: None, first=CONNACK_PRESENT, flush=False)
    box.push(encode_topic("t"), b"m", 1)
    box.send_raw(encode_ack(PUBACK, 7))
    box.flush_control()
    assert transport.writes == [CONNACK_PRESENT + encode_ack(PUBACK, 7)]
    box.flush_control()  # nothing more to write: harmless
    assert len(transport.writes) == 1
    await turn()  # the queued message goes out with the next flush, as always
    assert transport.kinds() == [CONNACK, PUBACK, PUBLISH]
    assert SUBACK not in transport.kinds()
