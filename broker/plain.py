"""A plain MQTT broker node (``chatmq broker --allow-anonymous``): anonymous access, no chat logic,
chatmq's delivery path (``NodeBroker``). Used by the benchmarks and the conformance tests."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from amqtt.contexts import Action, ListenerConfig
from amqtt.session import Session

from chatmq.broker.base import NodeBroker
from chatmq.broker.node import listeners_config
from chatmq.broker.outbox import DeliveryLimits
from chatmq.core.settings import Settings

log = logging.getLogger("chatmq")


class PlainBroker(NodeBroker):
    """Every client may connect, publish, subscribe and receive anything; sessions are kept for
    anonymous clients as for any other."""

    checks_publish = False

    def __init__(self, host: str, mqtt_port: int, ws_port: int | None = None,
                 limits: DeliveryLimits | None = None) -> None:
        super().__init__({"listeners": listeners_config(host, mqtt_port, ws_port), "plugins": {}}, limits)

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        return True

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        """Everything is allowed (amqtt's version asked its topic plugins, of which there are none)."""
        return True


async def run_plain_broker(host: str, port: int, ws_port: int | None = None, settings: Settings | None = None) -> None:
    """Serve anonymous MQTT on ``host:port`` (and WebSocket on ``ws_port`` when given) until
    SIGINT/SIGTERM, with the delivery limits of ``settings`` (else the defaults)."""
    broker = PlainBroker(host, port, ws_port, DeliveryLimits.from_settings(settings) if settings else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    gc.freeze()  # what start-up made lives as long as the process: keep it out of every full collection
    log.info("plain MQTT broker listening on mqtt://%s:%d (anonymous)", host, port)
    if ws_port is not None:
        log.info("plain MQTT broker listening on ws://%s:%d (anonymous)", host, ws_port)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
