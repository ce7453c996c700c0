"""How every chatmq process is put together, in one place for both ways to run.

* The swap points, each chosen by one factory: the bus (``make_bus``: in-process ``MemoryBus`` or
  ``KafkaBus``), the store with its session registry (``make_store``/``make_registry``: SQLite with
  an in-memory registry, or MongoDB with ``StoreRegistry``); the push provider is chosen by
  ``chatmq.services.push.provider_from_settings``.
* ``PARTS``: the one list of what each part runs. ``chatmq serve`` (embedded) runs every part in one
  process over one ``Process``; a cluster process (``chatmq router`` …) runs one part over its own.

| part | runs |
|---|---|
| ``storage`` | presence → registry, offline replay, contacts told; notices (group events) to users; pending count |
| ``router`` | 1:1 messages and receipts (``chat.outbox``); devices: presence and shadows (``chat.devices``) |
| ``group-router`` | group messages (``chat.group-outbox``) |
| ``push`` | push notifications for offline users (``chat.push``) through FCM or a webhook (``push_provider``) |
| ``telemetry`` | device readings (``chat.telemetry``) to InfluxDB (needs ``influx_url``) |
| ``broker`` | one broker node (``node``): MQTT listeners, its bridge to the bus (``NodeGateway``), operator commands |
| ``api`` | the REST API: session control (``chat.control``), processes, command answers (``chat.command-results``) |
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.authenticator import Authenticator
from chatmq.core.auth import TokenService, use_hash_workers
from chatmq.core.bus.base import Bus
from chatmq.core.errors import ConfigError
from chatmq.core.lifecycle import BusTopics, Component
from chatmq.core.settings import Settings
from chatmq.core.tls import ServerTls
from chatmq.core.topics import topic_specs
from chatmq.run.components import BrokerNode, HttpServer, http_servers
from chatmq.run.ops import PendingSampler
from chatmq.services.api.app import create_app
from chatmq.services.api.ratelimit import AuthLimits
from chatmq.services.chat.devices import DeviceBook
from chatmq.services.chat.feed import BusChatFeed
from chatmq.services.chat.file_collector import FileCollector
from chatmq.services.chat.group_router import GroupRouter
from chatmq.services.chat.housekeeping import DeviceExpiry, Housekeeping
from chatmq.services.chat.notices import BusNotifier, NoticeWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.chat.presence_worker import PresenceWorker
from chatmq.services.chat.router import Router
from chatmq.services.chat.storage import ReplayService
from chatmq.services.devices.link import BusDeviceLink, CommandWaiters
from chatmq.services.devices.worker import DeviceWorker
from chatmq.services.push import push_worker
from chatmq.services.push.publisher import PushPublisher
from chatmq.services.registry.connections import ConnectionFollower
from chatmq.services.registry.control import BusSessionControl, ControlWorker
from chatmq.services.registry.processes import ProcessFollower, ProcessTable
from chatmq.services.registry.sessions import ConnectionTable, Registry, SessionRegistry, StoreRegistry
from chatmq.services.store.base import Store
from chatmq.services.store.files import FileStore
from chatmq.services.telemetry.reader import TelemetryReader
from chatmq.services.telemetry.wiring import influx_components

log = logging.getLogger("chatmq")


def make_bus(settings: Settings, *, cluster: bool, client_id: str = "chatmq") -> Bus:
    """The bus: Kafka (``kafka_bootstrap``) for a cluster part, else the in-process bus."""
    if cluster:
        from chatmq.core.bus.kafka import KafkaBus

        if not settings.kafka_bootstrap:
            raise ConfigError("a cluster part needs kafka_bootstrap (CHATMQ_KAFKA_BOOTSTRAP)")
        return KafkaBus(settings.kafka_bootstrap, replication_factor=settings.kafka_replication,
                        prefix=settings.kafka_prefix, client_id=client_id)
    from chatmq.core.bus.memory import MemoryBus

    return MemoryBus(default_partitions=settings.bus_partitions)


def make_store(settings: Settings, *, cluster: bool) -> Store:
    """The store: MongoDB (``mongo_url``/``mongo_db``) for a cluster, else SQLite in ``data_dir``."""
    if cluster:
        from chatmq.services.store.mongo import MongoStore

        if not settings.mongo_url:
            raise ConfigError("a cluster part needs mongo_url (CHATMQ_MONGO_URL)")
        return MongoStore(settings.mongo_url, settings.mongo_db)
    from chatmq.services.store.sqlite import SQLiteStore

    return SQLiteStore(settings.data_dir / "chatmq.db")


FILE_PARTS = frozenset({"storage", "router", "group-router", "api"})
"""The parts that read or write uploaded files (the store starts in their processes only)."""


def make_file_store(settings: Settings, *, cluster: bool) -> FileStore:
    """Uploaded files: MongoDB GridFS (``mongo_url``/``mongo_db``) for a cluster, else ``data_dir/files``."""
    if cluster:
        from chatmq.services.store.mongo.files import GridFSFileStore

        if not settings.mongo_url:
            raise ConfigError("a cluster part needs mongo_url (CHATMQ_MONGO_URL)")
        return GridFSFileStore(settings.mongo_url, settings.mongo_db)
    from chatmq.services.store.local_files import LocalFileStore

    return LocalFileStore(settings.data_dir / "files")


def make_registry(store: Store, *, cluster: bool) -> Registry:
    """The session registry: in the store for a cluster (shared by every router copy, kept across
    restarts), in memory in one process (the routers and the replay share it)."""
    return StoreRegistry(store) if cluster else SessionRegistry()


@dataclass
class Process:
    """What one process opens once and its parts share; the parts fill in what others use."""

    settings: Settings
    name: str
    cluster: bool
    bus: Bus
    store: Store
    registry: Registry
    tokens: TokenService
    outlet: Outlet
    files: FileStore
    processes: ProcessTable = field(default_factory=ProcessTable)
    node: BrokerNode | None = None
    gateway: NodeGateway | None = None
    connections: ConnectionTable | None = None
    app: FastAPI | None = None
    servers: list[HttpServer] = field(default_factory=list)
    tls: ServerTls | None = None
    devices: DeviceBook | None = None  # users' devices, shared by the routers and the replay of this process

    @property
    def http(self) -> HttpServer | None:
        """The REST API's first server (plain HTTP, or HTTPS with ``tls_only``), when it runs the API."""
        return self.servers[0] if self.servers else None

    @classmethod
    def open(cls, settings: Settings, name: str, *, cluster: bool) -> Process:
        if cluster:
            settings.require_cluster(name)
        s = settings
        bus = make_bus(s, cluster=cluster, client_id=f"chatmq-{name}")
        store = make_store(s, cluster=cluster)
        registry = make_registry(store, cluster=cluster)
        outlet = Outlet(bus, registry, store, PushPublisher.from_settings(bus, s))
        tokens = TokenService(s.signing_key(), s.access_token_ttl, s.refresh_token_ttl, s.refresh_reuse_grace)
        use_hash_workers(s.auth_workers)  # argon2 for REST passwords and MQTT device secrets
        sys.setswitchinterval(s.switch_interval)  # the store's thread gets the GIL in time
        process = cls(s, name, cluster, bus, store, registry, tokens, outlet, make_file_store(s, cluster=cluster))
        process.devices = DeviceBook(store)
        if name in ("serve", "broker", "api"):  # the processes with listeners
            process.tls = ServerTls.of(s)  # ConfigError naming the setting when a file is missing or does not fit
        return process

    def base(self, parts: list[str]) -> list[Component]:
        """The TLS context (reloaded on SIGHUP) when the listeners use one, the store, the bus with the
        topics declared (and the delivery topic of this process's node, if it runs one), the file store for
        the parts that read or write uploads, then the InfluxDB components (``influx_components``: the
        telemetry worker when it runs the ``telemetry`` part)."""
        s = self.settings
        node = s.node if "broker" in parts else None
        influx = influx_components(s, process=self.name, node=node, bus=self.bus if "telemetry" in parts else None)
        files = [self.files] if FILE_PARTS.intersection(parts) else []  # the parts that read or write files
        return [*([self.tls] if self.tls else []), self.store,
                BusTopics(self.bus, topic_specs(s.bus_partitions, [node] if node else [])), *files, *influx]


def _storage(p: Process) -> list[Component]:
    s = p.settings
    return [ReplayService(p.bus, p.store, p.registry, s.replay_batch, s.sync_window, p.devices,
                          s.max_devices_per_user),
            PresenceWorker(p.bus, p.store, p.registry, p.outlet),
            NoticeWorker(p.bus, p.outlet), PendingSampler(p.store, s.heartbeat_interval),
            Housekeeping([FileCollector(p.files, s.file_retention).collect,
                          DeviceExpiry(p.store, s.device_expiry_days, p.devices).expire])]


def _router(p: Process) -> list[Component]:
    return [Router(p.bus, p.store, p.outlet, p.files, edit_window=p.settings.edit_window, devices=p.devices),
            DeviceWorker(p.bus, p.store, p.outlet)]


def _group_router(p: Process) -> list[Component]:
    return [GroupRouter(p.bus, p.store, p.outlet, p.files, p.devices)]


def _push(p: Process) -> list[Component]:
    worker = push_worker(p.bus, p.store, p.settings)
    if worker is None:
        if p.cluster:
            raise ConfigError("chatmq push sends push notifications: set push_provider (CHATMQ_PUSH_PROVIDER) "
                              "to fcm or webhook, with its settings")
        return []
    return [worker]


def _telemetry(p: Process) -> list[Component]:
    """Nothing of its own: the writer and the ``TelemetryWorker`` come with ``Process.base``."""
    if p.cluster and not p.settings.influx_url:
        raise ConfigError("chatmq telemetry writes device readings to InfluxDB: set influx_url (CHATMQ_INFLUX_URL)")
    if not p.settings.influx_url:
        log.info("influx_url is unset: device readings are checked and then dropped; metrics only on /metrics")
    return []


def _broker(p: Process) -> list[Component]:
    s = p.settings
    # in a cluster every reading goes to the bus for the telemetry part; alone, only when it writes them
    p.gateway = NodeGateway(p.bus, s.node, s.envelope_limits(), cluster=p.cluster,
                            telemetry=p.cluster or s.influx_url is not None)
    # in a cluster, the live connections of every node (client ids held elsewhere are refused): a group
    # of its own, read from the start, like the API's
    table = ConnectionTable() if p.cluster else None
    followers = [] if table is None else [
        ConnectionFollower(p.bus, table, group=f"node.{s.node}.{uuid.uuid4().hex[:12]}")]
    p.node = BrokerNode(s, Authenticator(p.store, p.tokens), p.gateway, p.tls, connections=table)
    return [p.gateway, *followers, ControlWorker(p.bus, s.node, p.node), p.node]


def _api(p: Process) -> list[Component]:
    s = p.settings
    p.connections = ConnectionTable()
    # in a cluster a group of its own, read from the start: every API copy sees every connection
    group = f"api.{uuid.uuid4().hex[:12]}" if p.cluster else "connections"
    follower = ConnectionFollower(p.bus, p.connections, group=group)
    control = BusSessionControl(p.bus, p.connections, p.registry)
    waiters = CommandWaiters(p.bus, group=f"{group}.commands")
    reader = (TelemetryReader(s.telemetry_query_url, s.telemetry_measurement) if s.telemetry_query_url
              else None)
    p.app = create_app(p.store, p.tokens, BusNotifier(p.bus), control=control,
                       auth_limits=AuthLimits.of(s), trusted_proxies=s.trusted_proxies,
                       devices=BusDeviceLink(p.bus, waiters), max_body=s.max_request_body, telemetry=reader,
                       files=p.files, max_file_size=s.max_file_size, feed=BusChatFeed(p.bus),
                       phone_key=s.phone_hash_key())
    p.servers = http_servers(p.app, s, p.tls)
    return [*([reader] if reader else []), follower, ProcessFollower(p.bus, p.processes, group=f"{group}.processes"),
            waiters, *p.servers]


PARTS: dict[str, Callable[[Process], list[Component]]] = {
    "storage": _storage,
    "router": _router,
    "group-router": _group_router,
    "push": _push,
    "telemetry": _telemetry,
    "broker": _broker,
    "api": _api,
}
"""Every part, in the order one process starts them (workers before the node accepts clients, the
REST API last)."""
