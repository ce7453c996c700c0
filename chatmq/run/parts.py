"""The parts of a cluster, each run as its own process (``chatmq broker --node n1``, ``chatmq router``, …).

Every part connects to Kafka (``kafka_bootstrap``, topics and groups under ``kafka_prefix``)
and MongoDB (``mongo_url``/``mongo_db``), declares the topics it uses, and runs its workers
in consumer groups, so running more copies of a part shares its partitions among them.
The session registry lives in MongoDB (``StoreRegistry``): shared by every copy and kept
across restarts.

| part | runs |
|---|---|
| ``broker`` | one broker node (``--node``): MQTT listeners, its bridge to Kafka (``NodeGateway``), operator commands |
| ``router`` | 1:1 messages and receipts (``chat.outbox``) |
| ``group-router`` | group messages (``chat.group-outbox``) |
| ``storage`` | presence → registry and offline replay; notices (group events) to users |
| ``api`` | the REST API, with session control over ``chat.control`` |
| ``telemetry`` | device readings (``chat.telemetry``) to InfluxDB (needs ``influx_url``) |
| ``push`` | push notifications for offline users (``chat.push``) through FCM or a webhook (``push_provider``) |

With ``influx_url`` set, every part also writes its metrics to InfluxDB on an interval (``MetricsReporter``).
Every part serves ``/metrics``, ``/healthz`` and ``/readyz`` (on ``ops_port``; the API on its REST port) and
announces itself on ``chat.heartbeats`` (``_Cluster.stack``, ``chatmq.run.ops.operate``); the storage part also
counts the pending messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi import FastAPI

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.authenticator import Authenticator
from chatmq.core.auth import TokenService
from chatmq.core.bus.kafka import KafkaBus
from chatmq.core.errors import ConfigError
from chatmq.core.lifecycle import BusTopics, Component, Stack
from chatmq.core.settings import Settings
from chatmq.core.topics import topic_specs
from chatmq.run.components import BrokerNode, HttpServer
from chatmq.run.ops import PendingSampler, operate
from chatmq.services.api.app import create_app
from chatmq.services.api.ratelimit import AuthLimits
from chatmq.services.chat.group_router import GroupRouter
from chatmq.services.chat.notices import BusNotifier, NoticeWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.chat.router import Router
from chatmq.services.chat.storage import ReplayService
from chatmq.services.push import push_worker
from chatmq.services.push.publisher import PushPublisher
from chatmq.services.registry.connections import ConnectionFollower
from chatmq.services.registry.control import BusSessionControl, ControlWorker
from chatmq.services.registry.processes import ProcessFollower, ProcessTable
from chatmq.services.registry.sessions import ConnectionTable, StoreRegistry
from chatmq.services.store.mongo import MongoStore
from chatmq.services.telemetry.wiring import influx_components


class _Cluster:
    """What every part opens: the Kafka bus and the MongoDB store."""

    def __init__(self, settings: Settings, part: str) -> None:
        kafka, mongo = settings.require_cluster(part)
        self.settings = settings
        self.part = part
        self.bus = KafkaBus(kafka, replication_factor=settings.kafka_replication, prefix=settings.kafka_prefix,
                            client_id=f"chatmq-{part}")
        self.store = MongoStore(mongo, settings.mongo_db)
        self.registry = StoreRegistry(self.store)
        self.outlet = Outlet(self.bus, self.registry, self.store, PushPublisher.from_settings(self.bus, settings))
        # InfluxDB (when influx_url is set): every part's metrics reporter, and the readings of ``telemetry``
        self.influx = influx_components(settings, process=part, node=settings.node if part == "broker" else None,
                                        bus=self.bus if part == "telemetry" else None)

    def base(self, nodes: list[str] | None = None) -> list[Component]:
        """The store, then the bus with the topics declared (and ``chat.deliver.<node>`` of ``nodes``), then
        the InfluxDB components (``influx_components``)."""
        return [self.store, BusTopics(self.bus, topic_specs(self.settings.bus_partitions, nodes or [])),
                *self.influx]

    def stack(self, name: str, components: list[Component], *, app: FastAPI | None = None,
              http: HttpServer | None = None, processes: ProcessTable | None = None) -> Stack:
        """The part's ``Stack`` made operable (``chatmq.run.ops.operate``): ``/metrics``, ``/healthz``,
        ``/readyz`` on ``http`` serving ``app`` (the API) or else on an ops server (``ops_port``), and
        heartbeats on ``chat.heartbeats``."""
        port = None if http is None else (lambda: http.port)
        return operate(Stack(name, components), self.settings, self.bus, self.part, app=app, http_port=port,
                       processes=processes)

    def tokens(self) -> TokenService:
        s = self.settings
        return TokenService(s.signing_key(), s.access_token_ttl, s.refresh_token_ttl,
                            s.refresh_reuse_grace)


def broker_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "broker")
    gateway = NodeGateway(c.bus, settings.node, settings.max_payload, cluster=True)
    node = BrokerNode(settings, Authenticator(c.store, c.tokens()), gateway)
    return c.stack(f"node {settings.node}", [*c.base([settings.node]), gateway,
                                             ControlWorker(c.bus, settings.node, node), node])


def router_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "router")
    return c.stack("router", [*c.base(), Router(c.bus, c.store, c.outlet)])


def group_router_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "group-router")
    return c.stack("group-router", [*c.base(), GroupRouter(c.bus, c.store, c.outlet)])


def storage_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "storage")
    return c.stack("storage", [*c.base(), ReplayService(c.bus, c.store, c.registry, settings.replay_batch),
                               NoticeWorker(c.bus, c.outlet), PendingSampler(c.store, settings.heartbeat_interval)])


def api_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "api")
    table = ConnectionTable()
    # a group of its own, read from the start: every API copy sees every connection
    follower = ConnectionFollower(c.bus, table, group=f"api.{uuid.uuid4().hex[:12]}")
    control = BusSessionControl(c.bus, table, c.registry)
    app = create_app(c.store, c.tokens(), BusNotifier(c.bus), control=control,
                     auth_limits=AuthLimits.of(settings), trusted_proxies=settings.trusted_proxies,
                     max_body=settings.max_request_body)
    processes = ProcessTable()
    http = HttpServer(app, settings.host, settings.http_port)
    return c.stack("api", [*c.base(), follower, ProcessFollower(c.bus, processes, group=f"{follower.group}.processes"),
                           http], app=app, http=http, processes=processes)


def push_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "push")
    worker = push_worker(c.bus, c.store, settings)
    if worker is None:
        raise ConfigError("chatmq push sends push notifications: set push_provider (CHATMQ_PUSH_PROVIDER) "
                          "to fcm or webhook, with its settings")
    return c.stack("push", [*c.base(), worker])


def telemetry_part(settings: Settings) -> Stack:
    if not settings.influx_url:
        raise ConfigError("chatmq telemetry writes device readings to InfluxDB: set influx_url (CHATMQ_INFLUX_URL)")
    c = _Cluster(settings, "telemetry")
    return c.stack("telemetry", c.base())  # the writer and the TelemetryWorker come with the InfluxDB components


PARTS: dict[str, Callable[[Settings], Stack]] = {
    "broker": broker_part,
    "router": router_part,
    "group-router": group_router_part,
    "storage": storage_part,
    "api": api_part,
    "push": push_part,
    "telemetry": telemetry_part,
}
