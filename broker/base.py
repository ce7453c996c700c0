"""``NodeBroker``: amqtt's ``Broker`` with chatmq's session handling and delivery path.

amqtt (pinned exactly) still provides the listeners and the ``Session`` object (CONNECT and
CONNACK are ``NodeConnection``'s). From the CONNECT on, this class and its helpers replace amqtt's paths:

* connections are ``NodeConnection``s (one read loop, no task per packet), each bound to its
  session's ``Outbox`` (one batched write per turn, bounded queue, per-subscriber packet ids);
* publishes are routed by ``Router`` (subscription index, QoS downgrade, receive ACL) instead of
  ``_run_broadcast``, which scanned every filter per message;
* sessions: a clean-session CONNECT ends any session with that client id, closing its live
  connection ([MQTT-3.1.2-6], [MQTT-3.1.4-2]); a persistent CONNECT takes the session over
  (closing the old connection) and resumes its outbox, in flight first with DUP ([MQTT-4.4.0-1]).
  Persistent sessions are kept for anonymous clients too (amqtt dropped them), for
  ``DeliveryLimits.session_expiry`` seconds after their connection ended (then the session, its
  subscriptions and its queue are dropped, as Mosquitto's ``persistent_client_expiration``);
* retained messages go only to a new subscription's matching topics, through the receive ACL
  (amqtt replayed every retained message to every (re)connecting session);
* an abnormal end (no DISCONNECT, keepalive expiry, protocol error, takeover) publishes the will;
  every ended connection is counted by its ``CloseReason`` (``closes``).

Subclasses decide who may connect (``_authenticate``), publish and subscribe (``_topic_filtering``),
receive (``may_receive``), and may extend ``on_publish``/``on_subscribe``/``on_unsubscribe``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker, Server
from amqtt.contexts import Action, ListenerConfig, ListenerType
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError
from amqtt.events import BrokerEvents
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.session import Session
from amqtt.utils import gen_client_id

from chatmq.broker.close_reason import CloseReason
from chatmq.broker.connection import NodeConnection
from chatmq.broker.gc_policy import GcFreezer
from chatmq.broker.outbox import DeliveryLimits
from chatmq.broker.router import Router
from chatmq.broker.topic_index import TopicIndexError
from chatmq.broker.wire import Publish
from chatmq.core.tls import ServerTls

log = logging.getLogger(__name__)


class NodeBroker(Broker):  # type: ignore[misc]
    """A broker node whose delivery path is chatmq's (see the module docstring)."""

    checks_receive = False
    """Whether ``may_receive`` is asked per delivery (the chat node's ACL); off for the plain node."""

    checks_publish = True
    """Whether ``_topic_filtering`` is asked per PUBLISH; off for the plain node, which allows all."""

    def __init__(self, config: dict[str, Any], limits: DeliveryLimits | None = None,
                 tls: ServerTls | None = None) -> None:
        super().__init__(config)
        self.tls = tls
        """The contexts of the listeners configured with ``ssl`` (``chatmq.broker.node.listeners_config``)."""
        self.router = Router(limits, self._receive_allowed if self.checks_receive else None)
        self.closes: collections.Counter[CloseReason] = collections.Counter()
        """Connections that ended since the start, by reason."""
        self._detached: dict[str, float] = {}
        """Persistent sessions without a connection: client id → when it ended (monotonic)."""

    # --- hooks for subclasses ------------------------------------------------------
    def may_receive(self, session: Session, topic: str) -> bool:
        """Whether ``session`` may be sent a message on ``topic`` (asked when ``checks_receive``)."""
        return True

    def _receive_allowed(self, client_id: object, topic: str) -> bool:
        entry = self._sessions.get(client_id)
        return entry is not None and self.may_receive(entry[0], topic)

    async def on_publish(self, session: Session, handler: NodeConnection, message: Publish) -> bool:
        """A client's PUBLISH, in arrival order; False closes its connection (protocol error).

        Topics with ``+``, ``#`` or U+0000 close the connection ([MQTT-3.3.2-2], [MQTT-4.7.3-2]);
        ``$SYS/…`` is the broker's and is ignored; anything else the ACL allows is routed.
        """
        topic = message.topic
        if topic[:4] == "$SYS":
            return True
        if self.checks_publish and not await self._topic_filtering(session, topic, Action.PUBLISH):
            return True
        try:
            self.router.publish(topic, message.payload, message.qos, message.retain)
        except TopicIndexError:
            log.info("%s published to invalid topic %r: closing", session.client_id, topic)
            return False
        return True

    async def on_subscribe(self, session: Session, handler: NodeConnection, subscription: Subscription) -> list[int]:
        """Subscribe (ACL-checked per filter), SUBACK, then the retained messages of each new filter.
        Returns the SUBACK return codes."""
        client_id = session.client_id
        codes: list[int] = []
        granted: list[tuple[str, int]] = []
        for topic_filter, qos in subscription.topics:
            if not await self._topic_filtering(session, topic_filter, Action.SUBSCRIBE):
                codes.append(0x80)
                continue
            code = self.router.subscribe(client_id, topic_filter, qos, replay=False)
            codes.append(code)
            if code != 0x80:
                granted.append((topic_filter, code))
        await handler.mqtt_acknowledge_subscription(subscription.packet_id, codes)
        for topic_filter, qos in granted:
            self.router.replay_retained(client_id, topic_filter, qos)
        return codes

    async def on_unsubscribe(self, session: Session, handler: NodeConnection, unsubscription: UnSubscription) -> None:
        """Remove each filter exactly as given ([MQTT-3.10.4-1]), then UNSUBACK ([MQTT-3.10.4-4])."""
        for topic_filter in unsubscription.topics:
            self.router.unsubscribe(session.client_id, topic_filter)
        await handler.mqtt_acknowledge_unsubscription(unsubscription.packet_id)

    def _create_ssl_context(self, listener: ListenerConfig) -> ssl.SSLContext:
        """The context of a TLS listener (amqtt made one from files it never reloads): ``tls.mqtt`` for
        MQTT over TLS, ``tls.web`` for secure WebSocket. Reloading ``tls`` reaches new handshakes."""
        if self.tls is None:
            raise BrokerError("a TLS listener needs the node's ServerTls")
        return self.tls.mqtt if listener.type == ListenerType.TCP else self.tls.web

    # --- session lifecycle (replaces amqtt's) ----------------------------------------
    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, session = await NodeConnection.init_from_connect(reader, writer, self.plugins_manager)
        except (AMQTTError, NoDataError) as exc:
            log.info("no valid CONNECT from %s:%s: %s", remote_address, remote_port, exc)
            with contextlib.suppress(ConnectionError, OSError):
                await writer.close()  # [MQTT-4.8.0-1]; amqtt left it open
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            log.info("CONNECT refused from %s:%s: %s", remote_address, remote_port, exc)
            await writer.close()
            raise
        client_id = session.client_id or ""
        if session.clean_session:
            if client_id:
                await self._end_session(client_id)
            else:
                session.client_id = gen_client_id()  # [MQTT-3.1.3-6]
            session.parent = 0
            return handler, session
        entry = self._sessions.get(client_id)
        if entry is None or entry[0].clean_session:
            if entry is not None:
                await self._end_session(client_id)
            session.parent = 0
            return handler, session
        existing, old = entry
        if existing.transitions.is_connected():
            log.info("%s connected again: taking the session over", client_id)
            await self._close(old, CloseReason.TAKEN_OVER)
        for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain", "keep_alive",
                     "username", "password", "remote_address", "remote_port", "ssl_object"):
            setattr(existing, name, getattr(session, name))
        existing.parent = 1  # [MQTT-3.2.2-2] session present
        return handler, existing

    async def _end_session(self, client_id: str) -> None:
        """Forget ``client_id``'s session, closing its live connection first (a takeover)."""
        entry = self._sessions.pop(client_id, None)
        self._detached.pop(client_id, None)
        self.router.forget(client_id)
        if entry is not None and entry[0].transitions.is_connected():
            log.info("%s connected again: closing its previous connection", client_id)
            await self._close(entry[1], CloseReason.TAKEN_OVER)

    async def _handle_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        client_session: Session,
        handler: BrokerProtocolHandler,
        server: Server,
        listener_name: str,
    ) -> None:
        assert isinstance(handler, NodeConnection)
        client_session.ssl_object = writer.get_ssl_info()  # a client certificate may stand for a password
        authenticated = await self._authenticate(client_session, self.listeners_config[listener_name])
        client_id = client_session.client_id
        if client_session.transitions.is_connected():  # a takeover whose old connection is still closing
            client_session.transitions.disconnect()
        client_session.transitions.connect()
        handler.attach(client_session, reader, writer)
        if not authenticated:
            client_session.parent = 0
            await handler.mqtt_connack_authorize(False)
            client_session.transitions.disconnect()
            with contextlib.suppress(ConnectionError, OSError):  # the refused client may hang up first
                await writer.close()
            return
        self._sessions[client_id] = (client_session, handler)
        self._detached.pop(client_id, None)
        await self.plugins_manager.fire_event(BrokerEvents.CLIENT_CONNECTED, client_id=client_id,
                                              client_session=client_session)
        ended = handler.bind(self, self.router.outbox(client_id))
        await handler.start()
        try:
            await ended
        except asyncio.CancelledError:  # the listener is going away: end the session as a lost connection
            lost: asyncio.Future[DisconnectPacket | None] = asyncio.get_running_loop().create_future()
            lost.set_result(None)
            await self._handle_disconnect(client_session, handler, lost)
            raise
        await self._handle_disconnect(client_session, handler, ended)

    async def _handle_disconnect(
        self, client_session: Session, handler: BrokerProtocolHandler, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        """The connection ended: the will unless it sent DISCONNECT ([MQTT-3.1.2-8], [MQTT-3.1.2-10]);
        a clean session is forgotten, a persistent one keeps queueing QoS 1/2 until it returns."""
        clean_end = isinstance(disconnect_waiter.result(), DisconnectPacket)
        client_id = client_session.client_id
        if not clean_end and client_session.will_flag and client_session.will_topic:
            will = bytes(client_session.will_message or b"")
            self.router.publish(client_session.will_topic, will, client_session.will_qos or 0,
                                bool(client_session.will_retain))
        await self._stop_handler(handler)
        assert isinstance(handler, NodeConnection)
        self.closes[handler.close_reason or CloseReason.CONNECTION_LOST] += 1
        current = self._sessions.get(client_id)
        if current is None or current[1] is not handler:
            return  # taken over (or ended) by a newer connection: leave its state alone
        if handler.outbox is not None and handler.transport is not None:
            handler.outbox.detach(handler.transport)
        client_session.transitions.disconnect()
        if client_session.clean_session:
            del self._sessions[client_id]
            self.router.forget(client_id)
        else:
            self._detached[client_id] = time.monotonic()
        await self.plugins_manager.fire_event(BrokerEvents.CLIENT_DISCONNECTED, client_id=client_id,
                                              client_session=client_session)

    async def _close(self, handler: BrokerProtocolHandler, reason: CloseReason) -> None:
        """Close ``handler``'s connection for ``reason`` and wait for its read loop to end."""
        if isinstance(handler, NodeConnection):
            handler.close(reason)
        await self._stop_handler(handler)

    async def _cleanup_session(self, client_id: str) -> None:
        await super()._cleanup_session(client_id)
        self.router.forget(client_id)

    async def _delete_session(self, client_id: str) -> None:
        await self._end_session(client_id)

    async def _session_monitor(self) -> None:
        """amqtt's monitor expired anonymous persistent sessions only. This task (for the life of the
        broker) expires every persistent session ``session_expiry`` seconds after its connection ended,
        and runs the node's ``GcFreezer``."""
        await asyncio.gather(GcFreezer(lambda: len(self._sessions)).run(), self._expire_sessions())

    async def _expire_sessions(self) -> None:
        expiry = self.router.limits.session_expiry
        if expiry <= 0:
            return  # kept forever
        while True:
            await asyncio.sleep(min(60.0, max(0.2, expiry / 4)))
            self.expire_detached(time.monotonic() - expiry)

    def expire_detached(self, ended_before: float) -> int:
        """Drop the persistent sessions whose connection ended before ``ended_before`` (monotonic) and
        still has none: their subscriptions and queued messages go. Returns how many."""
        expired = [cid for cid, ended in self._detached.items() if ended < ended_before]
        for client_id in expired:
            del self._detached[client_id]
            entry = self._sessions.get(client_id)
            if entry is not None and not entry[0].transitions.is_connected():
                del self._sessions[client_id]
                self.router.forget(client_id)
        if expired:
            shown = ", ".join(expired[:10]) + (", …" if len(expired) > 10 else "")
            log.info("%d persistent session(s) expired (disconnected for over %g s): %s", len(expired),
                     self.router.limits.session_expiry, shown)
        return len(expired)

    # --- amqtt's broadcast entry points, for plugins and internal messages --------------
    async def _broadcast_message(self, session: Session | None, topic: str | None,
                                 data: bytes | bytearray | None, force_qos: int | None = None) -> None:
        if topic:
            self.router.publish(topic, bytes(data or b""), force_qos or 0)

    async def retain_message(self, source_session: Session | None, topic_name: str | None,
                             data: bytes | bytearray | None, qos: int | None = None) -> None:
        if topic_name:
            self.router.retain(topic_name, bytes(data or b""), qos or 0)
