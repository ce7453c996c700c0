"""The bus contract, run against every implementation: the in-process bus always, Kafka when
``CHATMQ_KAFKA_BOOTSTRAP`` names a running broker (``scripts/services.sh up kafka``)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from chatmq.core.bus import Bus, Consumer, MemoryBus, Record, TopicSpec
from chatmq.core.errors import BusClosedError

KAFKA = os.environ.get("CHATMQ_KAFKA_BOOTSTRAP")


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.cluster)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        b: Bus = MemoryBus(default_partitions=4)
    else:
        if not KAFKA:
            pytest.skip("CHATMQ_KAFKA_BOOTSTRAP is not set (scripts/services.sh up kafka)")
        from chatmq.core.bus.kafka import KafkaBus

        b = KafkaBus(KAFKA, prefix=f"p{uuid.uuid4().hex[:6]}.")  # records must come back without it
    await b.start()
    yield b
    await b.stop()


async def topic(bus: Bus, partitions: int = 4) -> str:
    name = f"contract-{uuid.uuid4().hex[:10]}"
    await bus.ensure_topics([TopicSpec(name, partitions)])
    return name


async def drain(consumer: Consumer, n: int, timeout: float = 30.0) -> list[Record]:
    """Read until ``n`` records arrived (a Kafka group needs a moment to join)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += await consumer.getmany(timeout=0.5, max_records=1000)
    return got


async def test_records_keep_their_order_per_key(bus: Bus) -> None:
    t = await topic(bus)
    for i in range(60):
        await bus.publish(t, f"k{i % 3}".encode(), str(i).encode())
    c = bus.consumer(f"g-{t}", [t])
    await c.start()
    try:
        records = await drain(c, 60)
        assert len(records) == 60
        assert {r.topic for r in records} == {t}
        for key in (b"k0", b"k1", b"k2"):
            values = [int(r.value) for r in records if r.key == key]
            assert values == sorted(values)
            assert len({r.partition for r in records if r.key == key}) == 1
    finally:
        await c.stop()


async def test_publish_many_keeps_order(bus: Bus) -> None:
    t = await topic(bus)
    await bus.publish_many(t, [(b"conv", str(i).encode()) for i in range(200)])
    c = bus.consumer(f"g-{t}", [t])
    await c.start()
    try:
        assert [int(r.value) for r in await drain(c, 200)] == list(range(200))
    finally:
        await c.stop()


async def test_uncommitted_records_come_again_to_the_next_member(bus: Bus) -> None:
    t = await topic(bus, partitions=1)
    for i in range(10):
        await bus.publish(t, b"k", str(i).encode())
    group = f"g-{t}"
    first = bus.consumer(group, [t])
    await first.start()
    got = await drain(first, 10)
    await first.commit(got[:4])
    await first.stop()
    second = bus.consumer(group, [t])
    await second.start()
    try:
        assert [int(r.value) for r in await drain(second, 6)] == list(range(4, 10))
    finally:
        await second.stop()


async def test_groups_read_independently(bus: Bus) -> None:
    t = await topic(bus)
    for i in range(20):
        await bus.publish(t, f"key{i}".encode(), b"v")
    a, b = bus.consumer(f"a-{t}", [t]), bus.consumer(f"b-{t}", [t])
    await a.start()
    await b.start()
    try:
        assert len(await drain(a, 20)) == 20
        assert len(await drain(b, 20)) == 20
    finally:
        await a.stop()
        await b.stop()


async def test_stopped_bus_refuses_to_publish(bus: Bus) -> None:
    t = await topic(bus)
    await bus.stop()
    with pytest.raises(BusClosedError):
        await bus.publish(t, b"k", b"v")
    await bus.start()  # for the fixture's stop


async def test_getmany_returns_empty_after_its_timeout(bus: Bus) -> None:
    t = await topic(bus)
    c = bus.consumer(f"g-{t}", [t])
    await c.start()
    try:
        started = asyncio.get_running_loop().time()
        assert await c.getmany(timeout=0.3) == []
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await c.stop()


async def test_an_unreachable_kafka_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    from chatmq.core.bus.kafka import KafkaBus
    from chatmq.core.errors import BusError

    bus = KafkaBus("127.0.0.1:1")
    with pytest.raises(BusError, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        await bus.start()
    await bus.stop()  # harmless after a failed start
    import gc

    gc.collect()  # an unclosed aiokafka producer complains when it is collected
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


async def test_a_consumers_lag_is_exported_per_topic_and_group(bus: Bus) -> None:
    """``chatmq_bus_consumer_lag``: records on the topic that the group has not read (Kafka: high-water
    mark minus the consumer's position) or not committed (in-process), here 7 of 10."""
    from chatmq.core.bus.kafka import KafkaConsumer
    from chatmq.core.metrics import CONSUMER_LAG, SOURCES

    t = await topic(bus, partitions=1)
    await bus.publish_many(t, [(b"k", str(i).encode()) for i in range(10)])
    group = f"g-{t}"
    c = bus.consumer(group, [t])
    if isinstance(c, KafkaConsumer):
        c.lag_every = 0.0  # measure on every read
    await c.start()
    try:
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += await c.getmany(timeout=0.5, max_records=3 - len(got))
        assert len(got) == 3
        await c.commit(got)
        assert SOURCES.samples()[CONSUMER_LAG][(t, group)] == 7
    finally:
        await c.stop()
    assert (t, group) not in SOURCES.samples().get(CONSUMER_LAG, {})  # a stopped consumer is not reported


async def test_ping_answers_while_running(bus: Bus) -> None:
    await bus.ping()
    await bus.stop()
    with pytest.raises(BusClosedError):
        await bus.ping()
    await bus.start()  # the fixture stops it again
