"""The in-process bus of the embedded mode.

Same semantics as ``chatmq.core.bus.base`` within one process: partitions by key hash,
consumer groups sharing partitions (reassigned when a member joins or leaves),
positions that restart from the last commit when a partition changes owner. Records
are dropped once every group reading the topic has committed past them. Nothing
survives the process: the embedded mode acknowledges to clients only after the store
has committed, so the bus never holds the only copy of an acknowledged message.
Records are the published objects themselves (``chatmq.core.records``): nothing is encoded or
decoded on the way; bytes published as they are come out as ``Record.value``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chatmq.core.bus.base import Bus, Consumer, Record, TopicSpec, Value, partition_for
from chatmq.core.errors import BusClosedError, BusError
from chatmq.core.metrics import CONSUMER_LAG, SOURCES, Sample


@dataclass(slots=True)
class _Partition:
    base: int = 0  # offset of records[0]
    records: deque[tuple[bytes, Value]] = field(default_factory=deque)

    @property
    def end(self) -> int:
        return self.base + len(self.records)


@dataclass(slots=True)
class _Topic:
    spec: TopicSpec
    partitions: list[_Partition]


@dataclass(slots=True)
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


class MemoryBus(Bus):
    """In-process bus. ``default_partitions`` applies to topics first used without a declaration;
    a partition holds at most ``max_backlog`` unconsumed records, the oldest beyond are dropped
    and counted in ``dropped`` (the store, not the bus, holds every acknowledged message)."""

    def __init__(self, default_partitions: int = 8, max_backlog: int = 100_000) -> None:
        self._default_partitions = default_partitions
        self._max_backlog = max_backlog
        self.dropped = 0
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        # per topic, the members reading it and the groups they belong to (made again on a join or leave)
        self._readers: dict[str, tuple[list[MemoryConsumer], list[_Group]]] = {}
        self._running = False
        self._unlist: Callable[[], None] | None = None

    async def start(self) -> None:
        self._running = True
        if self._unlist is None:
            self._unlist = SOURCES.add(self._lag_samples)

    async def stop(self) -> None:
        self._running = False
        if self._unlist is not None:
            self._unlist()
            self._unlist = None
        for group in self._groups.values():
            for member in list(group.members):
                member.wake()

    async def ping(self) -> None:
        if not self._running:
            raise BusClosedError("bus is not running")

    async def ensure_topics(self, specs: list[TopicSpec]) -> None:
        for spec in specs:
            if spec.name not in self._topics:
                self._topics[spec.name] = _Topic(spec, [_Partition() for _ in range(spec.partitions)])

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = _Topic(TopicSpec(name, self._default_partitions), [
                _Partition() for _ in range(self._default_partitions)
            ])
            self._topics[name] = topic
        return topic

    async def publish(self, topic: str, key: bytes, value: Value) -> None:
        self.append(topic, key, value)

    async def publish_many(self, topic: str, items: list[tuple[bytes, Value]]) -> None:
        for key, value in items:
            self.append(topic, key, value)

    def append(self, topic: str, key: bytes, value: Value) -> None:
        """Synchronous ``publish``: append and wake the consumers of ``topic``."""
        if not self._running:
            raise BusClosedError("bus is not running")
        t = self._topic(topic)
        part = t.partitions[partition_for(key, len(t.partitions))]
        part.records.append((key, value))
        if len(part.records) > self._max_backlog:  # bounded memory: drop (and count) the oldest
            part.records.popleft()
            part.base += 1
            self.dropped += 1
        for member in self._readers_of(topic)[0]:
            member.wake()

    def _readers_of(self, topic: str) -> tuple[list[MemoryConsumer], list[_Group]]:
        readers = self._readers.get(topic)
        if readers is None:
            groups = [g for g in self._groups.values() if any(topic in m.topics for m in g.members)]
            readers = ([m for g in groups for m in g.members if topic in m.topics], groups)
            self._readers[topic] = readers
        return readers

    def consumer(self, group: str, topics: list[str]) -> MemoryConsumer:
        return MemoryConsumer(self, group, topics)

    # group membership -------------------------------------------------------------
    def _join(self, member: MemoryConsumer) -> None:
        group = self._groups.setdefault(member.group, _Group())
        group.members.append(member)
        self._readers.clear()
        self._rebalance(group)

    def _leave(self, member: MemoryConsumer) -> None:
        group = self._groups.get(member.group)
        if group is None or member not in group.members:
            return
        group.members.remove(member)
        self._readers.clear()
        self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Share every partition of the group's topics round-robin among its members."""
        for member in group.members:
            member.assign({})
        topics = sorted({t for m in group.members for t in m.topics})
        for name in topics:
            readers = [m for m in group.members if name in m.topics]
            for p in range(len(self._topic(name).partitions)):
                owner = readers[p % len(readers)]
                tp = (name, p)
                owner.positions[tp] = group.committed.get(tp, self._topic(name).partitions[p].base)
        for member in group.members:
            member.wake()

    def _read(self, tp: tuple[str, int], position: int, limit: int) -> list[Record]:
        part = self._topic(tp[0]).partitions[tp[1]]
        start = max(position, part.base)
        out: list[Record] = []
        for offset in range(start, min(part.end, start + limit)):
            key, value = part.records[offset - part.base]
            if isinstance(value, bytes):
                out.append(Record(tp[0], tp[1], offset, key, value))
            else:
                out.append(Record(tp[0], tp[1], offset, key, b"", value))
        return out

    def _commit(self, group_name: str, tp: tuple[str, int], next_offset: int) -> None:
        group = self._groups.setdefault(group_name, _Group())
        if next_offset > group.committed.get(tp, 0):
            group.committed[tp] = next_offset
        self._trim(tp)

    def _trim(self, tp: tuple[str, int]) -> None:
        readers = self._readers_of(tp[0])[1]
        if not readers:
            return
        low = min(g.committed.get(tp, 0) for g in readers)
        part = self._topic(tp[0]).partitions[tp[1]]
        while part.base < low and part.records:
            part.records.popleft()
            part.base += 1

    def lag(self, group: str) -> int:
        """Records not yet committed by ``group`` over the topics its members read."""
        return sum(self.lags(group).values())

    def lags(self, group: str) -> dict[str, int]:
        """Records not yet committed by ``group``, by topic its members read."""
        g = self._groups.get(group)
        if g is None:
            return {}
        out: dict[str, int] = {}
        for name in {t for m in g.members for t in m.topics}:
            out[name] = sum(part.end - g.committed.get((name, p), part.base)
                            for p, part in enumerate(self._topic(name).partitions))
        return out

    def _lag_samples(self) -> list[Sample]:
        return [(CONSUMER_LAG, (topic, group), float(lag))
                for group in list(self._groups) for topic, lag in self.lags(group).items()]


class MemoryConsumer(Consumer):
    """One member of a consumer group of a ``MemoryBus``."""

    def __init__(self, bus: MemoryBus, group: str, topics: list[str]) -> None:
        self._bus = bus
        self.group = group
        self.topics = frozenset(topics)
        self.positions: dict[tuple[str, int], int] = {}
        self._next = 0  # where ``getmany`` starts its round of the partitions
        self._event = asyncio.Event()
        self._started = False
        self._stopped = False

    def assign(self, positions: dict[tuple[str, int], int]) -> None:
        self.positions = dict(positions)

    def wake(self) -> None:
        self._event.set()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._bus._join(self)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._bus._leave(self)
        self._event.set()

    async def getmany(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        if not self._started or self._stopped:
            raise BusClosedError("consumer is not running")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._event.clear()
            out: list[Record] = []
            # from the partition after the last one read before, round the partitions: a backlog in the
            # first ones must not starve the rest (it held some users' messages for the whole of a
            # saturating ``chatmq bench chat`` row)
            order = list(self.positions)
            first = self._next % len(order) if order else 0
            for i in range(len(order)):
                if len(out) >= max_records:
                    break
                tp = order[(first + i) % len(order)]
                batch = self._bus._read(tp, self.positions[tp], max_records - len(out))
                if batch:
                    self.positions[tp] = batch[-1].offset + 1
                    out.extend(batch)
                self._next = first + i + 1
            if out or self._stopped:
                return out
            if not self._bus._running:  # a reader of a stopped bus must end, not poll an empty bus forever
                raise BusClosedError("the bus is stopped")
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return []

    async def commit(self, records: list[Record]) -> None:
        if self._stopped:
            raise BusClosedError("consumer is stopped")
        latest: dict[tuple[str, int], int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            latest[tp] = max(latest.get(tp, -1), r.offset + 1)
        for tp, next_offset in latest.items():
            if tp not in self.positions:
                raise BusError(f"partition {tp} is no longer assigned to this consumer")
            self._bus._commit(self.group, tp, next_offset)
