"""``LocalCluster`` without starting it: settings it needs, its plan of parts, the nginx configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatmq.core.errors import ConfigError
from chatmq.core.settings import Settings
from chatmq.run.cluster import CLUSTER_CONFIG, LocalCluster


def settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"kafka_bootstrap": "127.0.0.1:9092", "mongo_url": "mongodb://127.0.0.1:1",
                                 "jwt_secret": "s" * 40, "data_dir": tmp_path}
    values.update(overrides)
    return Settings.load(CLUSTER_CONFIG, **values)


def test_the_cluster_needs_kafka_and_mongodb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATMQ_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CHATMQ_MONGO_URL", raising=False)
    s = Settings.load(CLUSTER_CONFIG, data_dir=tmp_path, kafka_bootstrap="", mongo_url="")
    with pytest.raises(ConfigError, match=r"kafka_bootstrap \(CHATMQ_KAFKA_BOOTSTRAP\) and mongo_url"):
        LocalCluster(s, data_dir=tmp_path)


def test_the_plan_and_the_nginx_configuration(tmp_path: Path) -> None:
    cluster = LocalCluster(settings(tmp_path), data_dir=tmp_path, nodes=3, routers=2, apis=2, mqtt_port=11883,
                           ws_port=18083, http_port=18000)
    plan = {p.name: p for p in cluster._plan()}
    assert list(plan) == ["storage", "router-1", "router-2", "group-router-1", "n1", "n2", "n3", "api-1", "api-2"]
    assert plan["n2"].args[:3] == ["broker", "--node", "n2"]
    env = plan["router-1"].env
    assert env["CHATMQ_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert env["CHATMQ_JWT_SECRET"] == "s" * 40  # one token key for every part
    assert env["CHATMQ_CONFIG"] == str(CLUSTER_CONFIG)
    # every part its name in the process list and its /metrics, /healthz, /readyz: the API on its own port
    assert {name: p.env["CHATMQ_INSTANCE"] for name, p in plan.items()} == {name: name for name in plan}
    assert all(p.env["CHATMQ_OPS_PORT"] == str(p.ports["ops"]) for p in plan.values())
    assert plan["api-1"].ports["ops"] == plan["api-1"].ports["http"]

    cluster.parts = plan
    assert cluster.ops_urls()["router-2"] == f"http://127.0.0.1:{plan['router-2'].ports['ops']}"
    conf = cluster.render_nginx()
    assert not re.search(r"^[^#]*\{\{", conf, re.MULTILINE)  # every value filled in
    assert "listen 127.0.0.1:11883" in conf
    for node in ("n1", "n2", "n3"):
        assert f"server 127.0.0.1:{plan[node].ports['mqtt']} " in conf
        assert f"server 127.0.0.1:{plan[node].ports['ws']} " in conf
    assert f"server 127.0.0.1:{plan['api-2'].ports['http']} " in conf
    assert "ngx_stream_module.so" in conf


def test_parts_see_extra_settings_under_the_clusters_own(tmp_path: Path) -> None:
    cluster = LocalCluster(settings(tmp_path), data_dir=tmp_path,
                           env={"CHATMQ_RATE_LIMIT_PER_SEC": "5000", "CHATMQ_KAFKA_BOOTSTRAP": "elsewhere:1"})
    env = cluster._plan()[0].env
    assert env["CHATMQ_RATE_LIMIT_PER_SEC"] == "5000"
    assert env["CHATMQ_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
