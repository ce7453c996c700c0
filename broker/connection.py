"""``NodeConnection``: one client connection's read loop, replacing amqtt's per-packet tasks.

amqtt's ``ProtocolHandler._reader_loop`` reads each packet field by field and starts a task per
packet; its deliveries start more tasks and wait on futures per message. This handler keeps
amqtt's session object and the checks its CONNECT handling made, and replaces the rest:

* the CONNECT is read in two reads (``read_connect``) and decoded by ``wire.decode_connect``;
  the accepting CONNACK is queued first on the outbox and goes out with the answers to what
  came along with the CONNECT (a SUBSCRIBE), in one write;
* it reads the socket in chunks and cuts them into packets (``wire.PacketSplitter``);
* every packet is handled in arrival order, inline: PUBLISH goes to the node (``NodeBroker.
  on_publish``, awaited, so a slow node slows its publishers instead of queueing without end),
  then its PUBACK/PUBREC is queued on the session's ``Outbox``; SUBSCRIBE and UNSUBSCRIBE go to
  the node the same way, so a client's PUBLISH after its SUBSCRIBE sees that subscription;
* acknowledgements of deliveries (PUBACK, PUBREC, PUBCOMP) update the outbox's in-flight table;
* a QoS 2 PUBLISH is routed once: a resent one (same packet id before PUBREL) is only
  acknowledged again ([MQTT-4.3.3-2], method A);
* back-pressure: when a read's publishes left a subscriber's outbox half full, the connection
  is read again only once that outbox is down to a quarter, or after ``PRESSURE_WAIT``;
* keepalive: no packet for 1.5 × the keepalive closes the connection as a network failure, so
  the will is published ([MQTT-3.1.2-24], [MQTT-3.1.2-8]);
* a malformed packet, a second CONNECT or a packet a server must not receive closes the
  connection ([MQTT-4.8.0-1], [MQTT-3.1.0-2]); nothing a peer sends raises out of the loop;
* every end has one ``CloseReason`` (``close_reason``, the first one given to ``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import (
    BAD_USERNAME_PASSWORD,
    CONNECTION_ACCEPTED,
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    UNACCEPTABLE_PROTOCOL_VERSION,
)
from amqtt.mqtt.constants import QOS_0
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.plugins.manager import PluginManager
from amqtt.session import Session
from amqtt.utils import gen_client_id
from websockets.exceptions import ConnectionClosed

from chatmq.broker.close_reason import CloseReason
from chatmq.broker.outbox import Outbox
from chatmq.broker.router import SubscriptionExtras
from chatmq.broker.session import NodeSession
from chatmq.broker.transports import Closable, chunk_reader, close_quietly, transport_for
from chatmq.broker.wire import (
    AUTH,
    DISCONNECT,
    MAX_CONNECT_LENGTH,
    MQTT_5,
    MQTT_31,
    MQTT_311,
    PINGREQ,
    PINGRESP_BYTES,
    PROTOCOLS,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    MalformedPacketError,
    Packet,
    PacketProtocolError,
    PacketSplitter,
    PacketTooLargeError,
    Properties,
    Publish,
    ReasonCode,
    decode_ack,
    decode_connect,
    decode_disconnect,
    decode_publish,
    decode_subscribe,
    decode_subscribe_v5,
    decode_unsubscribe,
    encode_ack,
    encode_connack,
    encode_disconnect,
    encode_suback,
    encode_unsuback,
)
from chatmq.core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from chatmq.broker.base import NodeBroker

log = logging.getLogger(__name__)

_DISCONNECT_REASONS = {
    CloseReason.KEEPALIVE_TIMEOUT: ReasonCode.KEEP_ALIVE_TIMEOUT,
    CloseReason.PROTOCOL_ERROR: ReasonCode.PROTOCOL_ERROR,
    CloseReason.PACKET_TOO_LARGE: ReasonCode.PACKET_TOO_LARGE,
    CloseReason.SLOW_CONSUMER: ReasonCode.QUOTA_EXCEEDED,
    CloseReason.TAKEN_OVER: ReasonCode.SESSION_TAKEN_OVER,
    CloseReason.KICKED: ReasonCode.ADMINISTRATIVE_ACTION,
    CloseReason.SHUTDOWN: ReasonCode.SERVER_SHUTTING_DOWN,
    CloseReason.INTERNAL_ERROR: ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR,
}
"""The reason code of the DISCONNECT an MQTT 5 client is sent when the node closes its connection
(§3.14.2.1); the others (the client's own DISCONNECT, a lost connection) send none."""

PRESSURE_WAIT = 1.0
"""Seconds a publisher's connection waits, per read, for a subscriber it pressed (``Outbox.relieved``)."""


async def read_connect(reader: ReaderAdapter, max_packet: int = MAX_CONNECT_LENGTH) -> bytes:
    """The body of the first packet on ``reader``, which must be a CONNECT (first byte 0x10,
    [MQTT-3.1.0-1], [MQTT-2.2.2-2]): one read for the first byte and the remaining length, one for
    the body. Raises ``NoDataError`` when the connection ends first, ``PacketTooLargeError`` when
    the remaining length is above ``max_packet`` (before the body is read) and
    ``MalformedPacketError`` for anything else."""
    try:
        head = await reader.read(2)
        if len(head) < 2:
            raise NoDataError("No data to decode MQTT packet fixed header")
        if head[0] != 0x10:
            raise MalformedPacketError(f"first packet is not a CONNECT (first byte {head[0]:#04x}) [MQTT-3.1.0-1]")
        length = head[1] & 0x7F
        shift = 7
        byte = head[1]
        while byte & 0x80:
            if shift > 21:
                raise MalformedPacketError("remaining length longer than four bytes")
            more = await reader.read(1)
            if not more:
                raise NoDataError("No data to decode MQTT packet fixed header")
            byte = more[0]
            length |= (byte & 0x7F) << shift
            shift += 7
        if length > MAX_CONNECT_LENGTH:
            raise MalformedPacketError(f"CONNECT of {length} bytes, longer than MQTT 3.1.1 allows")
        if length > max_packet:
            raise PacketTooLargeError(length, max_packet)
        body = await reader.read(length) if length else b""
        if len(body) < length:
            raise NoDataError("No more data")
        return bytes(body)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise NoDataError("No more data") from exc


class NodeConnection(BrokerProtocolHandler):  # type: ignore[misc]
    """A broker-side MQTT connection bound to a ``NodeBroker`` and its session's ``Outbox``."""

    node: NodeBroker
    outbox: Outbox | None = None
    transport: Closable | None = None
    _last_read: float = 0.0
    _keepalive_timer: asyncio.TimerHandle | None = None
    close_reason: CloseReason | None = None
    """Why the connection ended (or is ending); None while it is open."""
    _said_goodbye = False  # the client sent DISCONNECT
    _turn_taken = False  # its end waited for its turn (``_take_turn``)
    _aliases: dict[int, str]
    """MQTT 5: the topic aliases the client set on this connection (at most ``topic_alias_maximum``)."""

    def __init__(self, plugins_manager: PluginManager[Any], session: Session | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        # amqtt's handler attributes that its remaining code (CONNACK, handle_disconnect) reads;
        # not its per-connection queues, events and ack waiters, which this class never uses
        self.logger = log
        self.session = None
        self.reader: ReaderAdapter | None = None
        self.writer: WriterAdapter | None = None
        self.plugins_manager = plugins_manager
        self._loop = loop or asyncio.get_running_loop()
        self._reader_task: asyncio.Task[None] | None = None
        self._keepalive_task = None
        self._write_lock = asyncio.Lock()
        self._disconnect_waiter: asyncio.Future[DisconnectPacket | None] | None = None
        self._aliases = {}
        if session is not None:
            self._init_session(session)

    def _init_session(self, session: Session) -> None:
        self.session = session
        self.keepalive_timeout = session.keep_alive if session.keep_alive > 0 else None

    @classmethod
    async def init_from_connect(
        cls, reader: ReaderAdapter, writer: WriterAdapter, plugins_manager: PluginManager[Any],
        loop: asyncio.AbstractEventLoop | None = None, max_packet: int = MAX_CONNECT_LENGTH,
    ) -> tuple[NodeConnection, NodeSession]:
        """Read the CONNECT (``read_connect``) and check it as amqtt did; returns a connection and a
        new ``NodeSession``. A refused CONNECT is answered (CONNACK with the reason) and raises
        ``MQTTError``; bytes that are no CONNECT raise ``AMQTTError``/``NoDataError``."""
        try:
            connect = decode_connect(await read_connect(reader, max_packet))
        except MalformedPacketError as exc:
            raise AMQTTError(str(exc)) from exc
        if connect.will_flag and (connect.will_topic is None or connect.will_message is None):
            raise MQTTError("will flag set without will topic and message [MQTT-3.1.2-9]")
        if connect.reserved_flag:
            raise MQTTError("CONNECT reserved flag set [MQTT-3.1.2-3]")
        if connect.proto_name not in ("MQTT", "MQIsdp"):
            raise MQTTError(f"protocol name {connect.proto_name!r} [MQTT-3.1.2-1]")
        level = connect.proto_level
        client_id_is_random = not connect.client_id
        refusal = None
        if (connect.proto_name, level) not in PROTOCOLS:
            level = MQTT_311  # the refusal is an MQTT 3.1.1 CONNACK, which every level reads
            refusal = UNACCEPTABLE_PROTOCOL_VERSION  # [MQTT-3.1.2-2]
        elif (connect.password_flag and not connect.username_flag) or (
                connect.username_flag and connect.username is None) or (
                connect.password_flag and connect.password is None):
            refusal = BAD_USERNAME_PASSWORD  # [MQTT-3.1.2-22]
        elif client_id_is_random and (level == MQTT_31 or (level == MQTT_311 and not connect.clean_session)):
            refusal = IDENTIFIER_REJECTED  # [MQTT-3.1.3-8]; MQTT 3.1 needs 1 to 23 characters
        elif connect.properties is not None and connect.properties.authentication_method is not None:
            refusal = ReasonCode.BAD_AUTHENTICATION_METHOD  # no extended authentication is configured
        if refusal is not None:
            writer.write(encode_connack(False, refusal, protocol_level=level))  # session present 0 [MQTT-3.2.2-4]
            await writer.drain()
            await close_quietly(writer)
            raise MQTTError(f"CONNECT refused with return code {refusal}")
        session = NodeSession()
        session.client_id = gen_client_id() if client_id_is_random else connect.client_id  # [MQTT-3.1.3-6]
        session.clean_session = connect.clean_session
        session.will_flag = connect.will_flag
        session.will_retain = connect.will_retain
        session.will_qos = connect.will_qos
        session.will_topic = connect.will_topic
        session.will_message = connect.will_message
        session.username = connect.username
        session.password = connect.password
        peer = writer.get_peer_info()
        if peer is not None:
            session.remote_address, session.remote_port = peer
        session.keep_alive = connect.keep_alive
        session.protocol_level = level
        session.will_properties = connect.will_properties
        session.assigned_client_id = client_id_is_random
        props = connect.properties
        if level == MQTT_5:
            session.session_expiry = (props.session_expiry_interval or 0) if props is not None else 0
        if props is not None:
            session.problem_information = props.request_problem_information != 0
            if props.receive_maximum is not None:
                session.receive_maximum = props.receive_maximum
            if props.maximum_packet_size is not None:
                session.max_packet = props.maximum_packet_size
            if props.topic_alias_maximum is not None:
                session.topic_alias_maximum = props.topic_alias_maximum
        return cls(plugins_manager, loop=loop), session

    @property
    def protocol_level(self) -> int:
        """The connection's MQTT protocol level (3, 4 or 5)."""
        return self.session.protocol_level if self.session is not None else MQTT_311

    def _server_keep_alive(self) -> int | None:
        """MQTT 5: ``max_keepalive`` in place of a longer (or no) keep alive the client asked for,
        which the CONNACK then says ([MQTT-3.2.2-21]: the client uses it); None when it stands."""
        session = self.session
        limit = self.node.policy.max_keepalive
        if session is None or session.protocol_level != MQTT_5 or not limit:
            return None
        if 0 < session.keep_alive <= limit:
            return None
        session.keep_alive = limit
        self.keepalive_timeout = limit
        return limit

    def connack_properties(self, server_keep_alive: int | None = None) -> Properties | None:
        """The accepting CONNACK's properties: the node's limits and what it assigned (level 5 only)."""
        session = self.session
        if session is None or session.protocol_level != MQTT_5:
            return None
        cap = int(self.node.router.limits.session_expiry)
        asked = session.session_expiry or 0
        return Properties(
            # the node's cap (broker_session_expiry), when it shortens what the client asked (§3.2.2.3.2)
            session_expiry_interval=cap if 0 < cap < asked else None,
            assigned_client_identifier=session.client_id if session.assigned_client_id else None,
            maximum_packet_size=self.node.policy.max_packet_size,
            topic_alias_maximum=self.node.policy.topic_alias_maximum or None,
            receive_maximum=self.node.policy.receive_maximum if self.node.policy.receive_maximum < 0xFFFF else None,
            server_keep_alive=server_keep_alive,
        )

    async def start(self) -> None:
        """Start the read loop (in flight messages are resent by the outbox, not here)."""
        self._reader_task = self._loop.create_task(self._reader_loop())

    async def stop(self) -> None:
        """End the read loop (unless called from it) and close the connection; harmless twice."""
        task = self._reader_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            await cancel_and_wait(task)
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        if self._disconnect_waiter is not None and not self._disconnect_waiter.done():
            self._disconnect_waiter.set_result(None)
        if self.writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await close_quietly(self.writer)

    def bind(self, node: NodeBroker, outbox: Outbox) -> asyncio.Future[DisconnectPacket | None]:
        """Attach the session's outbox to this connection (before ``start``) with the accepting
        CONNACK first in it (session present: the session's ``parent``). The read loop's first
        turn flushes it, so a SUBSCRIBE that came with the CONNECT is answered in the same write.

        Returns the future of the connection's end: its DISCONNECT packet, or None when it ended
        otherwise (taken before the read loop starts, so an early end is never missed)."""
        assert self.writer is not None
        assert self.session is not None
        self.node = node
        self.outbox = outbox
        self.transport = transport_for(self.writer)
        ended: asyncio.Future[DisconnectPacket | None] = self._loop.create_future()
        self._disconnect_waiter = ended
        properties = self.connack_properties(self._server_keep_alive())
        connack = encode_connack(bool(self.session.parent), CONNECTION_ACCEPTED,
                                 protocol_level=self.session.protocol_level, properties=properties)
        outbox.attach(self.transport, self._too_slow, first=connack, flush=False,
                      protocol_level=self.session.protocol_level, receive_maximum=self.session.receive_maximum,
                      max_packet=self.session.max_packet, topic_alias_maximum=self.session.topic_alias_maximum)
        return ended

    async def mqtt_connack_authorize(self, authorize: bool) -> None:
        """amqtt's entry point: ``mqtt_connack_refuse`` with not authorized, or accepted."""
        await self.mqtt_connack_refuse(CONNECTION_ACCEPTED if authorize else NOT_AUTHORIZED)

    async def mqtt_connack_refuse(self, code: int) -> None:
        """A CONNACK with MQTT 3.1.1 return ``code`` written now (the refusal path; ``bind`` queues the
        accepting one); at level 5 it becomes its reason code (0x02 identifier rejected: 0x85)."""
        assert self.session is not None
        assert self.writer is not None
        try:
            level = self.session.protocol_level
            self.writer.write(encode_connack(bool(self.session.parent), code, protocol_level=level))
        except RuntimeError:  # uvloop: the transport closed meanwhile (the client reset during the back-off)
            return
        with contextlib.suppress(ConnectionError, ConnectionClosed):  # the client gave up waiting
            await self.writer.drain()

    def close(self, reason: CloseReason) -> None:
        """Close the connection now for ``reason`` (kept unless one was given before); the read loop
        then ends it as a network failure (will sent). Harmless twice."""
        first = self.close_reason is None
        if first:
            self.close_reason = reason
        if self.transport is not None:
            code = _DISCONNECT_REASONS.get(reason)
            if first and code is not None and self.protocol_level == MQTT_5:
                self.transport.write(encode_disconnect(code))  # [MQTT-3.14.2-1]: the why, before closing
            self.transport.close()

    def _too_slow(self) -> None:
        self.close(CloseReason.SLOW_CONSUMER)

    # --- keepalive ---------------------------------------------------------------
    def _arm_keepalive(self) -> None:
        keep_alive = self.session.keep_alive if self.session is not None else 0
        if keep_alive > 0:
            self._keepalive_timer = self._loop.call_later(keep_alive * 1.5, self._check_keepalive)

    def _check_keepalive(self) -> None:
        keep_alive = self.session.keep_alive if self.session is not None else 0
        idle = self._loop.time() - self._last_read
        if idle >= keep_alive * 1.5:
            log.info("%s sent nothing for %.1f s (keepalive %d s): closing",
                     self.session.client_id if self.session else "?", idle, keep_alive)
            self.close(CloseReason.KEEPALIVE_TIMEOUT)
            return
        self._keepalive_timer = self._loop.call_later(keep_alive * 1.5 - idle, self._check_keepalive)

    # --- the read loop -----------------------------------------------------------
    async def _reader_loop(self) -> None:
        assert self.reader is not None
        read = chunk_reader(self.reader)
        splitter = PacketSplitter(self.node.policy.max_packet_size)
        router = self.node.router
        self._last_read = self._loop.time()
        self._arm_keepalive()
        assert self.outbox is not None
        self.outbox.schedule_flush()  # the CONNACK, with the answers to what came along with the CONNECT
        try:
            while True:
                data = await read()
                if not data:
                    reason = CloseReason.CONNECTION_LOST
                    break
                self._last_read = self._loop.time()
                router.pressed = None
                if not await self._handle_all(splitter.feed(data)):
                    reason = CloseReason.CLIENT_DISCONNECT if self._said_goodbye else CloseReason.PROTOCOL_ERROR
                    break
                pressed = router.pressed
                if pressed is not None:  # a subscriber fell behind this publisher: let it catch up
                    router.pressed = None
                    await pressed.relieved(PRESSURE_WAIT)
        except PacketTooLargeError as exc:
            log.warning("%s announced a packet of %d bytes, more than max_packet_size (%d): closing before "
                        "reading it", self._who(), exc.length, exc.limit)
            reason = CloseReason.PACKET_TOO_LARGE
        except MalformedPacketError as exc:
            log.info("%s: malformed packet, closing: %s", self._who(), exc)
            if self.protocol_level == MQTT_5 and not isinstance(exc, PacketProtocolError):
                self._disconnect(ReasonCode.MALFORMED_PACKET)  # §4.13.1: the reason, before closing
            reason = CloseReason.PROTOCOL_ERROR
        except asyncio.CancelledError:
            reason = CloseReason.SHUTDOWN  # unless the canceller gave its reason first (takeover, kick)
        except Exception:
            log.exception("%s: unexpected error in the read loop, closing", self._who())
            reason = CloseReason.INTERNAL_ERROR
        finally:
            if self._keepalive_timer is not None:
                self._keepalive_timer.cancel()
            if reason is not CloseReason.SHUTDOWN:
                await self._take_turn()
                if self.outbox is not None:
                    self.outbox.flush_control()  # the CONNACK and acks of what came with the DISCONNECT
            self.close(reason)
            await self.handle_connection_closed()
        await self.stop()

    async def _take_turn(self) -> None:
        """Wait for this ending's turn (the node's ``TurnPacer``) before any of its clean-up: when thousands
        of connections end at once, each only wakes and queues here in the first turn, and the close work
        goes a few per turn, so that the loop keeps serving everyone else meanwhile. A cancel (the node
        shutting down) ends the wait, not the clean-up. Once per connection."""
        if self._turn_taken:
            return
        self._turn_taken = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.node.pacer.wait()

    def _who(self) -> str:
        return str(self.session.client_id) if self.session is not None else "?"

    async def _handle_all(self, packets: list[Packet]) -> bool:
        for packet in packets:
            if not await self._handle(packet):
                return False
        return True

    async def _handle(self, packet: Packet) -> bool:
        """Handle one packet; False ends the connection."""
        outbox = self.outbox
        session = self.session
        assert outbox is not None
        assert session is not None
        kind = packet.kind
        level = session.protocol_level
        if kind == PUBLISH:
            message = decode_publish(packet.flags, packet.body, level)
            if level == MQTT_5 and not self._resolve_alias(message):
                return False
            packet_id = message.packet_id
            if message.qos == 2:
                if packet_id in outbox.qos2_received:
                    outbox.send_raw(encode_ack(PUBREC, packet_id))
                    return True
                if level == MQTT_5 and len(outbox.qos2_received) >= self.node.policy.receive_maximum:
                    log.info("%s sent more QoS 2 publishes than the receive maximum (%d) before releasing them: "
                             "closing", self._who(), self.node.policy.receive_maximum)
                    return self._disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)  # §3.3.4, [MQTT-3.3.4-7]
            ack = await self.node.on_publish(session, self, message)
            if ack is None:
                return False
            if packet_id is not None:
                refused = level == MQTT_5 and ack.reason >= 0x80
                reason, props = (ack.reason, ack.properties) if level == MQTT_5 else (0, None)
                if not session.problem_information:
                    props = None  # [MQTT-3.1.2-29]
                if message.qos == 1:
                    outbox.send_raw(encode_ack(PUBACK, packet_id, reason, props))
                else:
                    if not refused:  # a refused QoS 2 PUBLISH ends at its PUBREC (§4.3.3)
                        outbox.qos2_received.add(packet_id)
                    outbox.send_raw(encode_ack(PUBREC, packet_id, reason, props))
            return True
        if kind == PUBACK:
            outbox.on_puback(decode_ack(kind, packet.body, level)[0])
        elif kind == PUBREC:
            packet_id, reason = decode_ack(kind, packet.body, level)
            if reason >= 0x80:  # MQTT 5: the client refused it; the exchange ends here (§4.3.3)
                outbox.on_refused(packet_id)
            else:
                outbox.on_pubrec(packet_id)
        elif kind == PUBREL:
            packet_id = decode_ack(kind, packet.body, level)[0]
            found = packet_id in outbox.qos2_received
            outbox.qos2_received.discard(packet_id)
            if found or level != MQTT_5:
                outbox.send_raw(encode_ack(PUBCOMP, packet_id))
            else:
                outbox.send_raw(encode_ack(PUBCOMP, packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
        elif kind == PUBCOMP:
            outbox.on_pubcomp(decode_ack(kind, packet.body, level)[0])
        elif kind == PINGREQ:
            outbox.send_raw(PINGRESP_BYTES)
        elif kind == SUBSCRIBE:
            if level == MQTT_5:
                request = decode_subscribe_v5(packet.body)
                ids = request.properties.subscription_identifier
                identifier = ids[0] if ids else None
                topics = [(topic_filter, options.qos) for topic_filter, options in request.topics]
                extras = [SubscriptionExtras(options, identifier) for _filter, options in request.topics]
                await self.node.on_subscribe(session, self, Subscription(request.packet_id, topics), extras)
            else:
                packet_id, topics = decode_subscribe(packet.body)
                await self.node.on_subscribe(session, self, Subscription(packet_id, topics))
        elif kind == UNSUBSCRIBE:
            packet_id, filters = decode_unsubscribe(packet.body, level)
            await self.node.on_unsubscribe(session, self, UnSubscription(packet_id, filters))
        elif kind == DISCONNECT:
            self._said_goodbye = True
            reason, props = decode_disconnect(packet.body, level)
            if props is not None and props.session_expiry_interval is not None:
                if session.session_expiry == 0 and props.session_expiry_interval:
                    log.info("%s set a session expiry interval at DISCONNECT after 0 at CONNECT", self._who())
                    self._said_goodbye = False
                    return self._disconnect(ReasonCode.PROTOCOL_ERROR)  # [MQTT-3.14.2-2]
                session.session_expiry = props.session_expiry_interval
            await self._take_turn()  # before the session's end is signalled: its clean-up goes a few per turn
            if reason != ReasonCode.DISCONNECT_WITH_WILL:  # [MQTT-3.14.4-3]: 0x04 keeps the will
                await self.handle_disconnect(DisconnectPacket())
            return False
        elif kind == AUTH and level == MQTT_5:
            log.info("%s sent AUTH, but no authentication method is configured: closing", self._who())
            return self._disconnect(ReasonCode.BAD_AUTHENTICATION_METHOD)
        else:
            log.info("%s sent packet type %d, which a server must not receive: closing", self._who(), kind)
            return False
        return True

    def _resolve_alias(self, message: Publish) -> bool:
        """MQTT 5 topic aliases (§3.3.2.3.4): a PUBLISH with a topic and an alias sets the alias, one
        with an alias and no topic uses it. False (the connection is ending, with DISCONNECT 0x94 or
        0x82) for an alias of 0 or above ``topic_alias_maximum``, an unknown one, or no topic at all."""
        props = message.properties
        alias = props.topic_alias if props is not None else None
        if alias is None:
            if message.topic:
                return True
            log.info("%s sent a PUBLISH without a topic or a topic alias: closing", self._who())
            return self._disconnect(ReasonCode.PROTOCOL_ERROR)
        if alias > self.node.policy.topic_alias_maximum:
            log.info("%s sent topic alias %d, above topic_alias_maximum: closing", self._who(), alias)
            return self._disconnect(ReasonCode.TOPIC_ALIAS_INVALID)  # [MQTT-3.2.2-17], [MQTT-3.3.2-9]
        if message.topic:
            self._aliases[alias] = message.topic
            return True
        topic = self._aliases.get(alias)
        if topic is None:
            log.info("%s used topic alias %d before setting it: closing", self._who(), alias)
            return self._disconnect(ReasonCode.PROTOCOL_ERROR)
        message.topic = topic
        return True

    def _disconnect(self, code: ReasonCode) -> bool:
        """End an MQTT 5 connection for a protocol error with the DISCONNECT ``code`` (the read loop
        then closes it); returns False, the read loop's "end"."""
        if self.transport is not None and self.close_reason is None:
            self.close_reason = CloseReason.PROTOCOL_ERROR
            assert self.outbox is not None
            self.outbox.flush_control()
            self.transport.write(encode_disconnect(code))
        return False

    # --- replaced amqtt entry points ---------------------------------------------
    async def mqtt_acknowledge_subscription(self, packet_id: int, return_codes: list[int]) -> None:
        """SUBACK through the outbox, so it is written before the retained messages it precedes."""
        assert self.outbox is not None
        self.outbox.send_raw(encode_suback(packet_id, return_codes, protocol_level=self.protocol_level))

    async def mqtt_acknowledge_unsubscription(self, packet_id: int, found: list[bool] | None = None) -> None:
        """UNSUBACK; at MQTT 5 with a reason code per filter: ``found`` says which had a subscription."""
        assert self.outbox is not None
        codes = [ReasonCode.SUCCESS if one else ReasonCode.NO_SUBSCRIPTION_EXISTED for one in found or []]
        self.outbox.send_raw(encode_unsuback(packet_id, codes, protocol_level=self.protocol_level))

    async def mqtt_publish(self, topic: str, data: bytes | bytearray, qos: int | None, retain: bool,
                           ack_timeout: int | None = None) -> None:
        """amqtt's per-message publish, kept for callers of the old API: queues on the outbox."""
        assert self.outbox is not None
        self.outbox.push(self.node.router.encoded(topic), bytes(data), qos or QOS_0, retain)

