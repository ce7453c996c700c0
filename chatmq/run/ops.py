"""What makes a process operable: ``/metrics``, ``/healthz``, ``/readyz``, heartbeats, sampled gauges.

* ``operate(stack, …)`` wires a process's ``Stack`` for operators: the HTTP app given (the REST
  API's, for the API and the embedded server; else a small ops app served on ``ops_port`` by a
  ``HttpServer`` put first in the stack) answers ``/readyz`` from ``Stack.readiness()``, and a
  ``Heartbeat``, put last, announces the process on ``chat.heartbeats``.
* ``Heartbeat`` publishes ``{instance, part, node, host, pid, ops_url, started, ready, not_ready,
  interval, ts}`` at start and every ``interval`` seconds, and ``{instance, stopped: true, ts}`` when
  it stops. A publish that fails (bus away) is logged and tried again next interval.
* ``LoopLag`` measures how late the event loop runs a timer (``chatmq_event_loop_lag_seconds``) and
  logs a lag over ``warn_after`` seconds: a stalled loop holds every client of the process.
* ``PendingSampler`` sets ``chatmq_pending_messages`` from the store every interval: run it in
  one part only (storage; the embedded server).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from fastapi import FastAPI

from chatmq.core.bus.base import Bus
from chatmq.core.ids import now_ms
from chatmq.core.lifecycle import Stack
from chatmq.core.metrics import EVENT_LOOP_LAG, PENDING_MESSAGES, SOURCES, Sample
from chatmq.core.records import Heartbeat as HeartbeatRecord
from chatmq.core.settings import Settings
from chatmq.core.tasks import cancel_and_wait
from chatmq.core.topics import HEARTBEATS
from chatmq.run.components import HttpServer
from chatmq.services.api import health_routes
from chatmq.services.registry.processes import ProcessTable
from chatmq.services.store.base import Store

log = logging.getLogger(__name__)


def reachable_host(host: str) -> str:
    """The host others should use for ``host``: the machine's name for a wildcard address."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


class Heartbeat:
    """Announces the process on ``chat.heartbeats``; the last component of ``stack``."""

    def __init__(self, bus: Bus, stack: Stack, *, instance: str, part: str, node: str | None, host: str,
                 ops_url: Callable[[], str], interval: float) -> None:
        self._bus, self._stack = bus, stack
        self._instance, self._part, self._node, self._host = instance, part, node, host
        self._ops_url = ops_url
        self.interval = interval
        self._started = now_ms()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def instance(self) -> str:
        return self._instance

    async def beat(self) -> None:
        """Publish one heartbeat with the stack's readiness now."""
        readiness = await self._stack.readiness()
        await self._publish(HeartbeatRecord(
            instance=self._instance, part=self._part, node=self._node, host=self._host, pid=os.getpid(),
            ops_url=self._ops_url(), started=self._started, ready=readiness.ready,
            not_ready=dict(readiness.not_ready), interval=self.interval, ts=now_ms()))

    async def _publish(self, record: HeartbeatRecord) -> None:
        """Put ``record`` on ``chat.heartbeats`` keyed by the instance; raises what the bus raises."""
        await self._bus.publish(HEARTBEATS, self.instance.encode(), record)

    async def start(self) -> None:
        self._started = now_ms()
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
                if self._failing:
                    log.info("heartbeats are published again")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("heartbeat not published (%s); trying again every %gs", exc, self.interval)
                self._failing = True
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        try:
            await self._publish(HeartbeatRecord.stop(self.instance, now_ms()))
        except Exception as exc:  # the bus is going away too: the process will show as missing
            log.warning("could not announce the stop on %s: %s", HEARTBEATS, exc)


class PendingSampler:
    """Exports ``chatmq_pending_messages``, counted by ``store.count_pending()`` every ``interval`` seconds
    (the last count; nothing before the first)."""

    def __init__(self, store: Store, interval: float) -> None:
        self._store, self._interval = store, interval
        self._task: asyncio.Task[None] | None = None
        self._pending: int | None = None
        self._unlist: Callable[[], None] | None = None

    async def sample(self) -> None:
        self._pending = await self._store.count_pending()

    def _samples(self) -> list[Sample]:
        return [] if self._pending is None else [(PENDING_MESSAGES, (), float(self._pending))]

    async def start(self) -> None:
        self._unlist = SOURCES.add(self._samples)
        self._task = asyncio.create_task(self._run(), name="pending-sampler")

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # the store's own readiness check reports it
                log.debug("pending messages not counted: %s", exc)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._unlist is not None:
            self._unlist()
            self._unlist = None
        task, self._task = self._task, None
        await cancel_and_wait(task)


class LoopLag:
    """Every ``interval`` seconds, how late the loop woke a sleeping task: observed in
    ``chatmq_event_loop_lag_seconds``; a lag over ``warn_after`` is logged (at most once a ``interval``)."""

    def __init__(self, interval: float = 0.1, warn_after: float = 0.25) -> None:
        self.interval, self.warn_after = interval, warn_after
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - before - self.interval)
            EVENT_LOOP_LAG.observe(lag)
            if lag > self.warn_after:
                log.warning("the event loop stalled for %.0f ms (every client of this process waited)", lag * 1000)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


def ops_app(part: str) -> FastAPI:
    """The small app of a part without a REST API: ``/metrics``, ``/healthz``, ``/readyz``."""
    app = FastAPI(title=f"chatmq {part}: operations", description="Metrics, liveness and readiness.",
                  docs_url=None, redoc_url=None)
    app.include_router(health_routes.router)
    return app


def operate(stack: Stack, settings: Settings, bus: Bus, part: str, *, app: FastAPI | None = None,
            http_port: Callable[[], int] | None = None, processes: ProcessTable | None = None,
            http_scheme: str = "http") -> Stack:
    """Wire ``stack`` for operators (see the module docstring) and return it.

    With ``app`` (served by the stack on ``http_port()``, over ``http_scheme``) the ops routes answer
    there; otherwise an ops server on ``settings.ops_port`` is put first. ``processes``, when this process follows the
    heartbeats, is what ``GET /api/v1/admin/processes`` lists. ``node`` is announced for the parts
    that are a broker node (``broker``, ``embedded``).
    """
    if app is None:
        app = ops_app(part)
        server = HttpServer(app, settings.host, settings.ops_port, what=f"{part} ops endpoints", path="/metrics")
        stack.components.insert(0, server)

        def port() -> int:
            return server.port

        http_port = port
    elif http_port is None:
        raise ValueError("operate: an app needs its http_port")
    served_port = http_port
    host = reachable_host(settings.host)
    app.state.readiness = stack.readiness
    app.state.processes = processes
    instance = settings.instance or f"{part}@{socket.gethostname()}:{os.getpid()}"
    stack.components.append(LoopLag())
    stack.components.append(Heartbeat(
        bus, stack, instance=instance, part=part, node=settings.node if part in ("broker", "embedded") else None,
        host=host, ops_url=lambda: f"{http_scheme}://{host}:{served_port()}", interval=settings.heartbeat_interval))
    return stack
