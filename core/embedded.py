"""The embedded mode: one process with a broker node, the routers, storage and the REST API,
joined by the in-process bus, storing in SQLite under ``data_dir``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from amqtt.errors import BrokerError

from chatmq.auth import TokenService
from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.authenticator import Authenticator
from chatmq.broker.node import ChatBroker
from chatmq.bus.memory import MemoryBus
from chatmq.errors import ChatMQError
from chatmq.services.api.app import create_app
from chatmq.services.connections import ConnectionFollower
from chatmq.services.group_router import GroupRouter
from chatmq.services.notices import BusNotifier, NoticeWorker
from chatmq.services.outlet import Outlet
from chatmq.services.router import Router
from chatmq.services.sessions import Connection, ConnectionTable, SessionRegistry
from chatmq.services.storage import ReplayService
from chatmq.services.store.sqlite import SQLiteStore
from chatmq.settings import Settings
from chatmq.topics import topic_specs

log = logging.getLogger("chatmq")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the embedded server owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(what: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket for ``what``; ``ChatMQError`` naming the address when it is taken."""
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise ChatMQError(f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class _LocalControl:
    """``SessionControl`` for the one node of the embedded server."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._server = server

    def sessions(self) -> list[Connection]:
        return self._server.connections.all()

    async def kick(self, client_id: str) -> bool:
        broker = self._server.broker
        return broker is not None and await broker.kick(client_id)

    async def kick_principal(self, principal_id: str) -> int:
        broker = self._server.broker
        return 0 if broker is None else await broker.kick_principal(principal_id)

    def online_users(self) -> int:
        return len(self._server.registry)


class EmbeddedServer:
    """``start()`` brings every part up in dependency order; ``stop()`` takes them down in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self.store = SQLiteStore(s.data_dir / "chatmq.db")
        self.bus = MemoryBus(default_partitions=s.bus_partitions)
        self.tokens = TokenService(s.signing_key(), s.access_token_ttl, s.refresh_token_ttl)
        self.registry = SessionRegistry()
        self.connections = ConnectionTable()
        self.outlet = Outlet(self.bus, self.registry, self.store)
        self.gateway = NodeGateway(self.bus, s.node, s.max_payload)
        self.workers = [
            ReplayService(self.bus, self.store, self.registry, s.replay_batch),
            Router(self.bus, self.store, self.outlet),
            GroupRouter(self.bus, self.store, self.outlet),
            NoticeWorker(self.bus, self.outlet),
            ConnectionFollower(self.bus, self.connections),
            self.gateway,
        ]
        self.broker: ChatBroker | None = None  # amqtt needs a running loop: made in start()
        app = create_app(self.store, self.tokens, BusNotifier(self.bus), control=_LocalControl(self))
        self._http = _Uvicorn(uvicorn.Config(
            app, host=s.host, port=s.http_port, log_level="warning", lifespan="off", access_log=False,
        ))
        self._http_task: asyncio.Task[None] | None = None
        self._http_socket: socket.socket | None = None

    async def start(self) -> None:
        """Bring everything up; on any failure stop what started and raise ``ChatMQError`` saying why."""
        try:
            await self._start()
        except Exception as exc:
            await self.stop()
            if isinstance(exc, ChatMQError):
                raise
            raise ChatMQError(f"cannot start: {exc}") from exc

    async def _start(self) -> None:
        s = self.settings
        http_socket = self._http_socket = _bind("REST API", s.host, s.http_port)
        await self.store.start()
        await self.bus.start()
        await self.bus.ensure_topics(topic_specs(s.bus_partitions, [s.node]))
        for worker in self.workers:
            await worker.start()
        self.broker = ChatBroker(
            host=s.host, mqtt_port=s.mqtt_port, ws_port=s.ws_port,
            authenticator=Authenticator(self.store, self.tokens), hooks=self.gateway,
            rate=s.rate_limit_per_sec, burst=s.rate_limit_burst,
        )
        self.gateway.attach(self.broker)
        try:
            await self.broker.start()
        except BrokerError as exc:
            cause = exc.__cause__ or exc
            raise ChatMQError(f"MQTT listeners on {s.host} (ports {s.mqtt_port}, {s.ws_port}): {cause}") from exc
        log.info("MQTT over TCP listening on mqtt://%s:%d", s.host, s.mqtt_port)
        log.info("MQTT over WebSocket listening on ws://%s:%d%s", s.host, s.ws_port, s.ws_path)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[http_socket]), name="http")
        while not self._http.started:
            if self._http_task.done():
                await self._http_task
                raise ChatMQError(f"REST API could not start on {s.host}:{s.http_port}")
            await asyncio.sleep(0.02)
        log.info("REST API listening on http://%s:%d/api/v1", s.host, s.http_port)
        log.info("data in %s; ready", s.data_dir.resolve())

    async def stop(self) -> None:
        """Stop taking connections, finish what is in flight, close the store last."""
        log.info("shutting down")
        if self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(Exception):
                await self._http_task
        if self._http_socket is not None:
            self._http_socket.close()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()
        for worker in reversed(self.workers):
            await worker.stop()
        await self.bus.stop()
        await self.store.stop()
        log.info("stopped")

    async def run_until_signalled(self) -> None:
        """Start, serve until SIGINT/SIGTERM, then stop cleanly."""
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
