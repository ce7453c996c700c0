"""Components of the run layer: ``HttpServer`` serves a FastAPI app with uvicorn; ``BrokerNode``
runs a ``ChatBroker`` with its gateway. The ``Component``/``Stack`` lifecycle is ``chatmq.core.lifecycle``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator

import uvicorn
from amqtt.errors import BrokerError
from fastapi import FastAPI

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.admission import ConnectionPolicy, Refusal
from chatmq.broker.authenticator import Authenticator
from chatmq.broker.close_reason import CloseReason
from chatmq.broker.identity import Identity, principal_identity
from chatmq.broker.node import ChatBroker, TlsListeners
from chatmq.broker.outbox import DeliveryLimits
from chatmq.core.errors import ChatMQError
from chatmq.core.metrics import (
    BROKER_DELIVERED,
    BROKER_DISCONNECTS,
    BROKER_DROPPED,
    BROKER_INFLIGHT,
    BROKER_QUEUED,
    BROKER_QUEUED_BYTES,
    BROKER_REFUSED,
    BROKER_SLOW,
    CONNECTIONS,
    SOURCES,
    Sample,
)
from chatmq.core.settings import Settings
from chatmq.core.tls import ServerTls
from chatmq.services.registry.sessions import ConnectionTable

log = logging.getLogger("chatmq")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serves ``app`` on ``host:port`` (HTTPS with ``tls``, a context reloaded in place on SIGHUP).
    ``bind()`` may be called early so a taken port fails first."""

    def __init__(self, app: FastAPI, host: str, port: int, what: str = "REST API", path: str = "/api/v1",
                 tls: ssl.SSLContext | None = None) -> None:
        self._what, self._host, self._port, self._path = what, host, port, path
        self._tls = tls
        # proxy_headers off: the REST API trusts X-Forwarded-For only from its own trusted_proxies
        self._server = _Uvicorn(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                               access_log=False, proxy_headers=False))
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    def bind(self) -> None:
        """Take the port now (port 0: a free one, then ``port`` says which); ``ChatMQError`` naming the
        address when it is taken."""
        if self._socket is None:
            try:
                self._socket = socket.create_server((self._host, self._port), reuse_port=False)
            except OSError as exc:
                raise ChatMQError(f"{self._what} cannot listen on {self._host}:{self._port}: "
                                  f"{exc.strerror or exc}") from exc
            self._port = int(self._socket.getsockname()[1])

    @property
    def port(self) -> int:
        """The port served (the one chosen once ``bind()`` took a free port for 0)."""
        return self._port

    async def check(self) -> None:
        if self._task is None or self._task.done() or not self._server.started:
            raise ChatMQError(f"{self._what} is not serving")

    @property
    def scheme(self) -> str:
        return "http" if self._tls is None else "https"

    async def start(self) -> None:
        self.bind()
        assert self._socket is not None
        config = self._server.config
        if not config.loaded:
            config.load()
        config.ssl = self._tls  # uvicorn's own context would come from files it never reloads
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="http")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise ChatMQError(f"{self._what} could not start on {self._host}:{self._port}")
            await asyncio.sleep(0.02)
        log.info("%s listening on %s://%s:%d%s", self._what, self.scheme, self._host, self._port, self._path)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def http_servers(app: FastAPI, settings: Settings, tls: ServerTls | None) -> list[HttpServer]:
    """The servers of the REST API and web client: HTTP on ``http_port`` (unless ``tls_only``), and HTTPS on
    ``https_port`` with ``tls``."""
    servers = [] if settings.tls_only else [HttpServer(app, settings.host, settings.http_port)]
    if tls is not None:
        servers.append(HttpServer(app, settings.host, settings.https_port, what="REST API (HTTPS)", tls=tls.web))
    return servers


class BrokerNode:
    """The MQTT listeners of one node: a ``ChatBroker`` feeding ``gateway``.

    On start the gateway announces the node (so registries forget who was on it before a
    restart), then the listeners open.
    """

    def __init__(self, settings: Settings, authenticator: Authenticator, gateway: NodeGateway,
                 tls: ServerTls | None = None, connections: ConnectionTable | None = None) -> None:
        """``connections``: in a cluster, the live connections of every node (``chat.connections``), so
        that a CONNECT with a client id another principal holds on another node is refused here."""
        self._settings = settings
        self._authenticator = authenticator
        self._gateway = gateway
        self._tls = tls
        self._connections = connections
        self.broker: ChatBroker | None = None  # amqtt needs a running loop: made in start()
        self._unlist: Callable[[], None] | None = None

    def _listeners(self) -> list[tuple[str, str]]:
        """``(what, URL)`` of each listener, for the log."""
        s = self._settings
        plain = [("MQTT over TCP", f"mqtt://{s.host}:{s.mqtt_port}"),
                 ("MQTT over WebSocket", f"ws://{s.host}:{s.ws_port}{s.ws_path}")]
        if self._tls is None:
            return plain
        secure = [("MQTT over TLS", f"mqtts://{s.host}:{s.mqtts_port}"),
                  ("MQTT over secure WebSocket", f"wss://{s.host}:{s.wss_port}{s.ws_path}")]
        return secure if s.tls_only else plain + secure

    async def start(self) -> None:
        s = self._settings
        await self._gateway.announce_start()
        tls = None if self._tls is None else TlsListeners(self._tls, s.mqtts_port, s.wss_port, only=s.tls_only)
        self.broker = ChatBroker(
            host=s.host, mqtt_port=s.mqtt_port, ws_port=s.ws_port, authenticator=self._authenticator,
            hooks=self._gateway, rate=s.rate_limit_per_sec, burst=s.rate_limit_burst,
            limits=DeliveryLimits.from_settings(s), tls=tls, policy=ConnectionPolicy.from_settings(s),
            elsewhere=None if self._connections is None else self._holder_elsewhere,
        )
        self._gateway.attach(self.broker)
        listeners = self._listeners()
        try:
            await self.broker.start()
        except BrokerError as exc:
            cause = exc.__cause__ or exc
            where = ", ".join(url for _what, url in listeners)
            raise ChatMQError(f"MQTT listeners ({where}): {cause}") from exc
        for what, url in listeners:
            log.info("node %s: %s listening on %s", s.node, what, url)
        self._unlist = SOURCES.add(self._samples)

    async def stop(self) -> None:
        if self._unlist is not None:
            self._unlist()
            self._unlist = None
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()

    async def check(self) -> None:
        state = "not made" if self.broker is None else self.broker.transitions.state
        if state != "started":
            raise ChatMQError(f"MQTT listeners: {state}")

    def _samples(self) -> list[Sample]:
        """The node's connections and outbox queues, read at scrape time (nothing counted per message)."""
        broker, node = self.broker, self._settings.node
        if broker is None:
            return []
        samples: list[Sample] = [(CONNECTIONS, (node, transport, kind), 0.0)
                                 for transport in ("tcp", "ws") for kind in ("user", "device")]
        samples += [(CONNECTIONS, (node, transport, kind), float(count))
                    for (transport, kind), count in broker.connection_counts().items()]
        outboxes = list(broker.router.outboxes.values())
        stats = broker.router.stats
        samples += [
            (BROKER_QUEUED, (node,), float(sum(o.queued for o in outboxes))),
            (BROKER_INFLIGHT, (node,), float(sum(len(o.inflight) for o in outboxes))),
            (BROKER_DELIVERED, (node,), float(stats.delivered)),
            (BROKER_DROPPED, (node, "qos0"), float(stats.dropped_qos0)),
            (BROKER_DROPPED, (node, "offline"), float(stats.dropped_offline)),
            (BROKER_SLOW, (node,), float(stats.slow_disconnects)),
        ]
        samples += [(BROKER_DISCONNECTS, (node, reason.value), float(broker.closes[reason])) for reason in CloseReason]
        samples += [(BROKER_REFUSED, (node, refusal.value), float(broker.refused[refusal])) for refusal in Refusal]
        samples.append((BROKER_QUEUED_BYTES, (node,), float(sum(o.queued_bytes for o in outboxes))))
        return samples

    async def kick(self, client_id: str) -> bool:
        return self.broker is not None and await self.broker.kick(client_id)

    def _holder_elsewhere(self, client_id: str) -> Identity | None:
        """Who holds ``client_id`` live on another node, as ``chat.connections`` told this node so far."""
        assert self._connections is not None
        held = self._connections.holder(client_id, other_than=self._settings.node)
        return None if held is None else principal_identity(held.kind, held.id)

    async def take_over(self, client_id: str, kind: str, principal: str) -> bool:
        claimant = principal_identity(kind, principal)
        return self.broker is not None and claimant is not None and await self.broker.take_over(client_id, claimant)

    async def kick_principal(self, principal_id: str) -> int:
        return 0 if self.broker is None else await self.broker.kick_principal(principal_id)
