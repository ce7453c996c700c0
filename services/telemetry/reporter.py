"""``MetricsReporter``: the process's Prometheus metrics to InfluxDB on an interval.

Every ``interval`` seconds (and once at start and once at stop) it collects every metric in
a prometheus-client registry (the default ``REGISTRY``, where ``chatmq.core.metrics`` defines
chatmq's own, so a metric added later is written with no change here) and writes one point
per sample through an ``InfluxWriter``:

* measurement = the metric family's name (``chatmq_push_results``);
* field = the sample name's suffix past the family name (``total``, ``bucket``, ``count``,
  ``sum``), or ``value`` when the sample is named as its family (gauges) — so an InfluxDB
  series (or a victoria-metrics ``<measurement>_<field>`` name) reads like the Prometheus
  sample name; ``*_created`` samples (creation times) and non-finite values are left out;
* tags = the process's tags (``process_tags``: ``process``, ``node`` where there is one,
  ``instance``, and the configured extra tags) overlaid with the sample's labels;
* time = when the registry was collected (ms).

A snapshot InfluxDB does not take within one interval is dropped (counted in ``dropped``):
the next one carries the same counters, newer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry

from chatmq.core.ids import now_ms
from chatmq.core.metrics import INFLUX_POINTS
from chatmq.core.tasks import Supervisor
from chatmq.services.telemetry.writer import InfluxWriter, WriteAbandonedError, line

log = logging.getLogger(__name__)


def process_tags(process: str, node: str | None = None, extra: Mapping[str, str] | None = None,
                 instance: str | None = None) -> dict[str, str]:
    """The tags of every metric point of this process: ``process`` (the part: ``serve``, ``broker``,
    ``router``, …), ``node`` (broker nodes and the embedded server), ``instance`` (the ``instance``
    setting, as in the process list, else ``<process>@<host>:<pid>``: it tells copies of a part
    apart) and ``extra`` (the ``influx_tags`` setting)."""
    tags = dict(extra or {})
    tags["process"] = process
    if node:
        tags["node"] = node
    tags["instance"] = instance or f"{process}@{socket.gethostname()}:{os.getpid()}"
    return tags


def registry_points(registry: CollectorRegistry, tags: Mapping[str, str], ts_ms: int) -> list[str]:
    """One point (line protocol) per sample of ``registry`` (see the module docstring)."""
    points: list[str] = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created") or not math.isfinite(sample.value):
                continue
            field = sample.name[len(family.name) + 1:] if sample.name.startswith(family.name + "_") else "value"
            points.append(line(family.name, {**tags, **sample.labels}, {field or "value": float(sample.value)}, ts_ms))
    return points


class MetricsReporter:
    """Writes ``registry`` through ``writer`` every ``interval`` seconds with ``tags``."""

    def __init__(self, writer: InfluxWriter, tags: Mapping[str, str], interval: float = 10.0,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self._writer = writer
        self.tags = dict(tags)
        self.interval = interval
        self._registry = registry
        self._tasks = Supervisor("MetricsReporter")
        self.reports = 0
        self.dropped = 0

    async def start(self) -> None:
        self._tasks.spawn(self._run(), "loop")

    async def stop(self) -> None:
        """Stop the interval; write a last snapshot (given up after a couple of seconds)."""
        await self._tasks.stop()
        await self.report(give_up_after=min(self.interval, 2.0))

    async def report(self, give_up_after: float | None = None) -> bool:
        """Collect and write one snapshot now; False when it was dropped."""
        points = registry_points(self._registry, self.tags, now_ms())
        try:
            await self._writer.write(points, give_up_after=self.interval if give_up_after is None else give_up_after)
        except WriteAbandonedError as exc:
            self.dropped += 1
            INFLUX_POINTS.labels("dropped").inc(len(points))
            log.debug("metrics snapshot dropped: %s", exc)
            return False
        self.reports += 1
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            try:
                await self.report()
            except Exception:  # a collector that raises (a bug) must not end the reporting
                log.exception("collecting or writing the metrics failed")
            await asyncio.sleep(max(0.0, due - loop.time()))
