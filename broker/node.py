"""``ChatBroker``: a broker node with chatmq's authentication, ACL and chat hooks.

It is a ``NodeBroker`` (chatmq's session handling and delivery path over amqtt's listeners,
codecs and sessions) that also replaces:

* ``_check_connect``: CONNECT credentials through ``Authenticator`` (no plugins), and the will's
  topic through the PUBLISH ACL: a will on a topic the client may not publish to is refused
  (CONNACK 0x05, not authorized); a client id held by another user's or device's session, here or
  (in a cluster, ``elsewhere``) live on another node, is refused (CONNACK 0x02, identifier rejected;
  MQTT 5: 0x85); all before any session with its client id is touched. ``take_over`` is another
  node's takeover, which closes only the same principal's connection;
* ``_admitted``: the verified identity goes with the session the CONNECT goes on with, and the
  gateway hears of the connection (``NodeHooks.connected``);
* ``_publish_will``: a will is taken like a PUBLISH of its client (``NodeHooks.published``: a user's
  will must be a valid outbox envelope), never retained; the chat node keeps no retained messages;
* ``_resumed``: a persistent session that comes back (session present) with its inbox subscription
  gets its inbox again without subscribing anew (``NodeHooks.inbox_subscribed``, so replay runs);
* ``_topic_filtering`` and ``may_receive``: the per-identity ACL of ``chatmq.broker.identity``
  for SUBSCRIBE (denied → return code 0x80), PUBLISH, and every message sent to a client
  (retained replays included);
* ``on_publish``: an inbound PUBLISH goes to ``NodeHooks.published`` in the order received; a
  denied PUBLISH is dropped and answered with an ``error`` envelope in the user's inbox (a device's:
  ``devices/{id}/inbox``, when it subscribed it);
* subscription, unsubscription and disconnect report inbox presence to the hooks.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from amqtt.contexts import Action, ListenerConfig
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.session import Session

from chatmq.broker.admission import ConnectionPolicy
from chatmq.broker.authenticator import Authenticator
from chatmq.broker.base import NodeBroker, Verdict
from chatmq.broker.close_reason import CloseReason
from chatmq.broker.connection import NodeConnection
from chatmq.broker.identity import (
    Identity,
    device_inbox_topic,
    inbox_topic,
    may_publish,
    may_receive,
    may_subscribe,
    may_take_over,
)
from chatmq.broker.outbox import DeliveryLimits
from chatmq.broker.ratelimit import TokenBucket
from chatmq.broker.router import SubscriptionExtras
from chatmq.broker.session import outlives_connection
from chatmq.broker.wire import ACCEPTED, Ack, Properties, Publish, ReasonCode
from chatmq.core.envelopes import EnvelopeError, ErrorCode, client_id_of, error_envelope
from chatmq.core.metrics import MESSAGES_REFUSED
from chatmq.core.tls import ServerTls, peer_common_name

REFUSAL_REASONS: dict[ErrorCode, int] = {
    "forbidden": ReasonCode.NOT_AUTHORIZED,
    "not_member": ReasonCode.NOT_AUTHORIZED,
    "rate_limited": ReasonCode.QUOTA_EXCEEDED,
    "invalid_envelope": ReasonCode.PAYLOAD_FORMAT_INVALID,
    "too_large": ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR,
    "unknown_recipient": ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR,
}
"""The MQTT 5 PUBACK reason code of each chat refusal (§3.4.2.1 allows no other failure codes)."""

log = logging.getLogger(__name__)


class NodeHooks(Protocol):
    """What the node reports to the chat gateway. Calls for one connection come in order."""

    async def connected(self, identity: Identity, client_id: str, transport: str) -> None:
        """A client authenticated (``transport`` is ``tcp`` or ``ws``)."""

    async def disconnected(self, identity: Identity, client_id: str) -> None:
        """An authenticated client's connection ended (cleanly or not)."""

    async def inbox_subscribed(self, user_id: str, conn: object, client_id: str = "") -> None:
        """Connection ``conn`` (MQTT client id ``client_id``) of ``user_id`` now receives ``users/{id}/inbox``."""

    async def inbox_released(self, user_id: str, conn: object) -> None:
        """Connection ``conn`` no longer receives the inbox (unsubscribed or gone)."""

    async def device_subscribed(self, identity: Identity, conn: object) -> None:
        """Connection ``conn`` of a device now receives ``devices/{id}/inbox``."""

    async def device_released(self, identity: Identity, conn: object) -> None:
        """Connection ``conn`` of a device no longer receives its inbox (unsubscribed or gone)."""

    async def published(self, identity: Identity, topic: str, payload: bytes, client_id: str = "") -> None:
        """An ACL-checked PUBLISH of connection ``client_id``; raise ``EnvelopeError`` to answer the user
        with an ``error``."""


@dataclass(frozen=True, slots=True)
class TlsListeners:
    """The TLS listeners of a node: MQTT over TLS on ``mqtts_port`` (``contexts.mqtt``), over secure
    WebSocket on ``wss_port`` when set (``contexts.web``); with ``only``, the plain ones stay closed."""

    contexts: ServerTls
    mqtts_port: int
    wss_port: int | None = None
    only: bool = False


def listeners_config(host: str, mqtt_port: int, ws_port: int | None, tls: TlsListeners | None = None) -> dict[str, Any]:
    """amqtt listener configuration: TCP as ``default``, WebSocket as ``ws`` when ``ws_port`` is set, and
    with ``tls`` ``mqtts``/``wss`` (``ssl``: their contexts come from ``NodeBroker._create_ssl_context``).
    amqtt needs a ``default``: with ``tls.only`` it is the MQTT over TLS listener."""
    plain: dict[str, Any] = {"default": {"type": "tcp", "bind": f"{host}:{mqtt_port}"}}
    if ws_port is not None:
        plain["ws"] = {"type": "ws", "bind": f"{host}:{ws_port}"}
    if tls is None:
        return plain
    secure: dict[str, Any] = {"mqtts": {"type": "tcp", "bind": f"{host}:{tls.mqtts_port}", "ssl": True}}
    if tls.wss_port is not None:
        secure["wss"] = {"type": "ws", "bind": f"{host}:{tls.wss_port}", "ssl": True}
    if tls.only:
        secure["default"] = secure.pop("mqtts")
        return secure
    return plain | secure


class ChatBroker(NodeBroker):
    """A broker node for authenticated chat users and devices."""

    checks_receive = True

    def __init__(
        self,
        *,
        host: str,
        mqtt_port: int,
        ws_port: int | None,
        authenticator: Authenticator,
        hooks: NodeHooks,
        rate: float,
        burst: int,
        limits: DeliveryLimits | None = None,
        tls: TlsListeners | None = None,
        policy: ConnectionPolicy | None = None,
        elsewhere: Callable[[str], Identity | None] | None = None,
    ) -> None:
        config = {"listeners": listeners_config(host, mqtt_port, ws_port, tls), "plugins": {}}
        super().__init__(config, limits, None if tls is None else tls.contexts, policy)
        self._authenticator = authenticator
        self._hooks = hooks
        self._elsewhere = elsewhere
        """In a cluster: who holds a client id live on another node (``_holder_elsewhere``)."""
        self._rate = rate
        self._burst = burst
        # by id(session) (amqtt sessions are unhashable); the value holds the session so the id stays unique
        self._identities: dict[int, tuple[Session, Identity]] = {}
        self._buckets: weakref.WeakKeyDictionary[BrokerProtocolHandler, TokenBucket] = weakref.WeakKeyDictionary()
        self._inbox_conns: dict[BrokerProtocolHandler, str] = {}
        self._device_conns: dict[BrokerProtocolHandler, Identity] = {}  # connections reading a device inbox
        self._transports: dict[int, str] = {}  # by id(session): the listener ("tcp", "ws") it last connected on

    def identity(self, session: Session) -> Identity | None:
        entry = self._identities.get(id(session))
        return entry[1] if entry is not None else None

    def _owner(self, session: Session) -> Identity | None:
        return self.identity(session)

    def _holder_elsewhere(self, client_id: str) -> Identity | None:
        return self._elsewhere(client_id) if self._elsewhere is not None else None

    def connection_counts(self) -> dict[tuple[str, str], int]:
        """Live authenticated connections by ``(transport, kind)`` (``tcp``/``ws``, ``user``/``device``)."""
        counts: dict[tuple[str, str], int] = {}
        for session, _handler in list(self._sessions.values()):
            entry = self._identities.get(id(session))
            if entry is None or not session.transitions.is_connected():
                continue
            key = (self._transports.get(id(session), "tcp"), entry[1].kind)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def send(self, user_id: str, conns: list[object], payload: bytes) -> None:
        """Publish ``payload`` (QoS 1) on ``users/{user_id}/inbox`` to each of ``conns`` (connection
        handlers that subscribed it), in call order per connection.

        Deliveries go into those connections' outboxes directly, not through the router, so
        nothing meant for a connection that has gone reaches the next connection of the user
        ahead of its replay.
        """
        topic = inbox_topic(user_id)
        for conn in conns:
            if not isinstance(conn, NodeConnection) or conn not in self._inbox_conns or conn.session is None:
                continue
            self.router.deliver(conn.session.client_id, topic, payload, QOS_1)

    def send_device(self, device_id: str, conns: list[object], payload: bytes) -> None:
        """Publish ``payload`` (QoS 1) on ``devices/{device_id}/inbox`` to each of ``conns`` (connection
        handlers that subscribed it), in call order per connection."""
        topic = device_inbox_topic(device_id)
        for conn in conns:
            if not isinstance(conn, NodeConnection) or conn not in self._device_conns or conn.session is None:
                continue
            self.router.deliver(conn.session.client_id, topic, payload, QOS_1)

    async def kick(self, client_id: str) -> bool:
        """Close the live connection with MQTT client id ``client_id``; False when there is none."""
        entry = self._sessions.get(client_id)
        if entry is None or entry[0].transitions.state != "connected":
            return False
        await self._close(entry[1], CloseReason.KICKED)
        return True

    async def take_over(self, client_id: str, claimant: Identity) -> bool:
        """``claimant`` connected with ``client_id`` on another node: close the live connection with that
        client id here if it is ``claimant``'s own (``may_take_over``); another principal's stays, and
        False says so. False too when there is no live connection with it here."""
        entry = self._sessions.get(client_id)
        if entry is None or entry[0].transitions.state != "connected":
            return False
        holder = self.identity(entry[0])
        if not may_take_over(holder, claimant):
            assert holder is not None
            log.warning("takeover of client id %r by %s %s on another node ignored: the connection here is of "
                        "another %s", client_id, claimant.kind, claimant.id, holder.kind)
            return False
        await self._close(entry[1], CloseReason.TAKEN_OVER)
        return True

    async def kick_principal(self, principal_id: str) -> int:
        """Close every live connection of a user or device id, and of the user's devices."""
        doomed = [
            session.client_id for session, identity in list(self._identities.values())
            if principal_id in (identity.id, identity.owner) and session.client_id
        ]
        return sum([await self.kick(client_id) for client_id in doomed])

    # --- replaced amqtt paths ------------------------------------------------------
    async def _check_connect(self, session: Session, listener: ListenerConfig) -> Verdict:
        certified = peer_common_name(session.ssl_object)  # a client certificate the MQTTS listener verified
        identity = None
        if certified is not None and session.username in (None, certified):
            identity = await self._authenticator.authenticate_certified_device(certified)
        if identity is None:
            identity = await self._authenticator.authenticate(session.username, session.password)
        if identity is None:
            return Verdict.BAD_CREDENTIALS
        if session.will_flag and session.will_topic is not None and not may_publish(identity, session.will_topic):
            log.warning("CONNECT of %s %s (client %r) refused: its will topic %r is not one it may publish to "
                        "(CONNACK not authorized)", identity.kind, identity.id, session.client_id, session.will_topic)
            return Verdict.FORBIDDEN_WILL
        claim = self._claim_client_id(session, identity)
        if claim is not Verdict.ACCEPTED:
            return claim
        self._identities[id(session)] = (session, identity)  # moved to the admitted session by ``_admitted``
        return Verdict.ACCEPTED

    async def _admitted(self, connecting: Session, session: Session, listener: ListenerConfig) -> None:
        """The identity ``_check_connect`` verified goes with the session the CONNECT goes on with."""
        identity = self._identities.pop(id(connecting))[1]
        self._identities[id(session)] = (session, identity)
        transport = self._transports[id(session)] = str(listener.get("type", "tcp"))
        await self._hooks.connected(identity, session.client_id or "", transport)

    async def _resumed(self, session: Session, handler: NodeConnection) -> None:
        """A resumed session still subscribed to its user's (or device's) inbox receives it on this connection."""
        identity = self.identity(session)
        if identity is not None and identity.kind == "device":  # a device's persistent session: its inbox too
            if session.client_id and self.router.index.qos_of(session.client_id,
                                                              device_inbox_topic(identity.id)) is not None:
                self._device_conns[handler] = identity
                await self._hooks.device_subscribed(identity, handler)
            return
        if identity is None or identity.kind != "user":
            return
        topic = inbox_topic(identity.id)
        if session.client_id and self.router.index.qos_of(session.client_id, topic) is not None:
            self._inbox_conns[handler] = identity.id
            await self._hooks.inbox_subscribed(identity.id, handler, session.client_id or "")

    async def _publish_will(self, session: Session) -> None:
        """The will goes where a PUBLISH of its client on that topic would (its topic passed the ACL at
        CONNECT); RETAIN is ignored: a chat node keeps no retained messages."""
        identity = self.identity(session)
        topic = session.will_topic
        if identity is None or topic is None or not may_publish(identity, topic):
            return
        try:
            await self._hooks.published(identity, topic, bytes(session.will_message or b""), session.client_id or "")
        except EnvelopeError as exc:
            log.info("will of %s %s not taken: %s", identity.kind, identity.id, exc.reason)
        except Exception:
            log.exception("failed to take the will of %s", identity.id)

    async def retain_message(self, source_session: Session | None, topic_name: str | None,
                             data: bytes | bytearray | None, qos: int | None = None) -> None:
        """A chat node keeps no retained messages (amqtt's plugin entry point does nothing here)."""

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        identity = self.identity(session)
        if action == Action.SUBSCRIBE:
            return may_subscribe(identity, topic)
        if action == Action.RECEIVE:
            return may_receive(identity, topic)
        return may_publish(identity, topic)

    def may_receive(self, session: Session, topic: str) -> bool:
        return may_receive(self.identity(session), topic)

    async def on_subscribe(self, session: Session, handler: NodeConnection, subscription: Subscription,
                           extras: list[SubscriptionExtras] | None = None) -> list[int]:
        codes = await super().on_subscribe(session, handler, subscription, extras)
        identity = self.identity(session)
        if identity is not None and identity.kind == "device":
            granted = zip(subscription.topics, codes, strict=True)
            if any(t == device_inbox_topic(identity.id) and c != 0x80 for (t, _q), c in granted):
                self._device_conns[handler] = identity
                await self._hooks.device_subscribed(identity, handler)
            return codes
        if identity is None or identity.kind != "user":
            return codes
        wanted = inbox_topic(identity.id)
        pairs = zip(subscription.topics, codes, strict=True)
        if any(topic == wanted and code < 0x80 for (topic, _qos), code in pairs):
            self._inbox_conns[handler] = identity.id
            await self._hooks.inbox_subscribed(identity.id, handler, session.client_id or "")
        return codes

    async def on_unsubscribe(self, session: Session, handler: NodeConnection, unsubscription: UnSubscription) -> None:
        await super().on_unsubscribe(session, handler, unsubscription)
        device = self._device_conns.get(handler)
        if device is not None and device_inbox_topic(device.id) in unsubscription.topics:
            del self._device_conns[handler]
            await self._hooks.device_released(device, handler)
        user = self._inbox_conns.get(handler)
        if user is not None and inbox_topic(user) in unsubscription.topics:
            del self._inbox_conns[handler]
            await self._hooks.inbox_released(user, handler)

    async def _handle_disconnect(
        self, client_session: Session, handler: BrokerProtocolHandler, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        try:
            await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        finally:
            identity = self.identity(client_session)
            if identity is not None:
                await self._hooks.disconnected(identity, client_session.client_id or "")
            if not outlives_connection(client_session):  # a persistent session keeps its identity for its next connect
                self._identities.pop(id(client_session), None)
                self._transports.pop(id(client_session), None)
            user = self._inbox_conns.pop(handler, None)
            if user is not None:
                await self._hooks.inbox_released(user, handler)
            device = self._device_conns.pop(handler, None)
            if device is not None:
                await self._hooks.device_released(device, handler)

    async def on_publish(self, client_session: Session, handler: NodeConnection, message: Publish) -> Ack | None:
        topic = message.topic
        if not topic or "#" in topic or "+" in topic:
            log.warning("[MQTT-3.3.2-2] %s published to invalid topic %r; closing", client_session.client_id, topic)
            return None
        identity = self.identity(client_session)
        if identity is None:
            return None
        data = message.payload
        if not may_publish(identity, topic):
            refusal = EnvelopeError("forbidden", f"publishing to {topic!r} is not allowed")
            return self._refuse(identity, handler, refusal)
        bucket = self._buckets.get(handler)
        if bucket is None:
            bucket = self._buckets[handler] = TokenBucket(self._rate, self._burst)
        if not bucket.take():
            return self._refuse(identity, handler, EnvelopeError("rate_limited", "too many messages; slow down",
                                                                 client_id_of(data)))
        try:
            await self._hooks.published(identity, topic, data, client_session.client_id or "")
        except EnvelopeError as exc:
            return self._refuse(identity, handler, exc)
        except Exception:
            log.exception("failed to take a publish from %s", identity.id)
        return ACCEPTED

    def _refuse(self, identity: Identity, handler: BrokerProtocolHandler, exc: EnvelopeError) -> Ack:
        """Answer the refused PUBLISH with an ``error`` on the same connection (if it reads its inbox);
        returns its acknowledgement, whose MQTT 5 reason code (``REFUSAL_REASONS``), reason string and
        ``code`` user property say the same."""
        MESSAGES_REFUSED.labels(exc.code).inc()
        envelope = error_envelope(exc.code, exc.reason, exc.client_id)
        ack = Ack(REFUSAL_REASONS[exc.code], Properties(reason_string=exc.reason, user_properties=[("code", exc.code)]))
        if identity.kind == "user":
            self.send(identity.id, [handler], envelope)
            return ack
        # a device reads its errors on devices/{id}/inbox, when this connection subscribed it
        client_id = handler.session.client_id if handler.session is not None else None
        topic = device_inbox_topic(identity.id)
        if client_id and self.router.index.qos_of(client_id, topic) is not None:
            self.router.deliver(client_id, topic, envelope, QOS_1)
        else:
            log.info("refused publish from device %s: %s", identity.id, exc.reason)
        return ack
