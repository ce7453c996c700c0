"""The ``chatmq`` command: every part of chatmq runs through it."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from chatmq.core.errors import ChatMQError, ConfigError
from chatmq.core.settings import Settings
from chatmq.run.help_format import flags_without_type

flags_without_type()
app = typer.Typer(help="chatmq: chat and device messaging over MQTT.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file (default: $CHATMQ_CONFIG, "
                                                 "./chatmq.toml, then the packaged defaults).")]
HostOpt = Annotated[str | None, typer.Option(help="Address to bind [CHATMQ_HOST].")]
MqttPortOpt = Annotated[int | None, typer.Option(help="MQTT over TCP port [CHATMQ_MQTT_PORT].")]
WsPortOpt = Annotated[int | None, typer.Option(help="MQTT over WebSocket port [CHATMQ_WS_PORT].")]
HttpPortOpt = Annotated[int | None, typer.Option(help="REST API port [CHATMQ_HTTP_PORT].")]
LogLevelOpt = Annotated[str | None, typer.Option(help="debug|info|warning|error [CHATMQ_LOG_LEVEL].")]
TlsCertOpt = Annotated[Path | None, typer.Option(help="PEM certificate chain: turns on the TLS listeners, with "
                                                 "--tls-key [CHATMQ_TLS_CERT].")]
TlsKeyOpt = Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert [CHATMQ_TLS_KEY].")]
MqttsPortOpt = Annotated[int | None, typer.Option(help="MQTT over TLS port [CHATMQ_MQTTS_PORT].")]
WssPortOpt = Annotated[int | None, typer.Option(help="MQTT over secure WebSocket port [CHATMQ_WSS_PORT].")]
HttpsPortOpt = Annotated[int | None, typer.Option(help="HTTPS port of the REST API [CHATMQ_HTTPS_PORT].")]


class _BadHandshakeFilter(logging.Filter):
    """websockets logs every malformed handshake (a client's fault) as an ERROR with a traceback;
    keep one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == "opening handshake failed":
            cause = record.exc_info[1] if record.exc_info else None
            record.msg, record.args, record.exc_info, record.exc_text = (
                "rejected a bad WebSocket handshake: %s", (cause,), None, None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _NoTracebackFilter(logging.Filter):
    """Drops the traceback of one known message whose cause chatmq reports in a line of its own."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self._message = message

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == self._message:
            record.exc_info, record.exc_text = None, None
        return True


class _TransientKafkaFilter(logging.Filter):
    """aiokafka logs an ERROR each time it asks a partition leader that is still loading a new
    topic (it retries at once and succeeds): keep those at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "NotLeaderForPartitionError" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "websockets", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("websockets.server").addFilter(_BadHandshakeFilter())
    logging.getLogger("amqtt.broker").addFilter(_NoTracebackFilter("Broker startup failed"))
    logging.getLogger("aiokafka.consumer.fetcher").addFilter(_TransientKafkaFilter())


def _load(config: Path | None, **overrides: Any) -> Settings:
    try:
        return Settings.load(config, **overrides)
    except ConfigError as exc:
        typer.echo(f"chatmq: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run(coro: Any) -> None:
    try:
        import uvloop  # optional

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: HostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws_port: WsPortOpt = None,
    http_port: HttpPortOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="SQLite data folder [CHATMQ_DATA_DIR].")] = None,
    log_level: LogLevelOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    mqtts_port: MqttsPortOpt = None,
    wss_port: WssPortOpt = None,
    https_port: HttpsPortOpt = None,
) -> None:
    """Run everything in one process: broker node, routers, storage (SQLite) and the REST API.
    SIGHUP reloads the TLS certificate and key."""
    settings = _load(config, host=host, mqtt_port=mqtt_port, ws_port=ws_port, http_port=http_port,
                     data_dir=data_dir, log_level=log_level, tls_cert=tls_cert, tls_key=tls_key,
                     mqtts_port=mqtts_port, wss_port=wss_port, https_port=https_port)
    _setup_logging(settings.log_level)
    from chatmq.run.embedded import EmbeddedServer

    try:
        _run(EmbeddedServer(settings).run_until_signalled(f"data in {settings.data_dir.resolve()}; ready"))
    except (ChatMQError, OSError) as exc:
        typer.echo(f"chatmq: {exc}", err=True)
        raise typer.Exit(1) from exc


def _run_part(part: str, settings: Settings) -> None:
    """Run cluster part ``part`` until SIGINT/SIGTERM; exit 2 on bad configuration, 1 when it cannot start."""
    _setup_logging(settings.log_level)
    try:
        from chatmq.run.parts import PARTS

        stack = PARTS[part](settings)
    except ImportError as exc:
        typer.echo(f"chatmq: the cluster parts need the Kafka and MongoDB clients: "
                   f"pip install 'chatmq[cluster]' ({exc})", err=True)
        raise typer.Exit(2) from exc
    except ConfigError as exc:
        typer.echo(f"chatmq: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        _run(stack.run_until_signalled(f"{stack.name} ready"))
    except (ChatMQError, OSError) as exc:
        typer.echo(f"chatmq: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def broker(
    config: ConfigOpt = None,
    host: HostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws_port: WsPortOpt = None,
    node: Annotated[str | None, typer.Option(help="Node name in the cluster [CHATMQ_NODE].")] = None,
    allow_anonymous: Annotated[bool, typer.Option("--allow-anonymous",
                                                  help="Plain MQTT node, no chat logic.")] = False,
    log_level: LogLevelOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    mqtts_port: MqttsPortOpt = None,
    wss_port: WssPortOpt = None,
) -> None:
    """Run a broker node of a cluster (with its bridge to Kafka). With --allow-anonymous: a plain MQTT
    broker for benchmarks and conformance tests. SIGHUP reloads the TLS certificate and key."""
    settings = _load(config, host=host, mqtt_port=mqtt_port, ws_port=ws_port, node=node, log_level=log_level,
                     allow_anonymous=True if allow_anonymous else None, tls_cert=tls_cert, tls_key=tls_key,
                     mqtts_port=mqtts_port, wss_port=wss_port)
    if settings.allow_anonymous:
        _setup_logging(settings.log_level)
        from chatmq.broker.plain import run_plain_broker
        from chatmq.core.tls import ServerTls

        try:
            tls = ServerTls.of(settings)
        except ConfigError as exc:
            _fail(str(exc), 2)
        _run(run_plain_broker(settings.host, settings.mqtt_port, ws_port=ws_port, settings=settings, tls=tls))
        return
    _run_part("broker", settings)


@app.command()
def router(config: ConfigOpt = None, log_level: LogLevelOpt = None) -> None:
    """Run a router (1:1 messages and receipts) of a cluster; copies share the work."""
    _run_part("router", _load(config, log_level=log_level))


@app.command("group-router")
def group_router(config: ConfigOpt = None, log_level: LogLevelOpt = None) -> None:
    """Run a group router of a cluster; copies share the work."""
    _run_part("group-router", _load(config, log_level=log_level))


@app.command()
def storage(config: ConfigOpt = None, log_level: LogLevelOpt = None) -> None:
    """Run the storage service of a cluster: session registry, offline replay, notices."""
    _run_part("storage", _load(config, log_level=log_level))


@app.command()
def api(config: ConfigOpt = None, host: HostOpt = None, http_port: HttpPortOpt = None,
        log_level: LogLevelOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
        https_port: HttpsPortOpt = None) -> None:
    """Run the REST API of a cluster; copies behind nginx share the requests. SIGHUP reloads the TLS
    certificate and key."""
    _run_part("api", _load(config, host=host, http_port=http_port, log_level=log_level, tls_cert=tls_cert,
                           tls_key=tls_key, https_port=https_port))


@app.command()
def push(config: ConfigOpt = None, log_level: LogLevelOpt = None) -> None:
    """Run the push service of a cluster (push_provider fcm or webhook); copies share the work."""
    _run_part("push", _load(config, log_level=log_level))


@app.command()
def telemetry(config: ConfigOpt = None, log_level: LogLevelOpt = None) -> None:
    """Run the telemetry service of a cluster: device readings to InfluxDB (influx_url); copies share the work."""
    _run_part("telemetry", _load(config, log_level=log_level))


cluster_app = typer.Typer(help="A development cluster on this machine.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("up")
def cluster_up(
    config: ConfigOpt = None,
    nodes: Annotated[int, typer.Option(min=1, max=16, help="Broker nodes.")] = 2,
    routers: Annotated[int, typer.Option(min=1, max=16, help="Router copies.")] = 1,
    group_routers: Annotated[int, typer.Option(min=1, max=16, help="Group router copies.")] = 1,
    apis: Annotated[int, typer.Option(min=1, max=16, help="REST API copies.")] = 1,
    host: HostOpt = None,
    mqtt_port: Annotated[int, typer.Option(help="nginx's MQTT over TCP port.")] = 1883,
    ws_port: Annotated[int, typer.Option(help="nginx's MQTT over WebSocket port.")] = 8083,
    http_port: Annotated[int, typer.Option(help="nginx's REST API port.")] = 8000,
    mqtts_port: Annotated[int, typer.Option(help="nginx's MQTT over TLS port (with --tls-cert).")] = 8883,
    wss_port: Annotated[int, typer.Option(help="nginx's MQTT over secure WebSocket port (with --tls-cert).")] = 8084,
    https_port: Annotated[int, typer.Option(help="nginx's HTTPS port (with --tls-cert).")] = 8443,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="Logs, nginx config, token key [./cluster-data].")] = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Start a local cluster (every part its own process, nginx in front) until Ctrl-C.

    Kafka and MongoDB must be running (scripts/services.sh up kafka mongo); their addresses
    come from config/cluster.toml or CHATMQ_KAFKA_BOOTSTRAP / CHATMQ_MONGO_URL. With a TLS
    certificate nginx terminates TLS too; SIGHUP has nginx reload it.
    """
    import signal

    from chatmq.run.cluster import CLUSTER_CONFIG, LocalCluster

    settings = _load(config or CLUSTER_CONFIG, host=host, data_dir=data_dir, log_level=log_level,
                     tls_cert=tls_cert, tls_key=tls_key)
    _setup_logging(settings.log_level)
    try:
        cluster = LocalCluster(settings, data_dir=settings.data_dir, nodes=nodes, routers=routers,
                               group_routers=group_routers, apis=apis, mqtt_port=mqtt_port, ws_port=ws_port,
                               http_port=http_port, config_file=config, mqtts_port=mqtts_port, wss_port=wss_port,
                               https_port=https_port)
        cluster.start()
    except ConfigError as exc:
        typer.echo(f"chatmq: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ChatMQError as exc:
        typer.echo(f"chatmq: {exc}", err=True)
        raise typer.Exit(1) from exc
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, _frame: stopping.append(sig))
    signal.signal(signal.SIGHUP, lambda _sig, _frame: cluster.reload())
    typer.echo(f"cluster ready: {', '.join(cluster.parts)} behind nginx; logs in {cluster.data_dir / 'logs'}\n"
               f"  {'  '.join(cluster.front_urls())}\n"
               f"  /metrics, /healthz, /readyz: {', '.join(f'{n} {u}' for n, u in cluster.ops_urls().items())}\n"
               "Ctrl-C stops it.")
    reported: set[str] = set()
    try:
        while not stopping:
            for name in cluster.dead_parts():
                if name not in reported:
                    reported.add(name)
                    typer.echo(f"chatmq: part {name} exited; see {cluster.parts[name].log_path}", err=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    typer.echo("stopping the cluster")
    cluster.stop()


admin_app = typer.Typer(help="Operators' tasks.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("create")
def admin_create(
    username: Annotated[str, typer.Argument(help=r"Username: \[a-z0-9_.-]{3,32}.")],
    password: Annotated[str | None, typer.Option(
        envvar="CHATMQ_ADMIN_PASSWORD", show_envvar=True,
        help="Password (8-256 characters). Unset: asked for without echo on a terminal. A command line is "
             "visible to other users: prefer the prompt, the environment or --password-stdin.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first "
                                                 "line of standard input.")] = False,
    promote: Annotated[bool, typer.Option(help="Make an existing user an admin (their password stays).")] = False,
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="SQLite data folder [CHATMQ_DATA_DIR].")] = None,
) -> None:
    """Create the first admin (or, with --promote, make an existing user one): in MongoDB when mongo_url
    is set (a cluster: -c config/cluster.toml or CHATMQ_MONGO_URL), else in the SQLite store under data_dir."""
    from chatmq.run.admin import credential_problem, describe, ensure_admin, open_store

    settings = _load(config, data_dir=data_dir)
    if problem := credential_problem(username, "x" * 8):
        _fail(problem, 2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        if not sys.stdin.isatty():
            _fail("no password: type it at the prompt (on a terminal), or give CHATMQ_ADMIN_PASSWORD or "
                  "--password-stdin", 2)
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if problem := credential_problem(username, password):
        _fail(problem, 2)
    try:
        user_id, outcome = asyncio.run(ensure_admin(open_store(settings), username, password, promote=promote))
    except ChatMQError as exc:
        _fail(f"{exc} ({describe(settings)})", 1)
    typer.echo(f"{outcome.value} {username} ({user_id}) in {describe(settings)}")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"chatmq: {message}", err=True)
    raise typer.Exit(code)


def _mount_client() -> None:
    from chatmq.bench.bench_broker import app as bench_app
    from chatmq.bench.bench_chat import chat as bench_chat
    from chatmq.bench.bench_devices import devices as bench_devices
    from chatmq.bench.simulate import app as devices_app
    from chatmq.bench.soak import soak as bench_soak
    from chatmq.devices.cli import app as client_app
    from chatmq.devices.cli import device_command, device_shadow, jobs_app

    app.add_typer(client_app, name="client")  # its help is the client app's own
    app.add_typer(bench_app, name="bench", help="Benchmarks: the broker node against Mosquitto; chat end to end; "
                  "a soak of clients in waves; device commands and shadows.")
    bench_app.command("chat")(bench_chat)
    bench_app.command("soak")(bench_soak)
    bench_app.command("devices")(bench_devices)
    devices_app.command("command")(device_command)
    devices_app.command("shadow")(device_shadow)
    devices_app.add_typer(jobs_app, name="jobs")
    app.add_typer(devices_app, name="devices", help="Simulated users and devices that chat and publish telemetry; "
                  "commands, shadows and jobs of your devices.")


_mount_client()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
