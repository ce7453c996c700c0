"""``NodeBroker``: amqtt's ``Broker`` with chatmq's session handling and delivery path.

amqtt (pinned exactly) still provides the listeners and the ``Session`` object (CONNECT and
CONNACK are ``NodeConnection``'s). From the CONNECT on, this class and its helpers replace amqtt's paths:

* connections are ``NodeConnection``s (one read loop, no task per packet), each bound to its
  session's ``Outbox`` (one batched write per turn, bounded queue, per-subscriber packet ids);
* publishes are routed by ``Router`` (subscription index, QoS downgrade, receive ACL) instead of
  ``_run_broadcast``, which scanned every filter per message;
* sessions: a CONNECT's credentials are verified (``_check_connect``) before it touches any session
  (``_admit``): a refused CONNECT never takes over the client id it names. An accepted clean-session
  CONNECT ends any session with that client id, closing its live connection ([MQTT-3.1.2-6],
  [MQTT-3.1.4-2]); a persistent CONNECT takes the session over (closing the old connection) and
  resumes its outbox, in flight first with DUP ([MQTT-4.4.0-1]), only for the same user name: a
  persistent CONNECT with another user name ends the old session instead (its queued and in-flight
  messages are not the new client's to read). Where sessions have verified owners (``_owner``: the
  chat node's users and devices), a CONNECT whose client id is held by another owner's session, live
  or kept, here or on another node (``_holder_elsewhere``), is refused before it touches any session
  (``_claim_client_id``: CONNACK 0x02, MQTT 5 0x85); the anonymous plain node has no owners.
  Persistent sessions are kept for anonymous clients too (amqtt dropped them), for
  ``DeliveryLimits.session_expiry`` seconds after their connection ended (then the session, its
  subscriptions and its queue are dropped, as Mosquitto's ``persistent_client_expiration``);
* retained messages go only to a new subscription's matching topics, through the receive ACL
  (amqtt replayed every retained message to every (re)connecting session);
* an abnormal end (no DISCONNECT, keepalive expiry, protocol error, takeover) publishes the will
  (``_publish_will``); every ended connection is counted by its ``CloseReason`` (``closes``);
* connection storms: a read CONNECT and an ended connection (when its read loop sees the end, before
  any clean-up) each wait for their turn (``TurnPacer``: ``sessions_per_turn`` of them per turn of the
  loop, ``sessions_turn_interval`` apart while a storm waits), so that the chat keeps moving meanwhile;
* hostile clients (``ConnectionPolicy``, ``chatmq.broker.admission``): a connection over the node's
  or its address's connection limit, or over its address's connect rate, is closed before its
  CONNECT is read (counted in ``refused``); the whole CONNECT must come within ``connect_timeout``;
  a CONNECT or packet announcing more than ``max_packet_size`` closes the connection before its body
  is read; a will topic that is no valid topic name closes it ([MQTT-3.1.2-9] .. [MQTT-4.7.3-3]);
  a refused login's CONNACK waits ``AddressGate.auth_failed`` seconds (growing per address);
* WebSocket: an upgrade on a path other than ``ws_path`` gets HTTP 404; frames are bounded by
  ``max_packet_size``; a text frame closes the connection ([MQTT-6.0.0-1]).

Subclasses decide who may connect (``_check_connect``, by default ``_authenticate``; ``_admitted`` hears
of an accepted one), publish and
subscribe (``_topic_filtering``), receive (``may_receive``), where a will goes (``_publish_will``),
what a resumed session needs (``_resumed``), and may extend ``on_publish``/``on_subscribe``/``on_unsubscribe``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import math
import ssl
import time
from functools import partial
from http import HTTPStatus
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WebSocketsWriter, WriterAdapter
from amqtt.broker import Broker, Server
from amqtt.contexts import Action, ListenerConfig, ListenerType
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError
from amqtt.events import BrokerEvents
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.session import Session
from amqtt.utils import gen_client_id
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from chatmq.broker.admission import AddressGate, ConnectionPolicy, Refusal
from chatmq.broker.close_reason import CloseReason
from chatmq.broker.connection import NodeConnection
from chatmq.broker.gc_policy import GcFreezer
from chatmq.broker.identity import Identity, may_take_over
from chatmq.broker.outbox import DeliveryLimits
from chatmq.broker.pacing import TurnPacer
from chatmq.broker.router import Router, SubscriptionExtras
from chatmq.broker.session import NEVER_EXPIRES, NodeSession, outlives_connection
from chatmq.broker.topic_index import InvalidTopicError, TopicIndexError, validate_topic
from chatmq.broker.transports import BinaryWebSocketsReader, close_quietly
from chatmq.broker.wire import ACCEPTED, MAX_CONNECT_LENGTH, MQTT_5, Ack, Publish, ReasonCode, forwarded_properties
from chatmq.core.tls import ServerTls

log = logging.getLogger(__name__)

WS_FRAME_OVERHEAD = 5
"""A WebSocket frame may carry a whole packet: ``max_packet_size`` plus its fixed header."""


class Verdict(enum.Enum):
    """``_check_connect``'s answer to an authenticated-or-not CONNECT."""

    ACCEPTED = "accepted"
    BAD_CREDENTIALS = "bad_credentials"
    """CONNACK 0x05 after the address's failed-login delay."""
    FORBIDDEN_WILL = "forbidden_will"
    """CONNACK 0x05 at once: the will topic is one the client may not publish to."""
    CLIENT_ID_TAKEN = "client_id_taken"
    """CONNACK 0x02 (MQTT 5: 0x85) at once: the client id is held by another principal's session
    (``NodeBroker._claim_client_id``)."""


class NodeBroker(Broker):  # type: ignore[misc]
    """A broker node whose delivery path is chatmq's (see the module docstring)."""

    checks_receive = False
    """Whether ``may_receive`` is asked per delivery (the chat node's ACL); off for the plain node."""

    checks_publish = True
    """Whether ``_topic_filtering`` is asked per PUBLISH; off for the plain node, which allows all."""

    def __init__(self, config: dict[str, Any], limits: DeliveryLimits | None = None,
                 tls: ServerTls | None = None, policy: ConnectionPolicy | None = None) -> None:
        super().__init__(config)
        self.tls = tls
        """The contexts of the listeners configured with ``ssl`` (``chatmq.broker.node.listeners_config``)."""
        self.router = Router(limits, self._receive_allowed if self.checks_receive else None)
        self.policy = policy or ConnectionPolicy()
        self.gate = AddressGate(self.policy)
        self.pacer = TurnPacer(self.policy.sessions_per_turn, self.policy.sessions_turn_interval)
        """CONNECTs (once read) and ended connections take turns through it (``sessions_per_turn``)."""
        self.closes: collections.Counter[CloseReason] = collections.Counter()
        """Connections that ended since the start, by reason."""
        self.refused: collections.Counter[Refusal] = collections.Counter()
        """Connections closed before their CONNECT was processed, by reason."""
        self._detached: dict[str, float] = {}
        """Persistent sessions without a connection: client id → when it ended (monotonic)."""
        self._wills: dict[str, tuple[asyncio.Task[None], Session]] = {}
        """MQTT 5 wills waiting out their Will Delay Interval: client id → (the waiting task, the session)."""

    # --- hooks for subclasses ------------------------------------------------------
    def may_receive(self, session: Session, topic: str) -> bool:
        """Whether ``session`` may be sent a message on ``topic`` (asked when ``checks_receive``)."""
        return True

    def _owner(self, session: Session) -> Identity | None:
        """The verified principal ``session`` belongs to; None when nobody verified one (the plain node)."""
        return None

    def _holder_elsewhere(self, client_id: str) -> Identity | None:
        """The principal holding a live connection with ``client_id`` on another node of the cluster, as
        far as this node has heard (None: none known; a single node has no others)."""
        return None

    def _claim_client_id(self, session: Session, claimant: Identity) -> Verdict:
        """Whether ``claimant``, verified on the CONNECT ``session``, may have its client id:
        ``CLIENT_ID_TAKEN`` when a session of another principal holds it (``may_take_over``), here (live,
        or persistent and not expired) or on another node (``_holder_elsewhere``). Touches no session."""
        client_id = session.client_id
        if not client_id or session.assigned_client_id:
            return Verdict.ACCEPTED  # made up by the node: nobody else's
        holders = [self._holder_elsewhere(client_id)]
        entry = self._sessions.get(client_id)
        if entry is not None and self._detached.get(client_id, math.inf) > time.monotonic():
            holders.append(self._owner(entry[0]))
        for holder in holders:
            if not may_take_over(holder, claimant):
                assert holder is not None
                log.warning("CONNECT of %s %s from %s refused: client id %r is held by a session of another %s "
                            "(CONNACK identifier rejected)", claimant.kind, claimant.id, session.remote_address,
                            client_id, holder.kind)
                return Verdict.CLIENT_ID_TAKEN
        return Verdict.ACCEPTED

    def _receive_allowed(self, client_id: object, topic: str) -> bool:
        entry = self._sessions.get(client_id)
        return entry is not None and self.may_receive(entry[0], topic)

    async def on_publish(self, session: Session, handler: NodeConnection, message: Publish) -> Ack | None:
        """A client's PUBLISH, in arrival order: how it is acknowledged (``Ack``; an MQTT 5 client is
        told 0x87 when the ACL refuses it), or None, which closes its connection (protocol error).

        Topics with ``+``, ``#`` or U+0000 close the connection ([MQTT-3.3.2-2], [MQTT-4.7.3-2]);
        ``$SYS/…`` is the broker's and is ignored; anything else the ACL allows is routed.
        """
        topic = message.topic
        if topic[:4] == "$SYS":
            return ACCEPTED
        if self.checks_publish and not await self._topic_filtering(session, topic, Action.PUBLISH):
            return Ack(ReasonCode.NOT_AUTHORIZED)
        props = message.properties
        forwarded, expires_at = b"", 0.0
        if props is not None:
            forwarded = forwarded_properties(props)
            if props.message_expiry_interval is not None:
                expires_at = time.monotonic() + props.message_expiry_interval
        try:
            self.router.publish(topic, message.payload, message.qos, message.retain, forwarded, expires_at,
                                session.client_id)
        except TopicIndexError:
            log.info("%s published to invalid topic %r: closing", session.client_id, topic)
            return None
        return ACCEPTED

    async def on_subscribe(self, session: Session, handler: NodeConnection, subscription: Subscription,
                           extras: list[SubscriptionExtras] | None = None) -> list[int]:
        """Subscribe (ACL-checked per filter), SUBACK, then the retained messages of each new filter.
        Returns the SUBACK return codes (a failure is 0x80 or more). MQTT 5 says why a filter failed:
        0x87 not authorized, 0x8F an invalid filter, 0x9E a shared subscription (not offered); its
        ``extras`` (one per filter) carry the options and identifier, and retain handling 1 sends
        the retained messages only for a new subscription, 2 never ([MQTT-3.3.1-10], [MQTT-3.3.1-11])."""
        client_id = session.client_id
        v5 = isinstance(handler, NodeConnection) and handler.protocol_level == MQTT_5
        codes: list[int] = []
        granted: list[tuple[str, int]] = []
        for i, (topic_filter, qos) in enumerate(subscription.topics):
            extra = extras[i] if extras is not None else None
            if not await self._topic_filtering(session, topic_filter, Action.SUBSCRIBE):
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else 0x80)
                continue
            existed = self.router.index.qos_of(client_id, topic_filter) is not None
            code = self.router.subscribe(client_id, topic_filter, qos, replay=False, extras=extra)
            if code == 0x80 and v5:
                code = ReasonCode.TOPIC_FILTER_INVALID
            codes.append(code)
            retain_handling = extra.options.retain_handling if extra is not None else 0
            if code < 0x80 and (retain_handling == 0 or (retain_handling == 1 and not existed)):
                granted.append((topic_filter, code))
        await handler.mqtt_acknowledge_subscription(subscription.packet_id, codes)
        for topic_filter, qos in granted:
            self.router.replay_retained(client_id, topic_filter, qos)
        return codes

    async def on_unsubscribe(self, session: Session, handler: NodeConnection, unsubscription: UnSubscription) -> None:
        """Remove each filter exactly as given ([MQTT-3.10.4-1]), then UNSUBACK ([MQTT-3.10.4-4])."""
        found = [self.router.unsubscribe(session.client_id, topic_filter) for topic_filter in unsubscription.topics]
        await handler.mqtt_acknowledge_unsubscription(unsubscription.packet_id, found)

    def _create_ssl_context(self, listener: ListenerConfig) -> ssl.SSLContext:
        """The context of a TLS listener (amqtt made one from files it never reloads): ``tls.mqtt`` for
        MQTT over TLS, ``tls.web`` for secure WebSocket. Reloading ``tls`` reaches new handshakes."""
        if self.tls is None:
            raise BrokerError("a TLS listener needs the node's ServerTls")
        return self.tls.mqtt if listener.type == ListenerType.TCP else self.tls.web

    # --- listeners and admission (replace amqtt's) ---------------------------------------
    async def _create_server_instance(
        self, listener_name: str, listener_type: ListenerType, address: str | None, port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> asyncio.Server | WsServer:
        """amqtt's listeners; the WebSocket one serves ``ws_path`` only, bounds frames by
        ``max_packet_size`` and gives the opening handshake ``connect_timeout``."""
        if listener_type != ListenerType.WS:
            server: asyncio.Server = await super()._create_server_instance(
                listener_name, listener_type, address, port, ssl_context)
            return server
        return await serve(
            partial(self.ws_connected, listener_name=listener_name), address, port, ssl=ssl_context,
            subprotocols=[Subprotocol("mqtt")], process_request=self._ws_request,
            max_size=self.policy.max_packet_size + WS_FRAME_OVERHEAD, open_timeout=self.policy.connect_timeout,
        )

    def _ws_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse an upgrade on any path but ``ws_path`` (HTTP 404) before it becomes a WebSocket."""
        path = request.path.split("?", 1)[0]
        if path != self.policy.ws_path:
            log.info("WebSocket upgrade on %r from %s refused (MQTT is served on %r only)", request.path,
                     _address_of(connection.remote_address), self.policy.ws_path)
            return connection.respond(HTTPStatus.NOT_FOUND, f"MQTT over WebSocket is served on {self.policy.ws_path}\n")
        return None

    async def ws_connected(self, websocket: ServerConnection, listener_name: str) -> None:
        await self._client_connected(listener_name, BinaryWebSocketsReader(websocket), WebSocketsWriter(websocket))

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        try:
            await self._client_connected(listener_name, StreamReaderAdapter(reader), StreamWriterAdapter(writer))
        except asyncio.CancelledError:
            # the node is stopping during a CONNECT (its timeout, or a refusal's delay): end quietly;
            # asyncio's stream callback would log a cancelled handler task as an unhandled error
            writer.transport.abort()

    async def _client_connected(self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        """amqtt's per-connection entry, with ``AddressGate`` in front instead of a listener semaphore
        (which made connections past ``max_connections`` wait, unanswered, holding their sockets)."""
        server = self._servers.get(listener_name)
        peer = writer.get_peer_info()
        if server is None or peer is None:
            await close_quietly(writer)
            return
        remote_address, remote_port = peer
        address = str(remote_address)
        refusal = self.gate.admit(address)
        if refusal is not None:
            self.refused[refusal] += 1
            log.warning("connection from %s:%s closed before its CONNECT: %s (%d connections on the node)",
                        address, remote_port, refusal.value, self.gate.connections)
            await close_quietly(writer)
            return
        try:
            try:
                handler, connecting = await self._read_connect(reader, writer, address, remote_port)
            except (AMQTTError, MQTTError, NoDataError):
                return  # logged, and closed, where it was refused
            with contextlib.suppress(AMQTTError, MQTTError, NoDataError):
                await self._handle_client_session(reader, writer, connecting, handler, server, listener_name)
        finally:
            self.gate.release(address)

    # --- session lifecycle (replaces amqtt's) ----------------------------------------
    async def _read_connect(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[NodeConnection, Session]:
        """The connection's CONNECT (within ``connect_timeout``), as a new session that touches no other:
        a CONNECT that is no valid one, or whose will topic is none, closes the connection (raises)."""
        policy = self.policy
        try:
            async with asyncio.timeout(policy.connect_timeout):
                handler, session = await NodeConnection.init_from_connect(
                    reader, writer, self.plugins_manager, max_packet=min(MAX_CONNECT_LENGTH, policy.max_packet_size))
        except TimeoutError as exc:
            self.refused[Refusal.CONNECT_TIMEOUT] += 1
            log.info("no whole CONNECT from %s:%s within connect_timeout (%g s): closing", remote_address,
                     remote_port, policy.connect_timeout)
            await close_quietly(writer)
            raise AMQTTError("CONNECT timeout") from exc
        except (AMQTTError, NoDataError) as exc:
            log.info("no valid CONNECT from %s:%s: %s", remote_address, remote_port, exc)
            await close_quietly(writer)  # [MQTT-4.8.0-1]; amqtt left it open
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            log.info("CONNECT refused from %s:%s: %s", remote_address, remote_port, exc)
            await close_quietly(writer)
            raise
        if session.will_flag and session.will_topic is not None:
            try:
                validate_topic(session.will_topic)
            except InvalidTopicError as exc:
                log.warning("CONNECT from %s:%s (client %r) has an invalid will topic %r: %s; closing "
                            "(a protocol violation [MQTT-3.1.2-9], [MQTT-4.8.0-1])", remote_address, remote_port,
                            session.client_id, session.will_topic, exc.reason)
                await close_quietly(writer)
                raise AMQTTError("invalid will topic") from exc
        return handler, session

    async def _admit(self, session: Session) -> Session:
        """The session an authenticated CONNECT (``session``, just read) goes on with, taking over any
        session with its client id: a clean session ends it (closing its live connection); a persistent
        one of the same user name is resumed (its live connection closed, ``session``'s CONNECT fields
        copied into it, session present); another user name's is ended, never resumed. Only ever called
        after ``_check_connect`` accepted ``session``'s credentials: a CONNECT that fails them must not
        disturb the session it names."""
        client_id = session.client_id or ""
        if session.clean_session:
            if client_id:
                await self._end_session(client_id)
            else:
                session.client_id = gen_client_id()  # [MQTT-3.1.3-6]
            session.parent = 0
            return session
        entry = self._sessions.get(client_id)
        if entry is not None and self._detached.get(client_id, math.inf) <= time.monotonic():
            await self._end_session(client_id)  # expired, though not yet collected
            entry = None
        if entry is None or not outlives_connection(entry[0]) or entry[0].username != session.username:
            if entry is not None:  # another login's session is ended, never resumed: it holds their messages
                await self._end_session(client_id)
            session.parent = 0
            return session
        existing, old = entry
        self._cancel_will(client_id)  # [MQTT-3.1.3-9]: a new connection to the session came in time
        if existing.transitions.is_connected():
            log.info("%s connected again: taking the session over", client_id)
            await self._close(old, CloseReason.TAKEN_OVER)
        for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain", "will_properties",
                     "keep_alive", "username", "password", "remote_address", "remote_port", "ssl_object",
                     "protocol_level", "assigned_client_id", "receive_maximum", "max_packet", "session_expiry",
                     "problem_information", "topic_alias_maximum"):
            setattr(existing, name, getattr(session, name))
        existing.parent = 1  # [MQTT-3.2.2-2] session present
        return existing

    async def _end_session(self, client_id: str) -> None:
        """Forget ``client_id``'s session, closing its live connection first (a takeover)."""
        entry = self._sessions.pop(client_id, None)
        self._detached.pop(client_id, None)
        self.router.forget(client_id)
        waiting = self._cancel_will(client_id)
        if waiting is not None:  # the session ends before its will's delay: the will goes now
            await self._publish_will(waiting)
        if entry is not None and entry[0].transitions.is_connected():
            log.info("%s connected again: closing its previous connection", client_id)
            await self._close(entry[1], CloseReason.TAKEN_OVER)

    async def _handle_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        connecting: Session,
        handler: BrokerProtocolHandler,
        server: Server,
        listener_name: str,
    ) -> None:
        """Verify, then admit: the CONNECT's credentials (and will) are checked on its own new session
        (``_check_connect``) before any session with its client id is taken over (``_admit``), so a
        refused CONNECT leaves the connection it names alone. Then serve the connection until it ends."""
        assert isinstance(handler, NodeConnection)
        listener = self.listeners_config[listener_name]
        connecting.ssl_object = writer.get_ssl_info()  # a client certificate may stand for a password
        await self.pacer.wait()  # a connection storm takes its turn: the loop keeps serving everyone else
        verdict = await self._check_connect(connecting, listener)
        if verdict is not Verdict.ACCEPTED:
            await self._refuse_connect(connecting, handler, reader, writer, verdict)
            return
        client_session = await self._admit(connecting)
        await self._admitted(connecting, client_session, listener)
        client_id = client_session.client_id
        if client_session.transitions.is_connected():  # a takeover whose old connection is still closing
            client_session.transitions.disconnect()
        client_session.transitions.connect()
        handler.attach(client_session, reader, writer)
        self._sessions[client_id] = (client_session, handler)
        self._detached.pop(client_id, None)
        waiting = self._cancel_will(client_id)
        if waiting is not None and not client_session.parent:
            await self._publish_will(waiting)  # another session took the client id: the old one ended
        await self.plugins_manager.fire_event(BrokerEvents.CLIENT_CONNECTED, client_id=client_id,
                                              client_session=client_session)
        ended = handler.bind(self, self.router.outbox(client_id))
        if client_session.parent:
            await self._resumed(client_session, handler)
        await handler.start()
        try:
            await ended  # its read loop took its turn (the pacer) before it ended: so do thousands lost at once
        except asyncio.CancelledError:  # the listener is going away: end the session as a lost connection
            if not ended.done() or ended.cancelled():
                ended = asyncio.get_running_loop().create_future()
                ended.set_result(None)
            await self._handle_disconnect(client_session, handler, ended)
            raise
        await self._handle_disconnect(client_session, handler, ended)

    async def _refuse_connect(self, session: Session, handler: NodeConnection, reader: ReaderAdapter,
                              writer: WriterAdapter, verdict: Verdict) -> None:
        """Answer a refused CONNECT (bad credentials: after the address's failed-login delay) with CONNACK
        not authorized (a client id held by another principal: identifier rejected) and close the connection.
        ``session`` is the CONNECT's own: no other is touched."""
        session.parent = 0
        session.transitions.connect()
        handler.attach(session, reader, writer)
        if verdict is Verdict.BAD_CREDENTIALS:
            address = str(session.remote_address)
            delay = self.gate.auth_failed(address)
            if delay > 0:
                log.info("failed login of %r from %s: refused in %.2f s", session.username, address, delay)
                await asyncio.sleep(delay)
        await handler.mqtt_connack_refuse(IDENTIFIER_REJECTED if verdict is Verdict.CLIENT_ID_TAKEN else NOT_AUTHORIZED)
        session.transitions.disconnect()
        await close_quietly(writer)  # the refused client may hang up first

    async def _handle_disconnect(
        self, client_session: Session, handler: BrokerProtocolHandler, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        """The connection ended: the will unless it sent DISCONNECT ([MQTT-3.1.2-8], [MQTT-3.1.2-10]),
        at once or, with an MQTT 5 Will Delay Interval, once that passed or the session ended, whichever
        comes first, and not at all if a connection resumes the session in time ([MQTT-3.1.3-9]);
        a clean session is forgotten, a persistent one keeps queueing QoS 1/2 until it returns."""
        clean_end = isinstance(disconnect_waiter.result(), DisconnectPacket)
        client_id = client_session.client_id
        will = not clean_end and bool(client_session.will_flag and client_session.will_topic)
        delay = self._will_delay(client_session) if will else 0.0
        if will and not delay:
            await self._publish_will(client_session)
        await self._stop_handler(handler)
        assert isinstance(handler, NodeConnection)
        self.closes[handler.close_reason or CloseReason.CONNECTION_LOST] += 1
        current = self._sessions.get(client_id)
        if current is None or current[1] is not handler:
            if delay and (current is None or current[0] is not client_session):
                await self._publish_will(client_session)  # the session ended (a clean start of its client id)
            return  # taken over (or ended) by a newer connection: leave its state alone
        if handler.outbox is not None and handler.transport is not None:
            handler.outbox.detach(handler.transport)
        self.router.member_left(client_id)  # its undelivered shared-subscription messages go to another member
        client_session.transitions.disconnect()
        if not outlives_connection(client_session):
            del self._sessions[client_id]
            self.router.forget(client_id)
            if delay:
                await self._publish_will(client_session)  # the session ended with its connection
        else:
            expires_at = self._detached[client_id] = self._expires_at(client_session)
            if delay:
                self._delay_will(client_session, min(delay, expires_at - time.monotonic()))
        await self.plugins_manager.fire_event(BrokerEvents.CLIENT_DISCONNECTED, client_id=client_id,
                                              client_session=client_session)

    async def _check_connect(self, session: Session, listener: ListenerConfig) -> Verdict:
        """Whether an (otherwise valid) CONNECT is accepted: ``_authenticate`` decides here. ``session`` is
        the CONNECT's own new one, not yet admitted: this must touch no other session."""
        return Verdict.ACCEPTED if await self._authenticate(session, listener) else Verdict.BAD_CREDENTIALS

    async def _admitted(self, connecting: Session, session: Session, listener: ListenerConfig) -> None:
        """An accepted CONNECT (``connecting``, as ``_check_connect`` saw it) goes on with ``session``
        (``connecting`` itself, or the persistent session it resumed), before its CONNACK."""

    async def _resumed(self, session: Session, handler: NodeConnection) -> None:
        """A persistent session (session present) got a new connection, before its read loop starts."""

    async def _publish_will(self, session: Session) -> None:
        """Publish ``session``'s will (its topic was validated at CONNECT), retained if it asked."""
        will = bytes(session.will_message or b"")
        forwarded, expires_at = b"", 0.0
        props = session.will_properties if isinstance(session, NodeSession) else None
        if props is not None:  # MQTT 5: the will's properties go with it, as a PUBLISH's (§3.1.3.2)
            forwarded = forwarded_properties(props)
            if props.message_expiry_interval is not None:
                expires_at = time.monotonic() + props.message_expiry_interval
        try:
            self.router.publish(session.will_topic, will, session.will_qos or 0, bool(session.will_retain),
                                forwarded, expires_at)
        except TopicIndexError as exc:
            log.warning("will of %s not published: %s", session.client_id, exc)

    @staticmethod
    def _will_delay(session: Session) -> float:
        """MQTT 5: the seconds the will waits (its Will Delay Interval); 0 below level 5 or without one."""
        props = session.will_properties if isinstance(session, NodeSession) else None
        return float(props.will_delay_interval or 0) if props is not None else 0.0

    def _delay_will(self, session: Session, delay: float) -> None:
        """Publish ``session``'s will after ``delay`` seconds unless ``_cancel_will`` comes first."""
        client_id = session.client_id
        task = asyncio.get_running_loop().create_task(self._will_after(session, delay), name=f"will:{client_id}")
        self._wills[client_id] = (task, session)
        task.add_done_callback(partial(self._will_done, client_id))

    async def _will_after(self, session: Session, delay: float) -> None:
        await asyncio.sleep(delay)
        entry = self._wills.get(session.client_id)
        if entry is not None and entry[0] is asyncio.current_task():
            del self._wills[session.client_id]  # from now on it is published, never cancelled
        await self._publish_will(session)

    def _will_done(self, client_id: str, task: asyncio.Task[None]) -> None:
        entry = self._wills.get(client_id)
        if entry is not None and entry[0] is task:
            del self._wills[client_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("delayed will of %s failed", client_id, exc_info=task.exception())

    def _cancel_will(self, client_id: str) -> Session | None:
        """Stop ``client_id``'s will from waiting; returns the session it belongs to (None: none waited)."""
        entry = self._wills.pop(client_id, None)
        if entry is None:
            return None
        entry[0].cancel()
        return entry[1]

    async def shutdown(self) -> None:
        """amqtt's shutdown, after the wills still waiting out their delay are dropped (the node's
        sessions end with it, but the node is no longer there to route them)."""
        waiting = [task for task, _session in self._wills.values()]
        self._wills.clear()
        for task in waiting:
            task.cancel()
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        await super().shutdown()

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
        while True:
            await asyncio.sleep(min(60.0, max(0.2, expiry / 4)) if expiry > 0 else 60.0)
            self.expire_detached(time.monotonic())

    def _expires_at(self, session: Session) -> float:
        """When a detached persistent session expires (``time.monotonic``; inf: never): ``session_expiry``
        after its connection ended, or its MQTT 5 Session Expiry Interval if shorter."""
        cap = self.router.limits.session_expiry
        limit = cap if cap > 0 else math.inf
        own = session.session_expiry if isinstance(session, NodeSession) else None
        if own is not None:
            limit = min(limit, math.inf if own == NEVER_EXPIRES else float(own))
        return time.monotonic() + limit

    def expire_detached(self, now: float) -> int:
        """Drop the persistent sessions detached whose expiry (``_expires_at``) is ``now`` (monotonic) or
        earlier: their subscriptions and queued messages go. Returns how many."""
        expired = [cid for cid, expires_at in self._detached.items() if expires_at <= now]
        for client_id in expired:
            del self._detached[client_id]
            entry = self._sessions.get(client_id)
            if entry is not None and not entry[0].transitions.is_connected():
                del self._sessions[client_id]
                self.router.forget(client_id)
        if expired:
            shown = ", ".join(expired[:10]) + (", …" if len(expired) > 10 else "")
            log.info("%d persistent session(s) expired (disconnected for over session_expiry, %g s, or their own "
                     "session expiry interval): %s", len(expired), self.router.limits.session_expiry, shown)
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


def _address_of(remote: Any) -> str:
    """The host of a socket's remote address (a tuple, or None once closed)."""
    return str(remote[0]) if isinstance(remote, tuple) and remote else "?"
