"""Configuration: defaults, then a TOML file, then ``CHATMQ_*`` environment variables, then flags.

``Settings.load()`` is the one entry point. Every key of the TOML file has an
environment variable of the same name in upper case with the prefix ``CHATMQ_``
(``mqtt_port`` → ``CHATMQ_MQTT_PORT``) and, for the serving keys, a command-line flag
(``--mqtt-port``). ``config/chatmq.toml`` lists every key with its default.
"""

from __future__ import annotations

import hmac
import importlib.resources
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from chatmq.core.envelopes import EnvelopeLimits
from chatmq.core.errors import ConfigError

DEFAULT_CONFIG_FILE = Path(str(importlib.resources.files("chatmq.config").joinpath("chatmq.toml")))


class Settings(BaseSettings):
    """Every setting of a chatmq process. Field docs are the configuration reference."""

    model_config = SettingsConfigDict(env_prefix="CHATMQ_", extra="forbid", validate_default=True)

    _toml_file: ClassVar[Path | None] = None

    node: str = Field("n1", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Name of this broker node.")
    host: str = Field("127.0.0.1", description="Address every listener binds to.")
    mqtt_port: int = Field(1883, ge=0, le=65535, description="MQTT over TCP.")
    ws_port: int = Field(8083, ge=0, le=65535, description="MQTT over WebSocket (path ws_path).")
    ws_path: str = Field("/mqtt", description="Path of the MQTT-over-WebSocket endpoint.")
    http_port: int = Field(8000, ge=0, le=65535, description="REST API.")

    # TLS (README "TLS"): with tls_cert and tls_key, MQTT over TLS, secure WebSocket and HTTPS listen too
    tls_cert: Path | None = Field(None, description="PEM certificate chain of the TLS listeners (server "
                                  "certificate first); with tls_key turns on mqtts_port, wss_port and https_port.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(None, description="PEM CA certificates: the MQTT over TLS listener asks for "
                                       "a client certificate, and a device whose certificate (from this CA) names "
                                       "its id as CN may connect without its secret.")
    tls_only: bool = Field(False, description="Listen only on the TLS ports (mqtt_port, ws_port and http_port stay "
                           "closed).")
    mqtts_port: int = Field(8883, ge=0, le=65535, description="MQTT over TLS.")
    wss_port: int = Field(8084, ge=0, le=65535, description="MQTT over secure WebSocket (path ws_path).")
    https_port: int = Field(8443, ge=0, le=65535, description="REST API and web client over HTTPS.")
    data_dir: Path = Field(Path("./data"), description="Folder for the SQLite store and the token key.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    jwt_secret: str | None = Field(
        None, min_length=32, description="Token signing key; when unset one is made and kept in data_dir."
    )
    phone_hash_secret: SecretStr | None = Field(
        None, min_length=32, description="Key of the HMAC-SHA256 hashes kept of address-book phone numbers that are "
        "no user's (POST /contacts/sync); unset: derived from the token signing key.")
    access_token_ttl: int = Field(900, gt=0, description="Access token lifetime in seconds.")
    refresh_token_ttl: int = Field(30 * 24 * 3600, gt=0, description="Refresh token lifetime in seconds.")
    refresh_reuse_grace: float = Field(0.0, ge=0, le=60, description="Seconds after its first use during which a "
                                       "refresh token may be used again (for clients that cannot take turns); later "
                                       "reuse revokes the login's refresh tokens. 0 (the default): any reuse does.")

    max_payload: int = Field(64 * 1024, gt=0, description="Largest outbox payload in bytes.")
    envelope_max_depth: int = Field(32, ge=1, le=200, description="Deepest nesting of a message body "
                                    "(the body object is level 1); deeper gets invalid_envelope.")
    envelope_max_string: int = Field(32 * 1024, gt=0, description="Longest string (or key) in a message "
                                     "body, in characters; longer gets too_large.")
    envelope_max_items: int = Field(10_000, gt=0, description="Most items of one array in a message body; "
                                    "more gets too_large.")
    envelope_max_keys: int = Field(1000, gt=0, description="Most keys of one object in a message body; "
                                   "more gets too_large.")
    edit_window: int = Field(48 * 3600, ge=0, description="Seconds after sending during which the sender may "
                             "edit a message; later edits get edit_window_passed.")
    rate_limit_per_sec: float = Field(200.0, gt=0, description="Outbox publishes per second per connection.")
    rate_limit_burst: int = Field(400, gt=0, description="Outbox burst allowance per connection.")
    replay_batch: int = Field(200, gt=0, le=10_000, description="Pending messages per replay page.")
    sync_window: float = Field(7.0, ge=0, le=366, description="Days of its conversations a user's new device "
                               "(an MQTT client id it never connected with) gets on its first connect (at most "
                               "the newest 1000 messages); 0: none.")
    device_expiry_days: float = Field(30.0, ge=0, le=3660, description="Days after its latest connect when a "
                                      "user's device (MQTT client id) is forgotten, as if signed out: it keeps "
                                      "no more pending messages (checked hourly by the storage part); 0: never.")
    max_devices_per_user: int = Field(32, ge=1, le=10_000, description="Devices (MQTT client ids) kept per user: "
                                      "connecting with a new one beyond them forgets the least recently seen, "
                                      "as if signed out (a client making a random client id per connect cannot "
                                      "grow its user's devices, and the work of each connect, without bound).")
    bus_partitions: int = Field(8, gt=0, le=1024, description="Partitions per topic of the in-process bus.")
    allow_anonymous: bool = Field(False, description="Plain MQTT node with no chat logic (chatmq broker).")
    broker_queue_size: int = Field(10_000, gt=0, description="Messages queued per MQTT client beyond those in "
                                   "flight; past it QoS 0 is dropped (counted) and a QoS 1/2 subscriber is "
                                   "disconnected as too slow.")
    broker_session_expiry: float = Field(7200.0, ge=0, description="Seconds a persistent (clean session 0) "
                                         "MQTT session, its subscriptions and queued QoS 1/2 messages are kept "
                                         "after its client disconnected; 0 = forever.")
    broker_max_inflight: int = Field(100, gt=0, le=65535, description="QoS 1/2 messages sent to one MQTT client "
                                     "and not yet acknowledged.")
    broker_queue_bytes: int = Field(8 * 1024 * 1024, gt=0, description="Bytes (topics and payloads) queued per "
                                    "MQTT client beyond those in flight; past it the same policy as "
                                    "broker_queue_size.")

    # hostile clients (README "Limits"): every MQTT input bounded before it is buffered
    max_packet_size: int = Field(128 * 1024, ge=1024, le=268_435_455, description="Largest MQTT packet a client "
                                 "may send (remaining length, from the fixed header); a larger one closes the "
                                 "connection before its body is read.")
    max_keepalive: int = Field(0, ge=0, le=65535, description="MQTT 5: the longest keep alive (seconds) a client "
                               "may ask for; a longer one, or 0 (none), is replaced by this value, which the "
                               "CONNACK says (Server Keep Alive). 0: the client's keep alive stands.")
    topic_alias_maximum: int = Field(10, ge=0, le=65535, description="MQTT 5: topic aliases a client may set "
                                     "per connection (the CONNACK's Topic Alias Maximum; 0: none). A larger alias "
                                     "closes the connection (DISCONNECT 0x94).")
    receive_maximum: int = Field(1024, ge=1, le=65535, description="MQTT 5: QoS 1/2 PUBLISH packets a client "
                                 "may send the node before their PUBACK/PUBCOMP (the CONNACK's Receive Maximum). "
                                 "The node acknowledges QoS 1 as it handles them, so this bounds the QoS 2 ones "
                                 "awaiting PUBREL; one more closes the connection (DISCONNECT 0x93).")
    connect_timeout: float = Field(10.0, gt=0, le=300, description="Seconds a new MQTT connection (TCP or "
                                   "WebSocket) has to send its whole CONNECT before it is closed.")
    max_connections: int = Field(0, ge=0, description="MQTT connections a node holds at once (0: the process's "
                                 "open-file limit less 256 kept for the REST API, storage and the bus); more "
                                 "are closed before their CONNECT is read.")
    max_connections_per_address: int = Field(1000, ge=0, description="MQTT connections from one client address "
                                             "at once (0: no limit); more are closed before their CONNECT is "
                                             "read. Not applied by the plain node (--allow-anonymous).")
    connect_rate_per_address: float = Field(50.0, ge=0, description="New MQTT connections per second per client "
                                            "address (the refill rate; 0: no limit); beyond it and the burst they "
                                            "are closed at once. Not applied by the plain node.")
    connect_burst_per_address: int = Field(200, ge=1, description="New MQTT connections a client address may "
                                           "open at once.")
    sessions_per_turn: int = Field(8, ge=0, le=10_000, description="CONNECTs (once read) and ended connections a "
                                   "node takes on per turn of its event loop; more wait for a later turn, so that a "
                                   "connection storm does not stall the chat (0: no bound).")
    sessions_turn_interval: float = Field(0.002, ge=0, le=1, description="While CONNECTs or ended connections "
                                          "wait their turn (a storm), seconds until the node takes on the next "
                                          "sessions_per_turn: the loop is free in between for everything else, the "
                                          "store's thread included (0: the next turn of the loop at once).")
    auth_failure_delay: float = Field(0.5, ge=0, le=60, description="Seconds before the CONNACK refusing a "
                                      "client address's first failed MQTT login; doubled for each further "
                                      "failure from that address within a minute.")
    auth_failure_delay_max: float = Field(8.0, ge=0, le=300, description="The longest such delay, in seconds.")
    auth_workers: int = Field(2, ge=1, le=64, description="Threads that hash and check passwords and device "
                              "secrets (argon2) off the event loop, one pool for REST and MQTT; more checks wait "
                              "their turn.")
    switch_interval: float = Field(0.0005, gt=0, le=0.1, description="Python's thread switch interval in a "
                                   "chatmq process (sys.setswitchinterval, seconds): how long the event loop's "
                                   "thread may keep the GIL while the store's (or another) thread waits for it. "
                                   "Python's own is 0.005, which makes every store hand-off wait.")

    # cluster mode (config/cluster.toml): each part its own process, joined by Kafka, storing in MongoDB
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers, host:port[,host:port...].")
    kafka_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$",
                              description="Prefix of every Kafka topic and consumer group (one deployment).")
    kafka_replication: int = Field(1, ge=1, le=16, description="Replication factor of the topics chatmq creates.")
    mongo_url: str | None = Field(None, description="MongoDB connection string (mongodb://host:port).")
    mongo_db: str = Field("chatmq", pattern=r"^[A-Za-z0-9_-]{1,63}$", description="MongoDB database name.")

    # operations (README "Metrics and health"): /metrics, /healthz, /readyz on every process; heartbeats
    ops_port: int = Field(0, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz of a part without "
                          "a REST API (broker, router, ...); 0: a free port, logged and shown in the process list.")
    heartbeat_interval: float = Field(5.0, gt=0, le=300, description="Seconds between a process's heartbeats on "
                                      "chat.heartbeats (missing after 3 intervals without one); also how often the "
                                      "pending messages are counted.")
    instance: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@:-]{1,128}$", description="This process's name in "
                                 "the process list (keep it across restarts); unset: <part>@<host>:<pid>.")

    # telemetry and metrics to InfluxDB (services/telemetry): device readings and every process's metrics
    influx_url: str | None = Field(None, pattern=r"^https?://", description="InfluxDB v2 write API base URL; "
                                   "unset: readings and metrics are not written.")
    influx_token: str | None = Field(None, description="InfluxDB API token (never logged).")
    influx_org: str = Field("chatmq", min_length=1, description="InfluxDB organization.")
    influx_bucket: str = Field("chatmq", min_length=1, description="InfluxDB bucket.")
    influx_batch_size: int = Field(1000, ge=1, le=100_000, description="Points per InfluxDB write at most.")
    influx_flush_interval: float = Field(1.0, gt=0, le=60, description="Seconds a batch of readings may wait "
                                         "to fill before it is written.")
    influx_tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every point written "
                                        "(e.g. deployment).")
    telemetry_measurement: str = Field("telemetry", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                                       description="InfluxDB measurement of device readings.")
    telemetry_query_url: str | None = Field(None, pattern=r"^https?://", description="Prometheus-compatible "
                                            "query API of the store the readings go to (VictoriaMetrics: its base "
                                            "URL), for GET /devices/{id}/telemetry; unset: those answer 503.")
    metrics_interval: float = Field(10.0, ge=0.1, le=3600, description="Seconds between metrics written to "
                                    "InfluxDB.")

    # push notifications (services/push): a data message to each registered token of an offline recipient
    push_provider: Literal["none", "fcm", "webhook"] = Field(
        "none", description="Where push notifications go: none, Firebase Cloud Messaging, or a webhook.")
    fcm_credentials: Path | None = Field(None, description="Service-account JSON of the Firebase project (fcm).")
    fcm_url: str | None = Field(None, pattern=r"^https?://",
                                description="FCM v1 send URL, {0} = project id; unset: FCM's own (tests, proxies).")
    push_webhook_url: str | None = Field(None, pattern=r"^https?://",
                                         description="URL that gets each notification as a JSON POST (webhook).")
    push_webhook_secret: SecretStr | None = Field(
        None, min_length=16, description="Key of the HMAC-SHA256 signature on each webhook POST (X-Chatmq-Signature).")
    push_preview: bool = Field(False, description="Put the start of a message's text in the push (off: privacy).")
    push_preview_length: int = Field(100, ge=1, le=1000, description="Characters of text in a preview.")
    push_ttl: int = Field(86400, ge=0, le=2419200, description="Seconds a push may wait for an offline device.")
    push_group_events: bool = Field(False, description="Push group events (member added, renamed, ...) too.")
    push_max_attempts: int = Field(5, ge=1, le=20, description="Sends per token before a push is given up "
                                   "(retries on 429 and 5xx, exponential backoff, Retry-After honoured).")

    # REST rate limits of register, login and refresh (services/api/ratelimit.py): token buckets kept by each
    # API process (in a cluster each API copy counts on its own); over a limit: 429 with Retry-After
    auth_rate_per_address: float = Field(10.0, gt=0, description="Register, login and refresh requests per second "
                                         "per client address (the refill rate).")
    auth_burst_per_address: int = Field(200, ge=1, description="Such requests a client address may make at once.")
    login_rate_per_username_address: float = Field(0.1, gt=0, description="Failed logins per second per username "
                                                   "and client address (the refill rate); with none left, logins "
                                                   "of that username from that address are refused.")
    login_burst_per_username_address: int = Field(10, ge=1, description="Failed logins a username may have at once "
                                                  "from one client address.")
    login_rate_per_username: float = Field(1.0, gt=0, description="Failed logins per second per username from any "
                                           "address (the refill rate of the backstop); with none left, every login "
                                           "of that username is refused.")
    login_burst_per_username: int = Field(100, ge=1, description="Failed logins a username may have at once from "
                                          "all addresses together.")
    max_request_body: int = Field(1024 * 1024, ge=1024, le=1024 ** 3, description="Largest REST request body in "
                                  "bytes (Content-Length, or counted as it streams); larger: 413.")
    max_file_size: int = Field(25 * 1024 * 1024, ge=1024, le=1024 ** 4, description="Largest file upload "
                               "(POST /api/v1/files) in bytes, counted as it streams; larger: 413.")
    file_retention: float = Field(86_400.0, gt=0, description="Seconds an uploaded file that no message names is "
                                  "kept before it is deleted.")
    trusted_proxies: list[str] = Field(["127.0.0.1"], description="Peers (addresses or networks, '*' for any) "
                                       "whose X-Forwarded-For names the client address, e.g. nginx.")

    @field_validator("tls_cert", "tls_key", "tls_client_ca", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty value (``CHATMQ_TLS_CERT=``) turns TLS off, as when it is not given."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        """TLS needs both files; the TLS-only and client-certificate settings need TLS."""
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            raise ValueError(f"{given} is set but {missing} (CHATMQ_{missing.upper()}) is not: TLS needs both")
        if self.tls_cert is None and (self.tls_only or self.tls_client_ca is not None):
            which = "tls_only" if self.tls_only else "tls_client_ca"
            raise ValueError(f"{which} needs TLS: set tls_cert and tls_key (CHATMQ_TLS_CERT, CHATMQ_TLS_KEY)")
        return self

    @property
    def tls(self) -> bool:
        """Whether the TLS listeners are on (``tls_cert`` and ``tls_key`` set)."""
        return self.tls_cert is not None

    @model_validator(mode="after")
    def _push_target(self) -> Settings:
        """The chosen push provider has what it needs."""
        if self.push_provider == "fcm" and self.fcm_credentials is None:
            raise ValueError("push_provider = fcm needs fcm_credentials (CHATMQ_FCM_CREDENTIALS): the path of "
                             "the Firebase project's service-account JSON")
        if self.push_provider == "webhook" and not self.push_webhook_url:
            raise ValueError("push_provider = webhook needs push_webhook_url (CHATMQ_PUSH_WEBHOOK_URL)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Build the settings; ``overrides`` (flags) win over the environment, which wins over the file.

        The file is ``config_file``, else ``$CHATMQ_CONFIG``, else ``./chatmq.toml`` when it
        exists, else the packaged defaults. ``None`` overrides are ignored.
        Raises ``ConfigError`` naming the bad key and why.
        """
        path = config_file or (Path(os.environ["CHATMQ_CONFIG"]) if os.environ.get("CHATMQ_CONFIG") else None)
        if path is None and Path("chatmq.toml").is_file():
            path = Path("chatmq.toml")
        if path is not None and not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        target = path or DEFAULT_CONFIG_FILE
        try:
            with target.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {target} is not valid TOML: {exc}") from exc
        cls._toml_file = target
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid configuration ({target}): {problems}") from exc
        finally:
            cls._toml_file = None

    def require_cluster(self, part: str) -> tuple[str, str]:
        """``(kafka_bootstrap, mongo_url)`` for a cluster part; ``ConfigError`` naming what is missing."""
        kafka, mongo = self.kafka_bootstrap, self.mongo_url
        if not kafka or not mongo:
            missing = [k for k, v in (("kafka_bootstrap", kafka), ("mongo_url", mongo)) if not v]
            keys = " and ".join(f"{k} (CHATMQ_{k.upper()})" for k in missing)
            raise ConfigError(f"chatmq {part} is a cluster part: set {keys}, e.g. in config/cluster.toml "
                              "(or run everything in one process: chatmq serve)")
        return kafka, mongo

    def envelope_limits(self) -> EnvelopeLimits:
        """The bounds every outbox envelope is checked against at the edge."""
        return EnvelopeLimits(self.max_payload, self.envelope_max_depth, self.envelope_max_string,
                              self.envelope_max_items, self.envelope_max_keys)

    def phone_hash_key(self) -> bytes:
        """The key of the phone number hashes: ``phone_hash_secret``, else derived from ``signing_key()``
        (so every process of a deployment, which shares that key, hashes alike)."""
        if self.phone_hash_secret is not None:
            return self.phone_hash_secret.get_secret_value().encode()
        return hmac.digest(self.signing_key().encode(), b"chatmq phone hash key", "sha256")

    def signing_key(self) -> str:
        """The token signing key: ``jwt_secret``, else one kept in ``data_dir/jwt.secret`` (made once, mode 0600)."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt.secret"
        if path.is_file():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
