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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from chatmq.auth import TokenService
from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.authenticator import Authenticator
from chatmq.bus.kafka import KafkaBus
from chatmq.components import BrokerNode, BusTopics, Component, HttpServer, Stack
from chatmq.services.api.app import create_app
from chatmq.services.connections import ConnectionFollower
from chatmq.services.control import BusSessionControl, ControlWorker
from chatmq.services.group_router import GroupRouter
from chatmq.services.notices import BusNotifier, NoticeWorker
from chatmq.services.outlet import Outlet
from chatmq.services.router import Router
from chatmq.services.sessions import ConnectionTable, StoreRegistry
from chatmq.services.storage import ReplayService
from chatmq.services.store.mongo import MongoStore
from chatmq.settings import Settings
from chatmq.topics import topic_specs


class _Cluster:
    """What every part opens: the Kafka bus and the MongoDB store."""

    def __init__(self, settings: Settings, part: str) -> None:
        kafka, mongo = settings.require_cluster(part)
        self.settings = settings
        self.bus = KafkaBus(kafka, replication_factor=settings.kafka_replication, prefix=settings.kafka_prefix,
                            client_id=f"chatmq-{part}")
        self.store = MongoStore(mongo, settings.mongo_db)
        self.registry = StoreRegistry(self.store)
        self.outlet = Outlet(self.bus, self.registry, self.store)

    def base(self, nodes: list[str] | None = None) -> list[Component]:
        """The store, then the bus with the topics declared (and ``chat.deliver.<node>`` of ``nodes``)."""
        return [self.store, BusTopics(self.bus, topic_specs(self.settings.bus_partitions, nodes or []))]

    def tokens(self) -> TokenService:
        s = self.settings
        return TokenService(s.signing_key(), s.access_token_ttl, s.refresh_token_ttl)


def broker_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "broker")
    gateway = NodeGateway(c.bus, settings.node, settings.max_payload, cluster=True)
    node = BrokerNode(settings, Authenticator(c.store, c.tokens()), gateway)
    return Stack(f"node {settings.node}", [*c.base([settings.node]), gateway,
                                           ControlWorker(c.bus, settings.node, node), node])


def router_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "router")
    return Stack("router", [*c.base(), Router(c.bus, c.store, c.outlet)])


def group_router_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "group-router")
    return Stack("group-router", [*c.base(), GroupRouter(c.bus, c.store, c.outlet)])


def storage_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "storage")
    return Stack("storage", [*c.base(), ReplayService(c.bus, c.store, c.registry, settings.replay_batch),
                             NoticeWorker(c.bus, c.outlet)])


def api_part(settings: Settings) -> Stack:
    c = _Cluster(settings, "api")
    table = ConnectionTable()
    # a group of its own, read from the start: every API copy sees every connection
    follower = ConnectionFollower(c.bus, table, group=f"api.{uuid.uuid4().hex[:12]}")
    control = BusSessionControl(c.bus, table, c.registry)
    app = create_app(c.store, c.tokens(), BusNotifier(c.bus), control=control)
    return Stack("api", [*c.base(), follower, HttpServer(app, settings.host, settings.http_port)])


PARTS: dict[str, Callable[[Settings], Stack]] = {
    "broker": broker_part,
    "router": router_part,
    "group-router": group_router_part,
    "storage": storage_part,
    "api": api_part,
}
