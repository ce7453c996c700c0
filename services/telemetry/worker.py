"""``TelemetryWorker``: device readings from ``chat.telemetry`` to InfluxDB.

Each record (``{"device", "owner", "reading", "ts"}``, see ``chatmq.core.topics``) becomes one
point: measurement ``measurement``, tags ``device`` and ``owner`` (and the process's
``extra_tags``), the reading's fields as float fields, time = the reading's ``ts`` or,
without one, the time the node received it (ms). The worker reads in batches of up to
``batch_size`` records, waiting up to ``linger`` seconds for a batch to fill, and commits
a batch on the bus only after InfluxDB accepted it (``InfluxWriter`` retries through an
outage), so no reading is lost and none blocks other consumer groups. A record that is not
a valid reading (it was validated at the node; this guards against foreign producers) or a
point InfluxDB refuses as malformed is logged and skipped. A batch written twice (processed again
after a rebalance moved its partitions) lands on the same series and times, so InfluxDB keeps one
copy of each point.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import EnvelopeError
from chatmq.core.metrics import INFLUX_POINTS
from chatmq.core.readings import validate_reading
from chatmq.core.records import TELEMETRY_RECORDS, BadRecord, TelemetryRecord
from chatmq.core.topics import TELEMETRY
from chatmq.core.worker import BusWorker
from chatmq.services.telemetry.writer import InfluxWriter, line

log = logging.getLogger(__name__)


def reading_point(record: TelemetryRecord, measurement: str,
                  extra_tags: Mapping[str, str] | None = None) -> str:
    """The point (line protocol) of one ``chat.telemetry`` record; ``ValueError`` when it is not a valid one."""
    if not record.device:
        raise ValueError("record has no device")
    try:
        valid = validate_reading(dict(record.reading), now=record.ts)
    except EnvelopeError as exc:
        raise ValueError(exc.reason) from exc
    tags = {**(extra_tags or {}), "device": record.device, "owner": record.owner or ""}
    return line(measurement, tags, valid.fields, valid.ts if valid.ts is not None else record.ts)


class TelemetryWorker(BusWorker):
    """Consumer group ``group`` on ``chat.telemetry``; see the module docstring."""

    def __init__(self, bus: Bus, writer: InfluxWriter, *, measurement: str = "telemetry", batch_size: int = 1000,
                 linger: float = 1.0, extra_tags: Mapping[str, str] | None = None, group: str = "telemetry") -> None:
        super().__init__(bus, group, [TELEMETRY])
        self._writer = writer
        self.measurement = measurement
        self.max_records = batch_size
        self.linger = linger
        self._extra_tags = dict(extra_tags or {})
        self.skipped = 0

    async def process(self, records: list[Record]) -> None:
        points: list[str] = []
        for record in records:
            try:
                points.append(reading_point(TELEMETRY_RECORDS.read(record), self.measurement, self._extra_tags))
            except (BadRecord, ValueError) as exc:
                self.skipped += 1
                INFLUX_POINTS.labels("invalid").inc()
                log.warning("skipping telemetry record %s/%d@%d: %s", record.topic, record.partition,
                            record.offset, exc)
        if points:
            result = await self._writer.write(points)
            self.skipped += result.rejected
