"""``TelemetryWorker``: ``chat.telemetry`` records to points, batched, committed only once InfluxDB has them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from chatmq.core.bus.base import TopicSpec
from chatmq.core.bus.memory import MemoryBus
from chatmq.core.records import TELEMETRY_RECORDS, BadRecord
from chatmq.core.topics import TELEMETRY
from chatmq.services.telemetry.worker import TelemetryWorker, reading_point
from chatmq.services.telemetry.writer import InfluxWriter
from tests.unit.chat_fixtures import eventually
from tests.unit.fake_influx import FakeInflux

RECEIVED = 1_800_000_000_000


def record(device: str, reading: object, owner: str | None = "u1", ts: int = RECEIVED) -> bytes:
    return orjson.dumps({"device": device, "owner": owner, "reading": reading, "ts": ts})


def test_a_record_becomes_a_point_tagged_with_device_and_owner() -> None:
    value = TELEMETRY_RECORDS.decode(record("d1", {"temp": 21.5, "on": True, "n": 3}))
    assert reading_point(value, "telemetry") == f"telemetry,device=d1,owner=u1 n=3,on=1,temp=21.5 {RECEIVED}"


def test_the_reading_ts_wins_over_the_receive_time_and_extra_tags_come_first() -> None:
    value = TELEMETRY_RECORDS.decode(record("d 2", {"temp": 1, "ts": RECEIVED - 60_000}, owner=None))
    expected = f"sensors,device=d\\ 2,site=lab temp=1 {RECEIVED - 60_000}"
    assert reading_point(value, "sensors", {"site": "lab"}) == expected


@pytest.mark.parametrize("value", [
    {"owner": "u1", "reading": {"temp": 1}, "ts": RECEIVED},
    {"device": "d1", "owner": "u1", "reading": [1], "ts": RECEIVED},
    {"device": "d1", "owner": "u1", "reading": {"temp": "hot"}, "ts": RECEIVED},
    {"device": "d1", "owner": "u1", "reading": {"temp": 1}},
])
def test_a_record_that_is_not_a_valid_reading_is_refused(value: dict[str, object]) -> None:
    with pytest.raises((BadRecord, ValueError), match=r"\S"):
        reading_point(TELEMETRY_RECORDS.decode(orjson.dumps(value)), "telemetry")


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus(default_partitions=2)
    await b.start()
    await b.ensure_topics([TopicSpec(TELEMETRY, 2)])
    yield b
    await b.stop()


async def test_readings_that_trickle_in_are_written_in_one_batch(bus: MemoryBus, influx: FakeInflux) -> None:
    async with InfluxWriter(influx.url, token=None, org="o", bucket="b") as writer:
        worker = TelemetryWorker(bus, writer, batch_size=100, linger=0.5)
        async with worker:
            for i in range(5):
                await bus.publish(TELEMETRY, b"d1", record("d1", {"temp": i}, ts=RECEIVED + i))
                await asyncio.sleep(0.02)
            await bus.publish(TELEMETRY, b"d1", b"not json")  # a foreign record: skipped, the rest goes on

            async def written() -> bool:
                return len(influx.accepted) == 5
            await eventually(written, 5)
    assert len(influx.requests) == 1
    assert sorted(influx.accepted) == sorted(f"telemetry,device=d1,owner=u1 temp={i} {RECEIVED + i}"
                                             for i in range(5))
    assert worker.skipped == 1


async def test_nothing_is_committed_while_influxdb_is_down(bus: MemoryBus, influx: FakeInflux) -> None:
    """A batch InfluxDB never took is read again by the group's next member; nothing is lost."""
    influx.outage = 10_000
    async with InfluxWriter(influx.url, token=None, org="o", bucket="b", min_backoff=0.01,
                            max_backoff=0.05) as writer:
        first = TelemetryWorker(bus, writer, linger=0.05)
        await first.start()
        for i in range(3):
            await bus.publish(TELEMETRY, f"d{i}".encode(), record(f"d{i}", {"temp": i}))

        async def failing() -> bool:
            return len(influx.requests) >= 3
        await eventually(failing, 5)
        await first.stop(grace=0.2)  # still retrying: given up without a commit
        assert influx.accepted == []

        influx.outage = 0
        async with TelemetryWorker(bus, writer, linger=0.05) as second:
            async def written() -> bool:
                return len(influx.accepted) == 3
            await eventually(written, 5)
            assert second.processed == 3


async def test_a_point_influxdb_refuses_is_skipped_not_retried_forever(bus: MemoryBus, influx: FakeInflux) -> None:
    influx.malformed = ["device=d-bad"]
    async with InfluxWriter(influx.url, token=None, org="o", bucket="b") as writer:
        worker = TelemetryWorker(bus, writer, linger=0.2)
        async with worker:
            await bus.publish(TELEMETRY, b"d", record("d-bad", {"temp": 1}))
            await bus.publish(TELEMETRY, b"d", record("d-ok", {"temp": 2}))

            async def done() -> bool:
                return worker.processed == 2
            await eventually(done, 5)
    assert influx.accepted == [f"telemetry,device=d-ok,owner=u1 temp=2 {RECEIVED}"]
    assert worker.skipped == 1
