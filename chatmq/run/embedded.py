"""The embedded mode: one process with a broker node, the routers, storage and the REST API,
joined by the in-process bus, storing in SQLite under ``data_dir``."""

from __future__ import annotations

import logging

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.authenticator import Authenticator
from chatmq.broker.node import ChatBroker
from chatmq.core.auth import TokenService
from chatmq.core.bus.memory import MemoryBus
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
from chatmq.services.registry.processes import ProcessFollower, ProcessTable
from chatmq.services.registry.sessions import Connection, ConnectionTable, SessionRegistry
from chatmq.services.store.sqlite import SQLiteStore
from chatmq.services.telemetry.wiring import influx_components

log = logging.getLogger("chatmq")


class _LocalControl:
    """``SessionControl`` for the one node of the embedded server."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._server = server

    def sessions(self) -> list[Connection]:
        return self._server.connections.all()

    async def kick(self, client_id: str) -> bool:
        return await self._server.node.kick(client_id)

    async def kick_principal(self, principal_id: str) -> int:
        return await self._server.node.kick_principal(principal_id)

    async def online_users(self) -> int:
        return await self._server.registry.online_count()


class EmbeddedServer(Stack):
    """Every part in one process; ``start()`` brings them up in dependency order, ``stop()`` in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.store = SQLiteStore(s.data_dir / "chatmq.db")
        self.bus = MemoryBus(default_partitions=s.bus_partitions)
        self.tokens = TokenService(s.signing_key(), s.access_token_ttl, s.refresh_token_ttl,
                                   s.refresh_reuse_grace)
        self.registry = SessionRegistry()
        self.connections = ConnectionTable()
        self.outlet = Outlet(self.bus, self.registry, self.store, PushPublisher.from_settings(self.bus, s))
        self.push = push_worker(self.bus, self.store, s)  # None unless push_provider is set
        self.gateway = NodeGateway(self.bus, s.node, s.max_payload, telemetry=s.influx_url is not None)
        self.workers: list[Component] = [
            ReplayService(self.bus, self.store, self.registry, s.replay_batch),
            Router(self.bus, self.store, self.outlet),
            GroupRouter(self.bus, self.store, self.outlet),
            NoticeWorker(self.bus, self.outlet),
            ConnectionFollower(self.bus, self.connections),
            *([self.push] if self.push is not None else []),
            self.gateway,
        ]
        # InfluxDB writer, telemetry worker and metrics reporter, when influx_url is set
        self.influx = influx_components(s, process="serve", node=s.node, bus=self.bus)
        if not self.influx:
            log.info("influx_url is unset: device readings are checked and then dropped; metrics only on /metrics")
        self.node = BrokerNode(s, Authenticator(self.store, self.tokens), self.gateway)
        app = create_app(self.store, self.tokens, BusNotifier(self.bus), control=_LocalControl(self),
                         auth_limits=AuthLimits.of(s), trusted_proxies=s.trusted_proxies,
                         max_body=s.max_request_body)
        self.http = HttpServer(app, s.host, s.http_port)
        self.processes = ProcessTable()
        super().__init__("chatmq", [
            _Prebound(self.http), self.store, BusTopics(self.bus, topic_specs(s.bus_partitions, [s.node])),
            *self.workers, *self.influx, self.node, self.http,
            ProcessFollower(self.bus, self.processes), PendingSampler(self.store, s.heartbeat_interval),
        ])
        operate(self, s, self.bus, "embedded", app=app, http_port=lambda: self.http.port, processes=self.processes)

    @property
    def broker(self) -> ChatBroker | None:
        return self.node.broker


class _Prebound:
    """Takes the HTTP port first, so a taken port fails before anything else starts."""

    def __init__(self, http: HttpServer) -> None:
        self._http = http

    async def start(self) -> None:
        self._http.bind()

    async def stop(self) -> None:
        """The HTTP server closes the socket."""
