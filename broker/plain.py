"""A plain MQTT broker node (``chatmq broker --allow-anonymous``): amqtt with anonymous access and no
chat logic, for benchmarks and conformance tests."""

from __future__ import annotations

import asyncio
import logging
import signal

from amqtt.broker import Broker

from chatmq.broker.node import listeners_config

log = logging.getLogger("chatmq")


async def run_plain_broker(host: str, port: int) -> None:
    """Serve anonymous MQTT on ``host:port`` until SIGINT/SIGTERM."""
    broker = Broker({
        "listeners": listeners_config(host, port, None),
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    log.info("plain MQTT broker listening on mqtt://%s:%d (anonymous)", host, port)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
