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


def test_nginx_terminates_tls_with_the_same_files(tmp_path: Path) -> None:
    from tests.fakes.tls import TestCA

    files = TestCA(tmp_path / "ca").server()
    plain = LocalCluster(settings(tmp_path), data_dir=tmp_path)
    plain.parts = {p.name: p for p in plain._plan()}
    assert "ssl" not in plain.render_nginx().replace("ssl_module", "")  # no TLS unless asked for

    cluster = LocalCluster(settings(tmp_path, tls_cert=files.cert, tls_key=files.key), data_dir=tmp_path,
                           mqtt_port=11883, ws_port=18083, http_port=18000, mqtts_port=18883, wss_port=18084,
                           https_port=18443)
    plan = {p.name: p for p in cluster._plan()}
    assert plan["n1"].env["CHATMQ_TLS_CERT"] == ""  # the parts behind nginx listen plain
    cluster.parts = plan
    conf = cluster.render_nginx()
    for port in (11883, 18083, 18000):
        assert f"listen 127.0.0.1:{port} backlog=4096;" in conf
    for port in (18883, 18084, 18443):
        assert f"listen 127.0.0.1:{port} ssl backlog=4096;" in conf
    assert conf.count(f'ssl_certificate "{files.cert}";') == 3
    assert conf.count(f'ssl_certificate_key "{files.key}";') == 3
    assert cluster.api_url == "http://127.0.0.1:18000"

    only = LocalCluster(settings(tmp_path, tls_cert=files.cert, tls_key=files.key, tls_only=True), data_dir=tmp_path,
                        mqtts_port=18883, wss_port=18084, https_port=18443)
    only.parts = plan
    conf = only.render_nginx()
    assert "backlog=4096;\n" not in conf.replace("ssl backlog=4096;\n", "")  # no plain listener left
    assert only.api_url == "https://127.0.0.1:18443"
    assert only.front_ports() == [18883, 18084, 18443]


def test_a_missing_tls_file_stops_the_cluster_before_nginx(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_cert \(CHATMQ_TLS_CERT\): .* does not exist"):
        LocalCluster(settings(tmp_path, tls_cert=tmp_path / "no.crt", tls_key=tmp_path / "no.key"), data_dir=tmp_path)
