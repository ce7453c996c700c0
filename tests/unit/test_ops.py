"""``chatmq.run.ops``: a part's ops endpoints, its heartbeats (read back by a ``ProcessFollower``) and the
pending-messages sampler; ``/readyz`` answers from the stack's readiness."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from chatmq.core.bus.memory import MemoryBus
from chatmq.core.errors import ChatMQError
from chatmq.core.lifecycle import BusTopics, Stack
from chatmq.core.metrics import EVENT_LOOP_LAG
from chatmq.core.settings import Settings
from chatmq.core.topics import topic_specs
from chatmq.run.components import HttpServer
from chatmq.run.ops import Heartbeat, LoopLag, PendingSampler, operate
from chatmq.services.registry.processes import ProcessFollower, ProcessTable
from chatmq.services.store.base import NewMessage
from chatmq.services.store.sqlite import SQLiteStore


class Switch:
    """A component whose readiness check fails while ``why`` is set."""

    def __init__(self) -> None:
        self.why: str | None = None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> None:
        if self.why is not None:
            raise ChatMQError(self.why)


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, ops_port=0, heartbeat_interval=0.05, **values)  # type: ignore[arg-type]


async def eventually(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_part_serves_its_ops_endpoints_and_announces_itself(tmp_path: Path) -> None:
    bus = MemoryBus()
    switch = Switch()
    stack = operate(Stack("router", [BusTopics(bus, topic_specs(2, [])), switch]), settings(tmp_path, instance="r-1"),
                    bus, "router")
    ops_server, heartbeat = stack.components[0], stack.components[-1]
    assert isinstance(ops_server, HttpServer)
    assert isinstance(heartbeat, Heartbeat)
    table = ProcessTable()
    follower = ProcessFollower(bus, table, group="ops-test")
    await stack.start()
    await follower.start()
    try:
        url = f"http://127.0.0.1:{ops_server.port}"
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["components"] == {"HttpServer": "ok", "BusTopics": "ok", "Switch": "ok",
                                                  "LoopLag": "ok", "Heartbeat": "ok"}
            metrics = await client.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "chatmq_bus_consumer_lag{" in metrics.text

            await eventually(lambda: [p.status for p in table.processes()] == ["ready"])
            (process,) = table.processes()
            assert (process.instance, process.part, process.node, process.ops_url) == ("r-1", "router", None, url)

            switch.why = "MongoDB does not answer"
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.headers["content-type"] == "application/problem+json"
            body = not_ready.json()
            assert body["status"] == 503
            assert body["ready"] is False
            assert body["detail"] == "not ready: Switch: MongoDB does not answer"
            await eventually(lambda: [p.status for p in table.processes()] == ["not_ready"])
            assert table.processes()[0].not_ready == {"Switch": "MongoDB does not answer"}
        await heartbeat.stop()  # first, as the stack stops it: a clean stop leaves the list
        await eventually(lambda: table.processes() == [])
    finally:
        await follower.stop()  # before the bus goes
        await stack.stop()


async def test_an_app_of_its_own_answers_readiness_and_lists_processes(tmp_path: Path) -> None:
    bus = MemoryBus()
    app = FastAPI()
    from chatmq.services.api import health_routes

    app.include_router(health_routes.router)
    table = ProcessTable()
    stack = operate(Stack("api", [BusTopics(bus, topic_specs(2, ["n1"]))]), settings(tmp_path), bus, "embedded",
                    app=app, http_port=lambda: 8123, processes=table)
    assert not isinstance(stack.components[0], HttpServer)  # no ops server: the app is served by the caller
    assert app.state.processes is table
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        starting = await client.get("/readyz")
        assert starting.status_code == 503
        assert starting.json()["components"] == {"BusTopics": "not started", "LoopLag": "not started",
                                                 "Heartbeat": "not started"}
        await stack.start()
        try:
            assert (await client.get("/readyz")).status_code == 200
        finally:
            await stack.stop()
    heartbeat = stack.components[-1]
    assert isinstance(heartbeat, Heartbeat)
    assert heartbeat.instance.startswith("embedded@")
    with pytest.raises(ValueError, match="http_port"):
        operate(Stack("x", []), settings(tmp_path), bus, "api", app=FastAPI())


async def test_a_heartbeat_that_cannot_be_published_is_retried(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()  # never started: every publish fails
    stack = Stack("x", [])
    heartbeat = Heartbeat(bus, stack, instance="x", part="router", node=None, host="h", ops_url=lambda: "u",
                          interval=0.02)
    await heartbeat.start()
    await asyncio.sleep(0.1)
    await heartbeat.stop()
    assert caplog.text.count("heartbeat not published") == 1  # once, not every interval
    assert "could not announce the stop" in caplog.text


async def test_the_sampler_counts_pending_messages(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.start()
    try:
        envelopes = {u: b'{"type":"message","id":"s1"}' for u in ("u2", "u3")}
        await store.accept_messages([NewMessage("s1", "c1", "u1", None, "g1", "g1", b'{"text":"x"}', 1, envelopes)])
        sampler = PendingSampler(store, 0.02)
        assert REGISTRY.get_sample_value("chatmq_pending_messages") is None  # only where it is counted
        await sampler.start()
        await eventually(lambda: REGISTRY.get_sample_value("chatmq_pending_messages") == 2.0)
        await sampler.stop()
        assert REGISTRY.get_sample_value("chatmq_pending_messages") is None
    finally:
        await store.stop()


async def test_a_stalled_event_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:

    def over(bound: str) -> float:
        samples = next(iter(EVENT_LOOP_LAG.collect())).samples
        return sum(s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf") - sum(
            s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == bound)

    before = over("0.1")
    lag = LoopLag(interval=0.01, warn_after=0.1)
    await lag.start()
    try:
        await asyncio.sleep(0.03)
        time.sleep(0.2)  # noqa: ASYNC251 (the point: the loop held up, the timer runs ~0.2 s late)
        await asyncio.sleep(0.05)
    finally:
        await lag.stop()
    assert over("0.1") - before >= 1
    assert any("event loop stalled for" in r.getMessage() for r in caplog.records)
