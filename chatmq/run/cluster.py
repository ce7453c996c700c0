"""``LocalCluster``: a development cluster on one machine (``chatmq cluster up``), also used by the tests.

It starts each part as its own ``chatmq`` process (storage, routers, group routers, broker
nodes, API copies, the push service when ``push_provider`` is set, the telemetry service when
``influx_url`` is set) against the Kafka and
MongoDB named in the settings, then nginx in front
(``config/nginx-cluster.conf`` rendered with the parts' ports). The parts listen on free
ports; clients use nginx's three ports. With ``tls_cert``/``tls_key`` set nginx also terminates TLS
on three more (MQTT over TLS, secure WebSocket, HTTPS; only those with ``tls_only``) with those
files, while the parts behind it listen plain. Logs go to ``<data_dir>/logs/<part>.log``.

Parts that die are reported, not restarted: ``kill``/``restart`` exist for fault tests.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chatmq.core.errors import ChatMQError
from chatmq.core.ports import free_port
from chatmq.core.settings import Settings
from chatmq.core.tls import ServerTls
from chatmq.services.api.files_routes import MULTIPART_SLACK

log = logging.getLogger("chatmq.run.cluster")

NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
CLUSTER_CONFIG = Path(str(importlib.resources.files("chatmq.config").joinpath("cluster.toml")))
_NGINX_TEMPLATE = importlib.resources.files("chatmq.config").joinpath("nginx-cluster.conf")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    """Send ``sig`` to ``proc`` unless it ended, wait (SIGKILL after ``timeout`` seconds); its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _abs(path: Path | None) -> str:
    """``path`` made absolute (nginx reads relative paths from its own prefix)."""
    return str(Path(path or "").resolve())


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PartProcess:
    """One ``chatmq <command>`` process of the cluster; ``name`` is unique (``n1``, ``router-2``)."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _log_from: int = 0

    def start(self) -> None:
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "chatmq.run.cli", *self.args], stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """What this run of the process logged."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as fh:
            fh.seek(self._log_from)
            return fh.read().decode(errors="replace")

    def wait_ready(self, deadline: float) -> None:
        """Until the process logged ``ready``; ``ChatMQError`` with its log when it exits or time runs out."""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ChatMQError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if " ready" in self.log():
                return
            time.sleep(0.05)
        raise ChatMQError(f"{self.name} did not become ready:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the process and wait for it (SIGKILL after ``timeout``); its exit code."""
        return None if self.proc is None else stop_process(self.proc, sig, timeout)


class LocalCluster:
    """Every part of a cluster on this machine, behind nginx on ``host``:``mqtt_port``/``ws_port``/``http_port``.

    ``settings`` names Kafka and MongoDB (``require_cluster``) and is handed to every part
    through the environment, with the token key (``settings.signing_key()``, so one shared key).
    The parts also see the caller's ``CHATMQ_*`` environment and ``env`` (other settings, such
    as limits), under the cluster's own values.
    """

    def __init__(self, settings: Settings, *, data_dir: Path, nodes: int = 2, routers: int = 1,
                 group_routers: int = 1, apis: int = 1, mqtt_port: int = 1883, ws_port: int = 8083,
                 http_port: int = 8000, config_file: Path | None = None, env: dict[str, str] | None = None,
                 mqtts_port: int = 8883, wss_port: int = 8084, https_port: int = 8443) -> None:
        settings.require_cluster("cluster up")
        if min(nodes, routers, group_routers, apis) < 1:
            raise ChatMQError("a cluster needs at least one of each part")
        self.settings = settings
        self.host = settings.host
        self.data_dir = data_dir.resolve()
        self.mqtt_port, self.ws_port, self.http_port = mqtt_port, ws_port, http_port
        self.mqtts_port, self.wss_port, self.https_port = mqtts_port, wss_port, https_port
        if settings.tls:
            ServerTls.of(settings)  # ConfigError naming the setting before nginx says something vaguer
        self._config_file = (config_file or CLUSTER_CONFIG).resolve()
        self._counts = {"nodes": nodes, "routers": routers, "group_routers": group_routers, "apis": apis}
        self._extra_env = dict(env or {})
        self.parts: dict[str, PartProcess] = {}
        self._nginx: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        if self.settings.tls_only:
            return f"https://{self.host}:{self.https_port}"
        return f"http://{self.host}:{self.http_port}"

    def front_ports(self) -> list[int]:
        """nginx's ports: the plain ones (unless ``tls_only``), then the TLS ones (with ``tls_cert``)."""
        s = self.settings
        plain = [] if s.tls_only else [self.mqtt_port, self.ws_port, self.http_port]
        return plain + ([self.mqtts_port, self.wss_port, self.https_port] if s.tls else [])

    def _env(self) -> dict[str, str]:
        s = self.settings
        values = {
            "CONFIG": str(self._config_file), "DATA_DIR": str(self.data_dir), "HOST": s.host,
            "LOG_LEVEL": s.log_level, "KAFKA_BOOTSTRAP": s.kafka_bootstrap or "", "KAFKA_PREFIX": s.kafka_prefix,
            "KAFKA_REPLICATION": str(s.kafka_replication), "MONGO_URL": s.mongo_url or "",
            "MONGO_DB": s.mongo_db, "BUS_PARTITIONS": str(s.bus_partitions), "JWT_SECRET": s.signing_key(),
            # nginx terminates TLS: the parts behind it listen plain on their own ports
            "TLS_CERT": "", "TLS_KEY": "", "TLS_CLIENT_CA": "", "TLS_ONLY": "false",
        }
        env = {**os.environ, **self._extra_env}
        env.update({f"CHATMQ_{k}": v for k, v in values.items()})
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _plan(self) -> list[PartProcess]:
        logs = self.data_dir / "logs"
        env = self._env()
        plan: list[PartProcess] = [PartProcess("storage", ["storage"], logs / "storage.log", env)]
        if env.get("CHATMQ_PUSH_PROVIDER", self.settings.push_provider) != "none":
            plan.append(PartProcess("push", ["push"], logs / "push.log", env))
        if env.get("CHATMQ_INFLUX_URL", self.settings.influx_url or ""):
            plan.append(PartProcess("telemetry", ["telemetry"], logs / "telemetry.log", env))
        for i in range(1, self._counts["routers"] + 1):
            plan.append(PartProcess(f"router-{i}", ["router"], logs / f"router-{i}.log", env))
        for i in range(1, self._counts["group_routers"] + 1):
            plan.append(PartProcess(f"group-router-{i}", ["group-router"], logs / f"group-router-{i}.log", env))
        for i in range(1, self._counts["nodes"] + 1):
            ports = {"mqtt": free_port(self.host), "ws": free_port(self.host)}
            plan.append(PartProcess(f"n{i}", ["broker", "--node", f"n{i}", "--mqtt-port", str(ports["mqtt"]),
                                              "--ws-port", str(ports["ws"])], logs / f"n{i}.log", env, ports))
        for i in range(1, self._counts["apis"] + 1):
            ports = {"http": free_port(self.host)}
            plan.append(PartProcess(f"api-{i}", ["api", "--http-port", str(ports["http"])],
                                    logs / f"api-{i}.log", env, ports))
        for part in plan:  # /metrics, /healthz, /readyz: the API's own port, else an ops port; its name in the list
            part.ports["ops"] = part.ports.get("http") or free_port(self.host)
            part.env = {**part.env, "CHATMQ_OPS_PORT": str(part.ports["ops"]), "CHATMQ_INSTANCE": part.name}
        return plan

    def ops_urls(self) -> dict[str, str]:
        """Each part's base URL of ``/metrics``, ``/healthz`` and ``/readyz``, by part name."""
        return {name: f"http://{self.host}:{part.ports['ops']}" for name, part in self.parts.items()}

    def start(self, timeout: float = 120.0) -> None:
        """Start every part and nginx, and wait until all are ready; on failure stop them and raise."""
        nginx = self._nginx_binary()  # fail before starting anything
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        for front in self.front_ports():
            if _port_open(self.host, front):
                raise ChatMQError(f"port {self.host}:{front} is taken: choose other front ports")
        deadline = time.monotonic() + timeout
        self.parts = {}
        try:
            for part in self._plan():
                self.parts[part.name] = part
                log.info("starting %s (log: %s)", part.name, part.log_path)
                part.start()
            for part in self.parts.values():
                part.wait_ready(deadline)
            self._start_nginx(nginx, deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop nginx, then the parts in reverse order of start (SIGTERM, then SIGKILL after a while)."""
        if self._nginx is not None and self._nginx.poll() is None:
            self._nginx.terminate()
            try:
                self._nginx.wait(10)
            except subprocess.TimeoutExpired:
                self._nginx.kill()
                self._nginx.wait()
        for part in reversed(list(self.parts.values())):
            part.stop()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to part ``name`` (kill -9 by default) and reap it."""
        self.parts[name].stop(sig)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start part ``name`` again (after ``kill``) on the same ports and wait until it is ready."""
        part = self.parts[name]
        part.stop()
        part.start()
        part.wait_ready(time.monotonic() + timeout)

    def reload(self) -> None:
        """Have nginx load its configuration and the TLS files again (SIGHUP): new connections get the
        new certificate, open ones stay."""
        if self._nginx is not None and self._nginx.poll() is None:
            self._nginx.send_signal(signal.SIGHUP)

    def dead_parts(self) -> list[str]:
        return [name for name, part in self.parts.items() if not part.alive()]

    # --- nginx -----------------------------------------------------------------------
    @staticmethod
    def _nginx_binary() -> str:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx is None or not NGINX_STREAM_MODULE.exists():
            raise ChatMQError("the cluster needs nginx with its stream module: scripts/services.sh install nginx "
                              "(Debian packages nginx-light and libnginx-mod-stream)")
        return nginx

    def render_nginx(self) -> str:
        """The nginx configuration for the parts started."""
        def servers(kind: str) -> str:
            return "\n".join(f"        server {self.host}:{p.ports[kind]} max_fails=1 fail_timeout=5s;"
                             for p in self.parts.values() if kind in p.ports)

        def listen(plain: int, secure: int) -> str:
            """A server block's ``listen`` lines: the plain port unless ``tls_only``, the TLS one with TLS."""
            s = self.settings
            lines = [] if s.tls_only else [f"listen {self.host}:{plain} backlog=4096;"]
            if s.tls:
                lines += [f"listen {self.host}:{secure} ssl backlog=4096;", f'ssl_certificate "{_abs(s.tls_cert)}";',
                          f'ssl_certificate_key "{_abs(s.tls_key)}";', "ssl_protocols TLSv1.2 TLSv1.3;"]
            return "\n".join(f"        {line}" for line in lines)

        prefix = self.data_dir / "nginx"
        values = {
            "stream_module": str(NGINX_STREAM_MODULE), "logs": str(self.data_dir / "logs"), "prefix": str(prefix),
            "host": self.host, "mqtt_port": str(self.mqtt_port), "ws_port": str(self.ws_port),
            "http_port": str(self.http_port), "mqtt_servers": servers("mqtt"), "ws_servers": servers("ws"),
            "api_servers": servers("http"), "mqtt_listen": listen(self.mqtt_port, self.mqtts_port),
            "ws_listen": listen(self.ws_port, self.wss_port), "http_listen": listen(self.http_port, self.https_port),
            "files_body": str(self.settings.max_file_size + MULTIPART_SLACK),
        }
        text = _NGINX_TEMPLATE.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        return text

    def _start_nginx(self, nginx: str, deadline: float) -> None:
        prefix = self.data_dir / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(self.render_nginx())
        args = [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(self.data_dir / "logs" / "nginx-error.log"),
                "-g", "daemon off;"]
        check = subprocess.run([*args[:-2], "-t", "-q"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ChatMQError(f"nginx rejects {conf}: {check.stderr.strip()}")
        with (self.data_dir / "logs" / "nginx.log").open("ab") as out:
            self._nginx = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while not _port_open(self.host, self.front_ports()[-1]):  # nginx opens them all at once
            if self._nginx.poll() is not None or time.monotonic() > deadline:
                raise ChatMQError(f"nginx did not start; see {self.data_dir / 'logs' / 'nginx-error.log'}")
            time.sleep(0.05)
        log.info("nginx in front: %s", " ".join(self.front_urls()))

    def front_urls(self) -> list[str]:
        """Where clients connect (nginx): ``mqtt://``, ``ws://``, ``http://`` and their TLS twins."""
        h, s = self.host, self.settings
        plain = [] if s.tls_only else [f"mqtt://{h}:{self.mqtt_port}", f"ws://{h}:{self.ws_port}/mqtt",
                                       f"http://{h}:{self.http_port}/api/v1"]
        return plain + ([f"mqtts://{h}:{self.mqtts_port}", f"wss://{h}:{self.wss_port}/mqtt",
                         f"https://{h}:{self.https_port}/api/v1"] if s.tls else [])
