"""``KafkaBus``: the bus on Apache Kafka through aiokafka (cluster mode).

* Topics are created from their ``TopicSpec`` at start (``ensure_topics``), with the
  configured replication factor; compacted topics get ``cleanup.policy=compact``.
* The producer is idempotent with ``acks=all``: ``publish`` returns once the record is
  committed to every in-sync replica. Records are keyed; Kafka's partitioner keeps one
  key on one partition, so a conversation keeps its order.
* Consumers join their group with auto-commit off and ``auto_offset_reset=earliest``;
  ``commit`` stores the position after the given records (at-least-once).
* ``prefix`` namespaces one deployment on a shared Kafka: every topic and consumer group
  name gets it in Kafka, and records come back with the plain topic name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from chatmq.core.bus.base import Bus, Consumer, Record, TopicSpec, Value
from chatmq.core.errors import BusClosedError, BusError
from chatmq.core.metrics import BUS_PUBLISH_ERRORS, CONSUMER_LAG, SOURCES, Sample
from chatmq.core.records import encode

log = logging.getLogger(__name__)


def _require_aiokafka() -> Any:
    try:
        import aiokafka
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BusError("the Kafka bus needs aiokafka: pip install 'chatmq[cluster]'") from exc
    return aiokafka


class KafkaBus(Bus):
    """A connection to a Kafka cluster at ``bootstrap`` (``host:port[,host:port…]``)."""

    def __init__(self, bootstrap: str, *, replication_factor: int = 1, client_id: str = "chatmq",
                 linger_ms: int = 2, prefix: str = "") -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._replication = replication_factor
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._producer: Any = None

    async def start(self) -> None:
        aiokafka = _require_aiokafka()
        self._producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, acks="all",
            enable_idempotence=True, linger_ms=self._linger_ms,
        )
        try:
            await self._producer.start()
        except Exception as exc:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()  # it holds a connection pool even when it never connected
            raise BusError(f"cannot reach Kafka at {self._bootstrap}: {exc}") from exc

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def ping(self) -> None:
        """Asks the cluster for its metadata: ``BusError`` when no broker answers."""
        producer = self._live_producer()
        try:
            await producer.client.fetch_all_metadata()
        except Exception as exc:
            raise BusError(f"Kafka at {self._bootstrap} does not answer: {exc}") from exc

    async def ensure_topics(self, specs: list[TopicSpec]) -> None:
        _require_aiokafka()
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=f"{self._client_id}-admin")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(self._prefix + s.name, s.partitions, self._replication,
                         topic_configs={"cleanup.policy": "compact"} if s.compacted else {})
                for s in specs if self._prefix + s.name not in existing
            ]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # another process made them meanwhile
                    await admin.create_topics(wanted)
                log.info("created Kafka topics: %s", ", ".join(t.name for t in wanted))
            await self._wait_for_leaders(admin, [self._prefix + s.name for s in specs])
        finally:
            await admin.close()

    @staticmethod
    async def _wait_for_leaders(admin: Any, names: list[str], timeout: float = 30.0) -> None:
        """Until every partition of ``names`` has a leader (a new topic has none for a moment, and
        consumers joining then only log errors); ``BusError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            topics = await admin.describe_topics(names)
            waiting = [t["topic"] for t in topics
                       if t["error_code"] != 0 or not t["partitions"]
                       or any(p["error_code"] != 0 or p["leader"] < 0 for p in t["partitions"])]
            if not waiting:
                return
            if loop.time() > deadline:
                raise BusError(f"Kafka topics without a leader after {timeout:g}s: {', '.join(waiting)}")
            await asyncio.sleep(0.1)

    def _live_producer(self) -> Any:
        if self._producer is None:
            raise BusClosedError("Kafka bus is not running")
        return self._producer

    async def publish(self, topic: str, key: bytes, value: Value) -> None:
        data = value if isinstance(value, bytes) else encode(value)
        try:
            await self._live_producer().send_and_wait(self._prefix + topic, data, key=key)
        except BusClosedError:
            raise
        except Exception as exc:
            BUS_PUBLISH_ERRORS.labels(topic).inc()
            raise BusError(f"publish to {topic} failed: {exc}") from exc

    async def publish_many(self, topic: str, items: list[tuple[bytes, Value]]) -> None:
        producer = self._live_producer()
        encoded = [(key, value if isinstance(value, bytes) else encode(value)) for key, value in items]
        try:
            futures = [await producer.send(self._prefix + topic, value, key=key) for key, value in encoded]
            for future in futures:
                await future
        except Exception as exc:
            BUS_PUBLISH_ERRORS.labels(topic).inc()
            raise BusError(f"publish to {topic} failed: {exc}") from exc

    def consumer(self, group: str, topics: list[str]) -> KafkaConsumer:
        return KafkaConsumer(self._bootstrap, group, topics, self._client_id, self._prefix)


class KafkaConsumer(Consumer):
    """A member of a Kafka consumer group.

    While it runs, its lag (per topic: high-water mark minus position, summed over the partitions
    assigned to it) is measured at most every ``lag_every`` seconds as ``getmany`` is called and
    exported as ``chatmq_bus_consumer_lag``.
    """

    lag_every = 1.0

    def __init__(self, bootstrap: str, group: str, topics: list[str], client_id: str, prefix: str = "") -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self.group = group
        self.topics = topics
        self._client_id = client_id
        self._consumer: Any = None
        self._lags: dict[str, int] = {}
        self._lag_due = 0.0
        self._unlist: Callable[[], None] | None = None

    async def start(self) -> None:
        aiokafka = _require_aiokafka()
        self._consumer = aiokafka.AIOKafkaConsumer(
            *(self._prefix + t for t in self.topics), bootstrap_servers=self._bootstrap,
            group_id=self._prefix + self.group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
        )
        try:
            await self._consumer.start()
        except Exception as exc:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise BusError(f"cannot join group {self.group} at {self._bootstrap}: {exc}") from exc
        self._lags = dict.fromkeys(self.topics, 0)
        self._unlist = SOURCES.add(self._lag_samples)

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if self._unlist is not None:
            self._unlist()
            self._unlist = None
        if consumer is not None:
            await consumer.stop()

    def _lag_samples(self) -> list[Sample]:
        return [(CONSUMER_LAG, (topic, self.group), float(lag)) for topic, lag in self._lags.items()]

    async def _measure_lag(self) -> None:
        """High-water mark minus position of every partition assigned whose high-water mark is known."""
        consumer = self._consumer
        lags = dict.fromkeys(self.topics, 0)
        for tp in list(consumer.assignment()):
            try:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = await asyncio.wait_for(consumer.position(tp), 0.1)
            except Exception:  # reassigned meanwhile (an AssertionError in aiokafka): measured next time
                continue
            topic = tp.topic[len(self._prefix):]
            lags[topic] = lags.get(topic, 0) + max(0, highwater - position)
        self._lags = lags

    async def getmany(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        if self._consumer is None:
            raise BusClosedError("consumer is not running")
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        now = time.monotonic()
        if now >= self._lag_due and self._consumer is not None:
            self._lag_due = now + self.lag_every
            await self._measure_lag()
        out: list[Record] = []
        for tp, records in batches.items():
            topic = tp.topic[len(self._prefix):]
            out.extend(Record(topic, tp.partition, r.offset, r.key or b"", r.value or b"") for r in records)
        return out

    async def commit(self, records: list[Record]) -> None:
        if self._consumer is None:
            raise BusClosedError("consumer is stopped")
        from aiokafka.structs import OffsetAndMetadata, TopicPartition

        latest: dict[tuple[str, int], int] = {}
        for r in records:
            latest[(r.topic, r.partition)] = max(latest.get((r.topic, r.partition), -1), r.offset + 1)
        offsets = {TopicPartition(self._prefix + t, p): OffsetAndMetadata(o, "") for (t, p), o in latest.items()}
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:
            raise BusError(f"commit for group {self.group} failed: {exc}") from exc
