"""``MetricsReporter``: every sample of a Prometheus registry to InfluxDB points, on an interval."""

from __future__ import annotations

import os
import socket

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric

from chatmq.services.telemetry.reporter import MetricsReporter, process_tags, registry_points
from chatmq.services.telemetry.writer import InfluxWriter
from tests.unit.chat_fixtures import eventually
from tests.unit.fake_influx import FakeInflux

TS = 1_800_000_000_000


def sample_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    pushes = Counter("chatmq_push_results_total", "push results", ["provider", "result"], registry=registry)
    pushes.labels("fcm", "sent").inc(3)
    Gauge("chatmq_connections", "live connections", ["node"], registry=registry).labels("n1").set(7)
    Histogram("chatmq_delivery_latency_seconds", "latency", buckets=[0.1], registry=registry).observe(0.05)
    Gauge("chatmq_broken", "not a number", registry=registry).set(float("nan"))
    return registry


def test_process_tags() -> None:
    assert process_tags("router", extra={"deployment": "prod"}) == {
        "deployment": "prod", "process": "router", "instance": f"router@{socket.gethostname()}:{os.getpid()}"}
    assert process_tags("broker", "n2", instance="n2")["node"] == "n2"
    assert process_tags("broker", "n2", instance="n2")["instance"] == "n2"


def test_each_sample_is_a_point_named_like_its_prometheus_sample() -> None:
    lines = registry_points(sample_registry(), {"process": "serve", "node": "n0"}, TS)
    assert sorted(lines) == sorted([
        f"chatmq_push_results,node=n0,process=serve,provider=fcm,result=sent total=3 {TS}",
        # the metric's own label wins over the process tag of the same name
        f"chatmq_connections,node=n1,process=serve value=7 {TS}",
        f"chatmq_delivery_latency_seconds,le=0.1,node=n0,process=serve bucket=1 {TS}",
        f"chatmq_delivery_latency_seconds,le=+Inf,node=n0,process=serve bucket=1 {TS}",
        f"chatmq_delivery_latency_seconds,node=n0,process=serve count=1 {TS}",
        f"chatmq_delivery_latency_seconds,node=n0,process=serve sum=0.05 {TS}",
    ])  # no *_created samples, no NaN


async def test_reports_on_an_interval_and_once_more_at_stop(influx: FakeInflux) -> None:
    registry = sample_registry()
    gauge = Gauge("chatmq_queue", "pending", registry=registry)
    async with InfluxWriter(influx.url, token=None, org="o", bucket="b") as writer:
        reporter = MetricsReporter(writer, {"process": "test"}, interval=0.1, registry=registry)
        await reporter.start()

        async def twice() -> bool:
            return reporter.reports >= 2
        await eventually(twice, 5)
        gauge.set(42)
        await reporter.stop()
    assert any(line.startswith("chatmq_queue,process=test value=42 ") for line in influx.requests[-1].lines)
    assert all(len(r.lines) == len(influx.requests[0].lines) for r in influx.requests)


async def test_a_snapshot_influxdb_does_not_take_in_one_interval_is_dropped(influx: FakeInflux) -> None:
    influx.outage = 10_000
    async with InfluxWriter(influx.url, token=None, org="o", bucket="b", min_backoff=0.01,
                            max_backoff=0.02) as writer:
        reporter = MetricsReporter(writer, {"process": "test"}, interval=0.1, registry=sample_registry())
        assert not await reporter.report()
        assert reporter.dropped == 1
        influx.outage = 0
        assert await reporter.report()
    assert len(influx.accepted) == 6


class _Flaky:
    """A collector that raises on its first collection."""

    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> list[Metric]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("broken collector")
        return []


async def test_a_collector_that_raises_does_not_end_the_reporting(
    influx: FakeInflux, caplog: pytest.LogCaptureFixture
) -> None:
    registry = sample_registry()
    registry.register(_Flaky())
    async with InfluxWriter(influx.url, token=None, org="o", bucket="b") as writer:
        reporter = MetricsReporter(writer, {"process": "test"}, interval=0.05, registry=registry)
        with caplog.at_level("ERROR"):
            await reporter.start()

            async def reported() -> bool:
                return reporter.reports >= 1
            await eventually(reported, 5)
            await reporter.stop()
    assert "collecting or writing the metrics failed" in caplog.text
    assert influx.accepted
