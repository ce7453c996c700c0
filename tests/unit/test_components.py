"""``Stack``: components start in order, stop in reverse; a failed start stops what started."""

from __future__ import annotations

import asyncio
import socket

import pytest

from chatmq.core.errors import ChatMQError
from chatmq.core.lifecycle import Readiness, Stack
from chatmq.run.components import HttpServer


class Part:
    def __init__(self, name: str, log: list[str], fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} is broken")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} will not stop")


async def test_start_in_order_stop_in_reverse() -> None:
    log: list[str] = []
    stack = Stack("demo", [Part("a", log), Part("b", log, fail_stop=True), Part("c", log)])
    await stack.start()
    await stack.stop()
    await stack.stop()  # twice is harmless
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]  # b's failure stops nothing else


async def test_a_failed_start_stops_what_started_and_says_why() -> None:
    log: list[str] = []
    stack = Stack("demo", [Part("a", log), Part("b", log, fail_start=True), Part("c", log)])
    with pytest.raises(ChatMQError, match="demo cannot start: b is broken"):
        await stack.start()
    assert log == ["start a", "stop a"]


async def test_http_server_names_a_taken_port() -> None:
    from fastapi import FastAPI

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer(FastAPI(), "127.0.0.1", port)
        with pytest.raises(ChatMQError, match=f"REST API cannot listen on 127.0.0.1:{port}"):
            server.bind()
        await server.stop()


class Checked(Part):
    """A part whose readiness check raises ``why`` (or waits ``delay`` seconds first)."""

    def __init__(self, name: str, log: list[str], why: str | None = None, delay: float = 0.0) -> None:
        super().__init__(name, log)
        self.why, self.delay = why, delay

    async def check(self) -> None:
        await asyncio.sleep(self.delay)
        if self.why is not None:
            raise ChatMQError(self.why)


async def test_readiness_names_every_component_that_is_not_ready() -> None:
    log: list[str] = []
    ok, store, slow = Checked("ok", log), Checked("store", log, why="MongoDB does not answer"), Checked("s", log,
                                                                                                        delay=5)
    stack = Stack("demo", [Part("plain", log), ok, store, slow, Part("late", log)])
    stack.check_timeout = 0.05
    before = await stack.readiness()
    assert not before.ready
    assert set(before.components.values()) == {"not started"}
    await stack.start()
    stack._started.pop()  # "late" as if still starting
    state = await stack.readiness()
    assert not state.ready
    assert state.components == {"Part": "ok", "Checked": "ok", "Checked#2": "MongoDB does not answer",
                                "Checked#3": "no answer within 0.05s", "Part#2": "not started"}
    assert state.not_ready == {"Checked#2": "MongoDB does not answer", "Checked#3": "no answer within 0.05s",
                               "Part#2": "not started"}
    store.why, slow.delay = None, 0.0
    stack._started.append(stack.components[-1])
    assert await stack.readiness() == Readiness(True, dict.fromkeys(stack.component_names(), "ok"))
    await stack.stop()


async def test_http_server_on_port_zero_says_which_port_and_is_ready_while_serving() -> None:
    from fastapi import FastAPI

    server = HttpServer(FastAPI(), "127.0.0.1", 0)
    with pytest.raises(ChatMQError, match="REST API is not serving"):
        await server.check()
    await server.start()
    try:
        assert server.port > 0
        await server.check()
        with socket.create_connection(("127.0.0.1", server.port)):
            pass
    finally:
        await server.stop()
