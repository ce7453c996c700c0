"""A plain MQTT broker node (``chatmq broker --allow-anonymous``): anonymous access, no chat logic,
chatmq's delivery path (``NodeBroker``). Used by the benchmarks and the conformance tests."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from amqtt.contexts import Action, ListenerConfig
from amqtt.session import Session

from chatmq.broker.admission import ConnectionPolicy
from chatmq.broker.base import NodeBroker
from chatmq.broker.node import TlsListeners, listeners_config
from chatmq.broker.outbox import DeliveryLimits
from chatmq.core.settings import Settings
from chatmq.core.tls import ServerTls

log = logging.getLogger("chatmq")


class PlainBroker(NodeBroker):
    """Every client may connect, publish, subscribe and receive anything; sessions are kept for
    anonymous clients as for any other."""

    checks_publish = False

    def __init__(self, host: str, mqtt_port: int, ws_port: int | None = None,
                 limits: DeliveryLimits | None = None, tls: TlsListeners | None = None,
                 policy: ConnectionPolicy | None = None) -> None:
        super().__init__({"listeners": listeners_config(host, mqtt_port, ws_port, tls), "plugins": {}}, limits,
                         None if tls is None else tls.contexts, policy)

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        return True

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        """Everything is allowed (amqtt's version asked its topic plugins, of which there are none)."""
        return True


async def run_plain_broker(host: str, port: int, ws_port: int | None = None, settings: Settings | None = None,
                           tls: ServerTls | None = None) -> None:
    """Serve anonymous MQTT on ``host:port`` (and WebSocket on ``ws_port`` when given) until
    SIGINT/SIGTERM, with the delivery limits and connection policy of ``settings`` (else the defaults;
    no per-address bounds: its benchmarks open thousands of connections from one address). With ``tls``
    (and ``settings``) also MQTT over TLS on ``mqtts_port`` and secure WebSocket on ``wss_port`` when
    ``ws_port`` is given; SIGHUP reloads the certificate."""
    listeners = None
    if tls is not None and settings is not None:
        listeners = TlsListeners(tls, settings.mqtts_port, settings.wss_port if ws_port is not None else None,
                                 only=settings.tls_only)
    broker = PlainBroker(host, port, ws_port, DeliveryLimits.from_settings(settings) if settings else None, listeners,
                         ConnectionPolicy.from_settings(settings, per_address=False) if settings else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if listeners is not None:
        loop.add_signal_handler(signal.SIGHUP, listeners.contexts.reload)
    await broker.start()
    gc.freeze()  # what start-up made lives as long as the process: keep it out of every full collection
    urls = [f"mqtt://{host}:{port}", *([f"ws://{host}:{ws_port}"] if ws_port is not None else [])]
    if listeners is not None:
        secure = [f"mqtts://{host}:{listeners.mqtts_port}",
                  *([f"wss://{host}:{listeners.wss_port}"] if listeners.wss_port is not None else [])]
        urls = secure if listeners.only else urls + secure
    for url in urls:
        log.info("plain MQTT broker listening on %s (anonymous)", url)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
