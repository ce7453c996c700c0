"""The Helm chart deploy/helm/chatmq, rendered with its two values files (the defaults and
ci/production-values.yaml) and parsed: every part, probes, resources, secrets, pinned images."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    CHART,
    PRODUCTION_VALUES,
    REPO,
    Manifest,
    helm_run,
    of_kind,
    render,
    render_error,
)

pytestmark = pytest.mark.deploy

CORE_PARTS = {"broker", "router", "group-router", "storage", "api"}
ALL_PARTS = CORE_PARTS | {"push", "telemetry"}
BUS_CONSUMERS = {"router", "group-router", "storage", "push", "telemetry"}


def workloads(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Deployments and StatefulSets by part (their app.kubernetes.io/component label)."""
    return {m["metadata"]["labels"]["app.kubernetes.io/component"]: m
            for m in manifests if m["kind"] in ("Deployment", "StatefulSet")}


def container(workload: Manifest) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def default(helm: Path) -> list[Manifest]:
    return render(helm)


@pytest.fixture(scope="module")
def production(helm: Path) -> list[Manifest]:
    return render(helm, "-f", str(PRODUCTION_VALUES))


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION_VALUES)]], ids=["default", "production"])
def test_helm_lint_passes_strict(helm: Path, values: list[str]) -> None:
    done = helm_run(helm, "lint", "--strict", "--kube-version", "1.30.0", str(CHART), *values)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_default_values_run_the_core_parts_and_production_every_part(
        default: list[Manifest], production: list[Manifest]) -> None:
    assert set(workloads(default)) == CORE_PARTS  # push and telemetry only when configured
    assert set(workloads(production)) == ALL_PARTS
    assert workloads(production)["broker"]["kind"] == "StatefulSet"
    for part, w in workloads(production).items():
        assert container(w)["args"] == [part]


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_part_has_probes_resources_and_a_read_only_root(
        which: str, default: list[Manifest], production: list[Manifest]) -> None:
    manifests = default if which == "default" else production
    for part, w in workloads(manifests).items():
        c = container(w)
        port = "http" if part == "api" else "ops"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}, part
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, part
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", part
        assert port in {p["name"] for p in c["ports"]}, part
        assert c["resources"]["requests"]["cpu"], part
        assert c["resources"]["requests"]["memory"], part
        assert c["resources"]["limits"]["memory"], part
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, part
        assert w["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, part
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/var/lib/chatmq", "/tmp", "/etc/chatmq/cluster.toml"} <= mounts, part
        notes = w["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true", part
        assert notes["prometheus.io/path"] == "/metrics", part
        assert notes["prometheus.io/port"] == str(8000 if part == "api" else 9100), part


def test_images_are_pinned(default: list[Manifest], production: list[Manifest]) -> None:
    for w in workloads(default).values():
        image = container(w)["image"]
        name, _, tag = image.rpartition(":")
        assert name, image
        assert tag not in ("", "latest"), image
    for w in workloads(production).values():
        assert "@sha256:" in container(w)["image"]


def test_an_unpinned_image_is_refused(helm: Path) -> None:
    assert "image.tag must pin a version" in render_error(helm, "--set", "image.tag=latest")


def test_the_config_map_is_config_cluster_toml(default: list[Manifest]) -> None:
    config = of_kind(default, "ConfigMap")["chatmq-config"]
    assert config["data"]["cluster.toml"].strip() == (REPO / "config" / "cluster.toml").read_text().strip()


def test_no_secret_value_lands_in_a_config_map(helm: Path) -> None:
    jwt, password, token = "jwt-sentinel-" + "j" * 32, "mongo-sentinel-pw", "influx-sentinel-token"
    manifests = render(helm, "--set", f"secrets.jwtSecret={jwt}",
                       "--set", f"mongo.url=mongodb://chatmq:{password}@mongo:27017",
                       "--set", f"secrets.influxToken={token}", "--set", "telemetry.influxUrl=http://vm:8428")
    for config in of_kind(manifests, "ConfigMap").values():
        text = str(config["data"])
        for sentinel in (jwt, password, token):
            assert sentinel not in text
    secret = of_kind(manifests, "Secret")["chatmq-secrets"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded["CHATMQ_JWT_SECRET"] == jwt
    assert password in decoded["CHATMQ_MONGO_URL"]
    assert decoded["CHATMQ_INFLUX_TOKEN"] == token
    for w in workloads(manifests).values():
        refs = container(w)["envFrom"]
        assert {"secretRef": {"name": "chatmq-secrets"}} in refs


def test_a_secret_setting_in_plain_settings_is_refused(helm: Path) -> None:
    assert "looks secret" in render_error(helm, "--set", "settings.jwt_secret=" + "x" * 40)


def test_an_existing_secret_replaces_the_chart_secret(production: list[Manifest]) -> None:
    assert of_kind(production, "Secret") == {}
    for w in workloads(production).values():
        assert {"secretRef": {"name": "chatmq-prod-secrets"}} in container(w)["envFrom"]


def test_tls_and_fcm_credentials_come_from_secrets(production: list[Manifest]) -> None:
    parts = workloads(production)
    for part in ("broker", "api"):
        spec = parts[part]["spec"]["template"]["spec"]
        assert {"name": "tls", "secret": {"secretName": "chatmq-tls"}} in spec["volumes"]
        env = {e["name"]: e.get("value") for e in container(parts[part])["env"]}
        assert env["CHATMQ_TLS_CERT"] == "/etc/chatmq/tls/tls.crt"
    push = parts["push"]
    assert {"name": "fcm", "secret": {"secretName": "chatmq-fcm"}} in push["spec"]["template"]["spec"]["volumes"]
    mounts = {m["name"]: m["mountPath"] for m in container(push)["volumeMounts"]}
    assert mounts["fcm"] == "/etc/chatmq/fcm"
    env = of_kind(production, "ConfigMap")["chatmq-env"]["data"]
    assert env["CHATMQ_FCM_CREDENTIALS"] == "/etc/chatmq/fcm/credentials.json"


def test_services_for_mqtt_websocket_and_https(production: list[Manifest]) -> None:
    services = of_kind(production, "Service")
    ports = {name: {p["name"]: p["port"] for p in s["spec"]["ports"]} for name, s in services.items()}
    assert ports["chatmq-mqtt"] == {"mqtt": 1883, "mqtts": 8883}
    assert ports["chatmq-ws"] == {"ws": 8083, "wss": 8084}
    assert ports["chatmq-https"] == {"http": 8000, "https": 8443}
    assert services["chatmq-mqtt"]["spec"]["selector"]["app.kubernetes.io/component"] == "broker"
    assert services["chatmq-https"]["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_autoscalers_cap_bus_consumers_at_the_partition_count(production: list[Manifest]) -> None:
    hpas = of_kind(production, "HorizontalPodAutoscaler")
    by_part = {h["spec"]["scaleTargetRef"]["name"].removeprefix("chatmq-"): h["spec"] for h in hpas.values()}
    assert by_part["router"]["maxReplicas"] == 24  # asked for 48, busPartitions is 24
    assert by_part["group-router"]["maxReplicas"] == 24
    assert by_part["broker"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert set(by_part) <= ALL_PARTS
    pdbs = of_kind(production, "PodDisruptionBudget")
    assert {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for p in pdbs.values()} == ALL_PARTS


def test_external_kafka_and_mongodb_only(production: list[Manifest]) -> None:
    env = of_kind(production, "ConfigMap")["chatmq-env"]["data"]
    assert env["CHATMQ_KAFKA_BOOTSTRAP"].startswith("kafka-0.kafka:9092")
    assert env["CHATMQ_BUS_PARTITIONS"] == "24"
    images = {container(w)["image"].split("@")[0] for w in workloads(production).values()}
    assert images == {"registry.example.com/chatmq/chatmq"}  # no bundled database image


def pod_environment(manifests: list[Manifest], workload: Manifest, secret: dict[str, str]) -> dict[str, str]:
    """The CHATMQ_* environment a part's container gets: its ConfigMap and Secret, then its own env."""
    configs = of_kind(manifests, "ConfigMap")
    env: dict[str, str] = {}
    for ref in container(workload)["envFrom"]:
        if "configMapRef" in ref:
            env.update(configs[ref["configMapRef"]["name"]]["data"])
        else:
            env.update(secret)
    for item in container(workload)["env"]:
        env[item["name"]] = item.get("value", workload["metadata"]["name"] + "-0")  # fieldRef: the pod name
    return env


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_part_loads_its_rendered_settings(
        which: str, default: list[Manifest], production: list[Manifest],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's cluster.toml and the CHATMQ_* environment are settings chatmq accepts."""
    from chatmq.core.settings import Settings

    manifests = default if which == "default" else production
    if which == "default":
        secret = {k: base64.b64decode(v).decode()
                  for k, v in of_kind(manifests, "Secret")["chatmq-secrets"]["data"].items()}
    else:  # what the operator's existingSecret holds
        secret = {"CHATMQ_JWT_SECRET": "s" * 48, "CHATMQ_MONGO_URL": "mongodb://u:p@mongo:27017"}
    toml = tmp_path / "cluster.toml"
    toml.write_text(of_kind(manifests, "ConfigMap")["chatmq-config"]["data"]["cluster.toml"])
    for part, w in workloads(manifests).items():
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("CHATMQ_")]:
                m.delenv(key)
            env = pod_environment(manifests, w, secret)
            assert env.pop("CHATMQ_CONFIG") == "/etc/chatmq/cluster.toml"
            for key, value in env.items():
                m.setenv(key, value)
            settings = Settings.load(toml)
        assert settings.host == "0.0.0.0", part
        assert (settings.ops_port, settings.http_port) == (9100, 8000), part
        assert settings.require_cluster(part) == (env["CHATMQ_KAFKA_BOOTSTRAP"], secret["CHATMQ_MONGO_URL"])
        assert settings.signing_key() == secret["CHATMQ_JWT_SECRET"]
        assert str(settings.data_dir) == "/var/lib/chatmq"
        if part == "broker":
            assert settings.node == "chatmq-broker-0"
        assert settings.tls == (which == "production" and part in ("broker", "api")), part
