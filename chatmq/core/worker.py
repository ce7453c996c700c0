"""``BusWorker``: the consume → process → commit loop every service runs.

A batch is committed only after ``process`` returned. When ``process`` raises, the
batch is retried after a pause; after ``max_attempts`` its records are tried one at a
time: a record failing with a retriable error (``ChatMQError.retriable``: the store or
bus is away) is retried until it succeeds, any other failing record is logged and
skipped, so one poisoned record cannot stop everyone else's messages. A refused
commit (the partitions moved to another member) leaves the records to their new owner.
"""

from __future__ import annotations

import abc
import asyncio
import logging

from chatmq.core.bus.base import Bus, Consumer, Record
from chatmq.core.errors import BusClosedError, BusError, ChatMQError
from chatmq.core.metrics import BUS_BATCH_FAILURES, BUS_RECORDS
from chatmq.core.tasks import Supervisor

log = logging.getLogger(__name__)


class _Abandoned(Exception):
    """Raised inside the loop to give up a batch without committing it (the worker is stopping)."""


class BusWorker(abc.ABC):
    """Subclasses pass their consumer ``group`` and ``topics`` and implement ``process``."""

    max_attempts = 5
    retry_pause = 0.5
    max_records = 500  # records per batch at most
    linger = 0.0  # seconds to wait for more records after the first of a batch (batches writes downstream)

    def __init__(self, bus: Bus, group: str, topics: list[str]) -> None:
        self._bus = bus
        self.group = group
        self.topics = topics
        self._consumer: Consumer | None = None
        self._tasks = Supervisor(type(self).__name__)
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self.processed = 0
        self._processed_metric = BUS_RECORDS.labels(group)
        self._failures_metric = BUS_BATCH_FAILURES.labels(group)

    async def start(self) -> None:
        self._stopping = False
        self._consumer = self._bus.consumer(self.group, self.topics)
        await self._consumer.start()
        self._loop = self._tasks.spawn(self._run(self._consumer), "loop")

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the batch in hand and commit it (waiting up to ``grace`` seconds), then leave the group."""
        self._stopping = True
        if self._loop is not None and not self._loop.done():
            await asyncio.wait([self._loop], timeout=grace)
        await self._tasks.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    async def check(self) -> None:
        """Readiness: raises ``ChatMQError`` saying why when the consume loop is not running."""
        if self._loop is None or self._loop.done():
            raise ChatMQError(f"consumer group {self.group}: not running")

    async def __aenter__(self) -> BusWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @abc.abstractmethod
    async def process(self, records: list[Record]) -> None:
        """Handle a batch, in order per partition; raise to have it retried."""

    async def _run(self, consumer: Consumer) -> None:
        while not self._stopping:
            try:
                records = await self._fetch(consumer)
            except BusClosedError:
                return
            if not records:
                continue
            try:
                await self._process_with_retries(records)
            except _Abandoned:
                return  # stopping mid-retry: not committed, the next owner of the partitions takes over
            try:
                await consumer.commit(records)
            except BusClosedError:
                return
            except BusError as exc:  # e.g. the partitions moved to another member meanwhile
                log.warning("%s: commit refused (%s); the partitions' new owner processes them again",
                            type(self).__name__, exc)
                continue
            self.processed += len(records)
            self._processed_metric.inc(len(records))

    async def _fetch(self, consumer: Consumer) -> list[Record]:
        """Up to ``max_records`` records; once one came, more for up to ``linger`` seconds."""
        records = await consumer.getmany(timeout=0.2, max_records=self.max_records)
        if not records or self.linger <= 0:
            return records
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger
        while len(records) < self.max_records and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            records += await consumer.getmany(timeout=min(remaining, 0.2), max_records=self.max_records - len(records))
        return records

    async def _process_with_retries(self, records: list[Record]) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.process(records)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failures_metric.inc()
                log.exception("%s: batch of %d failed (attempt %d)", type(self).__name__, len(records), attempt)
                await asyncio.sleep(self.retry_pause * attempt)
        # isolate the failure: one record at a time. A retriable error (the store or bus is away)
        # is retried with capped backoff until it clears; any other skips that record only.
        for record in records:
            attempt = 0
            while True:
                try:
                    await self.process([record])
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not getattr(exc, "retriable", False):
                        log.exception("%s: skipping record %s/%d@%d", type(self).__name__,
                                      record.topic, record.partition, record.offset)
                        break
                    if self._stopping:
                        raise _Abandoned from exc
                    attempt += 1
                    log.warning("%s: %s; retrying record %s/%d@%d", type(self).__name__, exc,
                                record.topic, record.partition, record.offset)
                    await asyncio.sleep(min(5.0, self.retry_pause * attempt))
