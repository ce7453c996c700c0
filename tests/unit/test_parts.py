"""The cluster parts as stacks of components (built, not started: the cluster tests start them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatmq.core.bus.kafka import KafkaBus
from chatmq.core.errors import ConfigError
from chatmq.core.lifecycle import Component, Stack
from chatmq.core.settings import Settings
from chatmq.run.cluster import CLUSTER_CONFIG
from chatmq.run.components import BrokerNode, HttpServer
from chatmq.run.ops import Heartbeat, LoopLag
from chatmq.run.parts import PARTS
from chatmq.services.registry.control import ControlWorker
from chatmq.services.store.mongo import MongoStore


def _without_ops(stack: Stack) -> list[Component]:
    """The part's own components: without the loop-lag probe and the heartbeat (last) and the ops
    endpoints' server (first, but for the API, whose own server answers them)."""
    components = stack.components
    assert isinstance(components[-1], Heartbeat), stack.name
    assert isinstance(components[-2], LoopLag), stack.name
    if stack.name == "api":
        return components[:-2]
    assert isinstance(components[0], HttpServer), stack.name
    return components[1:-2]


def test_every_part_opens_kafka_and_mongodb_first(tmp_path: Path) -> None:
    s = Settings.load(CLUSTER_CONFIG, kafka_bootstrap="127.0.0.1:1", mongo_url="mongodb://127.0.0.1:1",
                      jwt_secret="k" * 40, data_dir=tmp_path, node="n7", kafka_prefix="dev.")
    for name, build in PARTS.items():
        try:
            stack = build(s)
        except ConfigError:  # a part that needs settings of its own (push, telemetry)
            continue
        components = _without_ops(stack)
        assert isinstance(components[0], MongoStore), name
        assert type(components[1]).__name__ == "BusTopics", name
        assert all(not isinstance(c, KafkaBus) for c in stack.components), name  # the bus comes with its topics
    node = PARTS["broker"](s)
    assert node.name == "node n7"
    assert isinstance(_without_ops(node)[-1], BrokerNode)  # listeners open last, when the bridge is ready
    assert any(isinstance(c, ControlWorker) for c in node.components)
    assert isinstance(_without_ops(PARTS["api"](s))[-1], HttpServer)


def test_a_part_without_kafka_or_mongodb_says_which_setting_is_missing(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATMQ_MONGO_URL", raising=False)
    s = Settings.load(CLUSTER_CONFIG, kafka_bootstrap="127.0.0.1:1", mongo_url="", data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"chatmq router is a cluster part: set mongo_url \(CHATMQ_MONGO_URL\)"):
        PARTS["router"](s)


def test_with_influx_url_every_part_reports_metrics_and_the_telemetry_part_writes_readings(tmp_path: Path) -> None:
    from chatmq.services.telemetry.reporter import MetricsReporter
    from chatmq.services.telemetry.worker import TelemetryWorker
    from chatmq.services.telemetry.writer import InfluxWriter

    base = {"kafka_bootstrap": "127.0.0.1:1", "mongo_url": "mongodb://127.0.0.1:1", "jwt_secret": "k" * 40,
            "data_dir": tmp_path, "node": "n7"}
    without = Settings.load(CLUSTER_CONFIG, **base)
    with pytest.raises(ConfigError, match=r"chatmq telemetry .* set influx_url \(CHATMQ_INFLUX_URL\)"):
        PARTS["telemetry"](without)
    assert not any(isinstance(c, MetricsReporter) for c in PARTS["router"](without).components)

    s = Settings.load(CLUSTER_CONFIG, **base, influx_url="http://127.0.0.1:1", influx_tags={"env": "t"})
    for name, build in PARTS.items():
        try:
            stack = build(s)
        except ConfigError:  # push needs a provider
            continue
        kinds = [type(c) for c in stack.components]
        assert MetricsReporter in kinds, name
        assert kinds.index(InfluxWriter) < kinds.index(MetricsReporter), name  # the writer stops last
        reporter = next(c for c in stack.components if isinstance(c, MetricsReporter))
        assert reporter.tags["process"] == name
        assert reporter.tags["env"] == "t"
        assert ("node" in reporter.tags) == (name == "broker")
        assert (TelemetryWorker in kinds) == (name == "telemetry"), name
