"""deploy/compose.yaml, parsed: the whole cluster (Kafka in KRaft mode, MongoDB, two broker nodes,
every part, nginx with TLS, victoria-metrics), healthchecks everywhere, pinned images, and no
secret in the file: secrets come from deploy/secrets/, which scripts/compose-secrets.sh makes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, REPO

pytestmark = pytest.mark.deploy

COMPOSE = DEPLOY / "compose.yaml"
PARTS = {"router", "group-router", "storage", "api", "push", "telemetry"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE", re.IGNORECASE)
DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    compose = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, Service] = compose["services"]
    return found


def chatmq_parts(services: dict[str, Service]) -> dict[str, Service]:
    return {name: s for name, s in services.items() if "CHATMQ_IMAGE" in str(s.get("image", ""))}


def test_the_whole_cluster_is_there(services: dict[str, Service]) -> None:
    parts = chatmq_parts(services)
    commands = {name: s["command"] for name, s in parts.items()}
    brokers = {name: c for name, c in commands.items() if c[0] == "broker"}
    assert len(brokers) == 2
    assert len({c[c.index("--node") + 1] for c in brokers.values()}) == 2  # distinct node names
    assert {c[0] for c in commands.values()} == PARTS | {"broker"}
    assert {"kafka", "mongo", "nginx", "victoria-metrics"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_every_service_has_a_healthcheck_and_parts_wait_for_their_backends(services: dict[str, Service]) -> None:
    for name, s in services.items():
        assert s["healthcheck"]["test"][0] == "CMD", name
    for name, s in chatmq_parts(services).items():
        depends = s["depends_on"]
        assert depends["kafka"] == {"condition": "service_healthy"}, name
        assert depends["mongo"] == {"condition": "service_healthy"}, name
        port = "8000" if s["command"] == ["api"] else "9100"
        assert f"127.0.0.1:{port}/healthz" in " ".join(s["healthcheck"]["test"]), name
        assert s["read_only"] is True, name
        assert s["user"] == "10001:10001", name
        assert s["stop_signal"] == "SIGTERM", name


def test_images_are_pinned(services: dict[str, Service]) -> None:
    for name, s in services.items():
        image = DEFAULTED.sub(lambda m: m.group(2), s["image"])
        repository, _, tag = image.rpartition(":")
        assert "/" in repository, name
        assert tag not in ("", "latest"), name


def test_no_secret_is_written_in_the_compose_file(services: dict[str, Service]) -> None:
    for name, s in services.items():
        for key, value in (s.get("environment") or {}).items():
            text = str(value)
            assert not (SECRET_NAME.search(key) and not text.startswith("/run/secrets/")), (name, key)
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", text), (name, key)  # no user:password@ in a URL
        for env_file in s.get("env_file", []):
            assert env_file.startswith("secrets/"), name
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignored
    nginx = services["nginx"]
    assert {t["target"] for t in nginx["secrets"]} == {"tls.crt", "tls.key"}


def test_nginx_terminates_tls_with_the_compose_secrets() -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for port in (8883, 8084, 8443):
        assert f"listen {port} ssl" in conf
    assert conf.count("ssl_certificate /run/secrets/tls.crt;") == 2  # stream and http
    for upstream in ("broker-1:1883", "broker-2:1883", "broker-1:8083", "broker-2:8083", "api:8000"):
        assert f"server {upstream} " in conf
    uploads = conf[conf.index("location = /api/v1/files {"):]
    assert "client_max_body_size 26279936;" in uploads[:uploads.index("}")]  # 25 MiB + 64 KiB of framing


def test_every_part_loads_its_settings_with_the_generated_secrets(
        services: dict[str, Service], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/compose-secrets.sh's chatmq.env, the part's environment and config/cluster.toml are
    settings chatmq accepts, with the secrets from the env file."""
    from chatmq.core.settings import Settings

    secrets = tmp_path / "secrets"
    done = subprocess.run([str(REPO / "scripts" / "compose-secrets.sh")], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "CHATMQ_SECRETS_DIR": str(secrets)})
    assert done.returncode == 0, done.stderr
    env_file = dict(line.split("=", 1) for line in (secrets / "chatmq.env").read_text().splitlines())
    mongo = dict(line.split("=", 1) for line in (secrets / "mongo.env").read_text().splitlines())
    assert mongo["MONGO_INITDB_ROOT_PASSWORD"] in env_file["CHATMQ_MONGO_URL"]
    assert (secrets / "tls.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    for name, s in chatmq_parts(services).items():
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("CHATMQ_")]:
                m.delenv(key)
            env = {k: DEFAULTED.sub(lambda x: x.group(2), str(v)) for k, v in s["environment"].items()}
            for key, value in {**env_file, **env}.items():
                m.setenv(key, value)
            settings = Settings.load(REPO / "config" / "cluster.toml")
        assert settings.require_cluster(name) == ("kafka:9092", env_file["CHATMQ_MONGO_URL"])
        assert settings.signing_key() == env_file["CHATMQ_JWT_SECRET"]
        assert settings.host == "0.0.0.0", name
        assert settings.ops_port == 9100, name
        assert env["CHATMQ_CONFIG"] == "/etc/chatmq/cluster.toml"
        assert "../config/cluster.toml:/etc/chatmq/cluster.toml:ro" in s["volumes"], name
    again = subprocess.run([str(REPO / "scripts" / "compose-secrets.sh")], capture_output=True, text=True,
                           timeout=60, check=False, env={**os.environ, "CHATMQ_SECRETS_DIR": str(secrets)})
    assert again.returncode == 0, again.stderr
    assert dict(line.split("=", 1) for line in (secrets / "chatmq.env").read_text().splitlines()) == env_file


NGINX = Path(os.environ.get("CHATMQ_NGINX", "/usr/sbin/nginx"))
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NGINX), "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                          capture_output=True, text=True, timeout=60, check=False)


def test_nginx_accepts_the_compose_configuration(tmp_path: Path) -> None:
    """``nginx -t`` of deploy/nginx/nginx.conf, with the compose hosts as 127.0.0.1, the TLS secrets
    as a throwaway pair and Debian's stream module loaded (the official image has it built in)."""
    if not NGINX.is_file() or not STREAM_MODULE.is_file():
        message = "nginx with its stream module is missing (scripts/services.sh install nginx)"
        if os.environ.get("CI") and os.environ.get("CHATMQ_SKIP_SERVICES") != "1":
            pytest.fail(message)  # scripts/test.sh installs it with the servers
        pytest.skip(message)
    secrets = tmp_path / "secrets"
    done = subprocess.run([str(REPO / "scripts" / "compose-secrets.sh")], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "CHATMQ_SECRETS_DIR": str(secrets)})
    assert done.returncode == 0, done.stderr
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for host in ("broker-1", "broker-2", "api"):
        conf = conf.replace(f"server {host}:", "server 127.0.0.1:")
    conf = (conf.replace("_temp_path /tmp/", f"_temp_path {tmp_path}/").replace("/run/secrets/", f"{secrets}/")
            .replace("/var/run/nginx.pid", f"{tmp_path}/nginx.pid"))
    local = tmp_path / "nginx.conf"
    local.write_text(f"load_module {STREAM_MODULE};\n{conf}")
    checked = nginx_test(local, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
    assert "test is successful" in checked.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(local.read_text().replace("proxy_pass chatmq_mqtt;", "proxy_pass chatmq_nowhere;"))
    refused = nginx_test(broken, tmp_path)
    assert refused.returncode != 0  # the check can fail
    assert "chatmq_nowhere" in refused.stderr
