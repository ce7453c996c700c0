"""The bus interface, shaped after Kafka's semantics.

* A topic has a fixed number of partitions; a record's partition is chosen by a
  stable hash of its key, so records with one key keep their order.
* ``publish`` returns once the record is durable in the bus (for Kafka: acks=all).
* A record's value is a typed record (``chatmq.core.records``): the in-process bus carries the object
  as it is (``Record.item``), the Kafka bus its JSON (``Record.value``); raw bytes pass through as they are.
* A consumer belongs to a group; the partitions of its topics are shared among the
  group's live consumers. It reads records in order per partition and ``commit``s the
  position after processing: a consumer that stops without committing hands the same
  records to the next owner of the partition (at-least-once).
"""

from __future__ import annotations

import abc
import zlib
from dataclasses import dataclass

from chatmq.core.records import BusItem
from chatmq.core.service import Service

Value = bytes | BusItem
"""What is published: a typed record, or bytes as they are."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's declaration: name, partition count, and whether it is compacted by key."""

    name: str
    partitions: int = 1
    compacted: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """One record as a consumer sees it: the published object as ``item`` (in-process bus), or its
    bytes as ``value`` (Kafka, or bytes published as they are). Read it with the topic's
    ``chatmq.core.records.Codec``."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    item: object = None


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (stable across processes)."""
    return zlib.crc32(key) % partitions


class Consumer(abc.ABC):
    """A member of a consumer group reading some topics."""

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @abc.abstractmethod
    async def start(self) -> None:
        """Join the group; partitions are assigned from here on."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Leave the group without committing; uncommitted records go to the next owner."""

    @abc.abstractmethod
    async def getmany(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        """Up to ``max_records`` records, in order per partition; waits up to ``timeout`` seconds
        for the first one and returns ``[]`` when none came."""

    @abc.abstractmethod
    async def commit(self, records: list[Record]) -> None:
        """Mark ``records`` (and everything before them in their partitions) as processed."""


class Bus(Service):
    """A connection to the bus. ``start()``/``stop()`` pair with ``async with``; ``ping`` raises
    ``BusError`` saying why when the bus cannot be reached."""

    @abc.abstractmethod
    async def ensure_topics(self, specs: list[TopicSpec]) -> None:
        """Create the topics that do not exist yet."""

    @abc.abstractmethod
    async def publish(self, topic: str, key: bytes, value: Value) -> None:
        """Append a record; returns once it is durable. ``BusError`` on failure."""

    async def publish_many(self, topic: str, items: list[tuple[bytes, Value]]) -> None:
        """Append several ``(key, value)`` records in order; returns once all are durable."""
        for key, value in items:
            await self.publish(topic, key, value)

    @abc.abstractmethod
    def consumer(self, group: str, topics: list[str]) -> Consumer:
        """A new (not yet started) consumer in ``group`` reading ``topics``."""
