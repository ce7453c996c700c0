"""BusWorker: consume → process → commit, retries of failing batches, poisoned records skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatmq.core.bus.base import Record, TopicSpec, partition_for
from chatmq.core.bus.memory import MemoryBus
from chatmq.core.worker import BusWorker
from tests.unit.chat_fixtures import eventually

TOPIC = "t"
GROUP = "g"


class RecordingWorker(BusWorker):
    """Keeps the values it processed; ``fail_times`` failures first; ``poison`` values always fail;
    while ``gate`` is clear, ``process`` waits."""

    max_attempts = 3
    retry_pause = 0.001

    def __init__(self, bus: MemoryBus, *, fail_times: int = 0, poison: frozenset[bytes] = frozenset()) -> None:
        super().__init__(bus, GROUP, [TOPIC])
        self.done: list[bytes] = []
        self.calls: list[list[bytes]] = []
        self.fail_times = fail_times
        self.poison = poison
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def process(self, records: list[Record]) -> None:
        values = [r.value for r in records]
        self.calls.append(values)
        self.entered.set()
        await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("transient failure")
        if self.poison.intersection(values):
            raise ValueError("poisoned record")
        self.done.extend(values)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus(default_partitions=2)
    await b.start()
    await b.ensure_topics([TopicSpec(TOPIC, 2)])
    yield b
    await b.stop()


def _key_on(partition: int) -> bytes:
    return next(k for k in (f"k{i}".encode() for i in range(1000)) if partition_for(k, 2) == partition)


async def _publish(bus: MemoryBus, *values: bytes, key: bytes = b"k") -> None:
    for v in values:
        await bus.publish(TOPIC, key, v)


async def test_processes_in_order_and_commits(bus: MemoryBus) -> None:
    worker = RecordingWorker(bus)
    async with worker:
        await _publish(bus, b"1", b"2", b"3")

        async def all_done() -> bool:
            return worker.processed == 3

        await eventually(all_done)
    assert worker.done == [b"1", b"2", b"3"]
    assert bus.lag(GROUP) == 0


async def test_commits_only_after_process_returned(bus: MemoryBus) -> None:
    worker = RecordingWorker(bus)
    worker.gate.clear()
    await worker.start()
    try:
        await _publish(bus, b"1", b"2")
        await asyncio.wait_for(worker.entered.wait(), 2)
        await asyncio.sleep(0.02)
        assert bus.lag(GROUP) == 2  # read, but not committed while process runs
        assert worker.processed == 0
        worker.gate.set()

        async def committed() -> bool:
            return bus.lag(GROUP) == 0

        await eventually(committed)
    finally:
        await worker.stop()
    assert worker.done == [b"1", b"2"]


async def test_stop_finishes_and_commits_the_batch_in_hand(bus: MemoryBus) -> None:
    first = RecordingWorker(bus)
    first.gate.clear()
    await first.start()
    await _publish(bus, b"1", b"2")
    await asyncio.wait_for(first.entered.wait(), 2)
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.02)
    assert not stopping.done()  # waits for the batch in hand
    first.gate.set()
    await asyncio.wait_for(stopping, 2)
    assert first.done == [b"1", b"2"]
    assert bus.lag(GROUP) == 0

    await _publish(bus, b"3")
    second = RecordingWorker(bus)
    async with second:

        async def next_one() -> bool:
            return second.processed == 1

        await eventually(next_one)
    assert second.done == [b"3"]  # nothing of the first worker's batch again


async def test_a_batch_unfinished_after_the_grace_goes_to_the_next_worker(bus: MemoryBus) -> None:
    first = RecordingWorker(bus)
    first.gate.clear()
    await first.start()
    await _publish(bus, b"1", b"2")
    await asyncio.wait_for(first.entered.wait(), 2)
    await first.stop(grace=0.05)  # cancelled inside process: nothing committed
    assert first.done == []

    second = RecordingWorker(bus)
    async with second:

        async def redone() -> bool:
            return second.done == [b"1", b"2"]

        await eventually(redone)
    assert bus.lag(GROUP) == 0


async def test_a_failing_batch_is_retried_until_it_succeeds(bus: MemoryBus) -> None:
    worker = RecordingWorker(bus, fail_times=2)
    await _publish(bus, b"1", b"2")
    async with worker:

        async def committed() -> bool:
            return worker.processed == 2

        await eventually(committed)
    assert worker.calls == [[b"1", b"2"]] * 3  # two failures, then the same batch again
    assert worker.done == [b"1", b"2"]
    assert bus.lag(GROUP) == 0


async def test_a_record_that_always_fails_is_skipped_and_the_others_processed(bus: MemoryBus) -> None:
    worker = RecordingWorker(bus, poison=frozenset({b"bad"}))
    await _publish(bus, b"1", b"bad", b"3")
    async with worker:

        async def committed() -> bool:
            return worker.processed == 3

        await eventually(committed)
        await _publish(bus, b"4")  # the worker goes on after the poisoned batch

        async def later() -> bool:
            return worker.processed == 4

        await eventually(later)
    assert worker.calls[:3] == [[b"1", b"bad", b"3"]] * worker.max_attempts
    assert worker.calls[3:] == [[b"1"], [b"bad"], [b"3"], [b"4"]]  # one at a time, then on as usual
    assert worker.done == [b"1", b"3", b"4"]
    assert bus.lag(GROUP) == 0


async def test_process_called_directly_has_no_side_effects_on_the_bus(bus: MemoryBus) -> None:
    worker = RecordingWorker(bus)
    await worker.process([Record(TOPIC, 0, 0, b"k", b"x")])
    assert worker.done == [b"x"]
    assert worker.processed == 0
    assert bus.lag(GROUP) == 0
    await worker.stop()  # stopping a worker that never started is harmless


async def test_worker_survives_a_commit_refused_after_a_rebalance(bus: MemoryBus) -> None:
    key = _key_on(1)
    worker = RecordingWorker(bus)
    worker.gate.clear()
    await worker.start()
    try:
        await _publish(bus, b"1", key=key)
        await asyncio.wait_for(worker.entered.wait(), 2)
        other = bus.consumer(GROUP, [TOPIC])
        await other.start()  # takes partition 1 over: the worker's commit of "1" is refused
        worker.gate.set()
        await asyncio.sleep(0.05)
        await other.stop()  # partition 1 comes back to the worker, uncommitted
        await _publish(bus, b"2", key=key)

        async def caught_up() -> bool:
            return bus.lag(GROUP) == 0

        await eventually(caught_up, timeout=0.5)
    finally:
        await worker.stop()
    assert b"2" in worker.done
