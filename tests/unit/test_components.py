"""``Stack``: components start in order, stop in reverse; a failed start stops what started."""

from __future__ import annotations

import socket

import pytest

from chatmq.components import HttpServer, Stack
from chatmq.errors import ChatMQError


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
