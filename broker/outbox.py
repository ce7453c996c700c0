"""``Outbox``: what a broker node still owes one client session, and the one place that writes it.

Each session has one outbox, kept across reconnects of a persistent session (clean session 0).
It holds

* a FIFO of messages not yet sent, bounded in messages (``DeliveryLimits.queue_size``) and in
  bytes of topic and payload (``DeliveryLimits.queue_bytes``);
* the QoS 1/2 messages sent and not yet acknowledged (at most ``max_inflight``), by the packet
  id this outbox gave them: packet ids are per subscriber, never the publisher's;
* control packets to send (PUBACK/PUBREC/PUBCOMP to the client's own publishes, PINGRESP).

Contracts
---------
* No task per message. ``push`` and ``send_raw`` append and, once per event-loop turn, one
  ``flush`` encodes everything sendable, up to ``high_water`` unsent bytes in the transport,
  into a single write.
* Once the transport holds ``high_water`` unsent bytes, nothing more is written; the outbox
  resumes when the transport says it drained. Messages wait in the queue meanwhile.
* Drop policy when the queue is full (either bound; a message larger than ``queue_bytes`` on its
  own is taken into an empty queue, so one big message is never refused for its size): a QoS 0
  message is dropped and counted
  (``DeliveryStats.dropped_qos0``). A QoS 1/2 message is never dropped silently: while the client
  is connected the outbox asks for that connection to be closed as too slow
  (``slow_disconnects``) and keeps the message (for a persistent session it is sent after the
  next connect; a clean session ends and is discarded with it, as MQTT prescribes); while a
  persistent session is away, the message is refused, counted (``dropped_offline``) and logged.
* Back-pressure before dropping: once the queue is half full (in messages or bytes) the outbox is
  *pressed*; a publisher whose messages pressed it waits (``relieved``, at most a given time) until
  the queue is down to a quarter (both) before its connection is read again. A subscriber that stays behind past
  that wait is too slow, and the drop policy above applies.
* While no transport is attached (the client is away) QoS 0 messages are not queued
  ([MQTT-3.1.2-5]: only QoS 1/2 are stored for a disconnected session).
* MQTT 5 (``attach``'s ``protocol_level``): each PUBLISH carries its property block (the
  publisher's forwarded properties, and the message expiry interval that remains). At most the
  client's Receive Maximum are in flight ([MQTT-3.3.4-9]); a PUBLISH larger than the client's
  Maximum Packet Size is not sent to it, and is counted (``dropped_too_large``, [MQTT-3.1.2-25]).
* A message whose expiry interval passed before it was sent is not sent, at any level
  ([MQTT-3.3.2-5]); it is counted (``expired``).
* ``attach`` (a reconnect) first resends every unacknowledged PUBLISH with DUP set, and PUBREL
  for QoS 2 messages already received, in their original order ([MQTT-4.4.0-1]), then the queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chatmq.broker.wire import (
    ALIASED_TOPIC,
    MAX_REMAINING_LENGTH,
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    PUBREL,
    encode_ack,
    encode_publish,
    publish_properties,
)

if TYPE_CHECKING:
    from chatmq.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """Per-client delivery bounds (settings ``broker_queue_size``, ``broker_queue_bytes``, ``broker_max_inflight``,
    ``broker_session_expiry``: seconds a persistent session and its queue outlive its connection, 0 = forever)."""

    queue_size: int = 10_000
    queue_bytes: int = 8 * 1024 * 1024
    max_inflight: int = 100
    high_water: int = 256 * 1024
    session_expiry: float = 7200.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryLimits:
        return cls(queue_size=settings.broker_queue_size, queue_bytes=settings.broker_queue_bytes,
                   max_inflight=settings.broker_max_inflight,
                   session_expiry=settings.broker_session_expiry)


@dataclass(slots=True)
class DeliveryStats:
    """Counters shared by all the outboxes of one node."""

    delivered: int = 0
    dropped_qos0: int = 0
    slow_disconnects: int = 0
    dropped_offline: int = 0
    dropped_too_large: int = 0
    """Messages not sent to an MQTT 5 client because they exceed its Maximum Packet Size."""
    expired: int = 0
    """Messages whose MQTT 5 message expiry interval passed before they were sent."""


class Transport(Protocol):
    """Where an outbox writes: one connection's socket (TCP or WebSocket)."""

    def write(self, data: bytes) -> None:
        """Send ``data`` (whole packets) after everything written before."""

    def buffered(self) -> int:
        """Bytes written and not yet handed to the network."""

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, after the buffered bytes have gone out (or the connection ended)."""


_Message = tuple[bytes, bytes, int, bool, bytes, float, str]
"""A queued or in-flight message: encoded topic, payload, QoS, RETAIN, the publisher's forwarded
MQTT 5 properties (``wire.forwarded_properties``), when it expires (``time.monotonic``; 0:
never), and the shared subscription it came by (the router's group key; "" for none). A tuple of
atomic values,
so the cyclic GC stops tracking it (in-flight messages live long enough to be promoted)."""


class Outbox:
    """One session's outgoing messages. See the module docstring for the contracts."""

    __slots__ = ("_alias_max", "_aliases", "_bytes", "_limits", "_max_inflight", "_max_packet", "_next_id",
                 "_on_overflow", "_properties", "_queue", "_raw", "_relief", "_scheduled", "_stats", "_transport",
                 "_v5", "_waiting_drain", "bytes_mark", "inflight", "pressure_mark", "qos2_received", "released")

    def __init__(self, limits: DeliveryLimits, stats: DeliveryStats) -> None:
        self._limits = limits
        self._stats = stats
        self._queue: deque[_Message] = deque()
        self._bytes = 0
        self._raw: list[bytes] = []
        self.inflight: dict[int, _Message] = {}
        self.released: set[int] = set()
        """In-flight QoS 2 packet ids whose PUBREC came (PUBREL sent, PUBCOMP awaited)."""
        self.qos2_received: set[int] = set()
        """Packet ids of the client's QoS 2 publishes routed and not yet released (PUBREL)."""
        self._next_id = 0
        self._transport: Transport | None = None
        self._on_overflow: Callable[[], None] | None = None
        self._scheduled = False
        self._waiting_drain = False
        self.pressure_mark = max(1, limits.queue_size // 2)
        """Queued messages from which the outbox is pressed (publishers feeding it should wait)."""
        self.bytes_mark = max(1, limits.queue_bytes // 2)
        """Queued bytes from which the outbox is pressed."""
        self._relief: asyncio.Future[None] | None = None
        self._properties = b""
        """What each PUBLISH carries after its packet id: MQTT 5's (empty) property block, or nothing."""
        self._v5 = False
        self._max_inflight = limits.max_inflight
        self._max_packet = MAX_REMAINING_LENGTH + 5
        self._alias_max = 0
        """MQTT 5: the topic aliases this connection's client takes (its Topic Alias Maximum)."""
        self._aliases: dict[bytes, int] = {}
        """MQTT 5: the topic aliases given on this connection, by encoded topic (at most ``_alias_max``)."""

    # --- state -------------------------------------------------------------------
    @property
    def online(self) -> bool:
        return self._transport is not None

    @property
    def queued(self) -> int:
        """Messages waiting to be sent (not counting those in flight)."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of topic and payload of the messages waiting to be sent."""
        return self._bytes

    def attach(self, transport: Transport, on_overflow: Callable[[], None], *, first: bytes = b"",
               flush: bool = True, protocol_level: int = MQTT_311, receive_maximum: int = 65535,
               max_packet: int = MAX_REMAINING_LENGTH + 5, topic_alias_maximum: int = 0) -> None:
        """A connection took this session: ``first`` (its CONNACK), then what is in flight resent
        (DUP), then the queue, all encoded for the connection's ``protocol_level`` (and, at MQTT 5,
        within the client's ``receive_maximum`` and ``max_packet``, with topic aliases up to its
        ``topic_alias_maximum``, none carried over from an earlier connection [MQTT-3.3.2-7]). With
        ``flush=False`` nothing is written until ``schedule_flush`` or the next packet queued."""
        self._transport = transport
        self._v5 = v5 = protocol_level == MQTT_5
        self._properties = NO_PROPERTIES if v5 else b""
        self._max_inflight = min(self._limits.max_inflight, receive_maximum)
        self._max_packet = max_packet
        self._alias_max = topic_alias_maximum if v5 else 0
        self._aliases = {}
        now = time.monotonic()
        self._on_overflow = on_overflow
        self._waiting_drain = False
        if first:
            self._raw.insert(0, first)
        for packet_id, (topic, payload, qos, retain, forwarded, expires_at, _group) in self.inflight.items():
            if packet_id in self.released:
                self._raw.append(encode_ack(PUBREL, packet_id))
            else:
                properties = self._block(forwarded, expires_at, now) if v5 else b""
                self._raw.append(encode_publish(topic, payload, qos, packet_id, retain=retain, dup=True,
                                                properties=properties))
        if flush:
            self._schedule()

    def detach(self, transport: Transport | None = None) -> None:
        """The connection ended; control packets not yet written are dropped with it. With
        ``transport``, only if that is still the attached one (a takeover may have replaced it)."""
        if transport is not None and transport is not self._transport:
            return
        self._transport = None
        self._on_overflow = None
        self._raw.clear()
        self._relieve()

    def clear(self) -> None:
        """Forget everything (a clean session ended)."""
        self.detach()
        self._queue.clear()
        self._bytes = 0
        self.inflight.clear()
        self.released.clear()
        self.qos2_received.clear()

    # --- input -------------------------------------------------------------------
    def push(self, topic: bytes, payload: bytes, qos: int, retain: bool = False, forwarded: bytes = b"",
             expires_at: float = 0.0, group: str = "") -> bool:
        """Queue a message (``topic`` as ``wire.encode_topic`` made it) at the delivered ``qos``.
        Returns whether it was queued; see the drop policy in the module docstring."""
        online = self._transport is not None
        if not online and qos == 0:
            return False
        size = len(topic) + len(payload)
        limits = self._limits
        if len(self._queue) >= limits.queue_size or (self._bytes + size > limits.queue_bytes and self._queue):
            if qos == 0:
                self._stats.dropped_qos0 += 1
                return False
            if not online:
                self._stats.dropped_offline += 1
                log.warning("queue of an absent persistent session is full (%d messages, %d bytes): QoS %d "
                            "message refused", len(self._queue), self._bytes, qos)
                return False
            on_overflow = self._on_overflow
            self._on_overflow = None
            if on_overflow is not None:
                self._stats.slow_disconnects += 1
                log.warning("subscriber too slow (%d messages, %d bytes queued): closing its connection",
                            len(self._queue), self._bytes)
                on_overflow()
        self._queue.append((topic, payload, qos, retain, forwarded, expires_at, group))
        self._bytes += size
        if online:
            self._schedule()
        return True

    def send_raw(self, packet: bytes) -> None:
        """Send a control packet (an ack or PINGRESP) with the next write, if connected."""
        if self._transport is not None:
            self._raw.append(packet)
            self._schedule()

    def on_puback(self, packet_id: int) -> None:
        entry = self.inflight.get(packet_id)
        if entry is not None and entry[2] == 1:
            del self.inflight[packet_id]
            if self._queue:
                self._schedule()

    def take_shared(self, ending: bool = False) -> list[_Message]:
        """Remove and return the messages that came by a shared subscription and that the router
        gives to another member of their group (MQTT 5 §4.8.2): those queued and never sent; and,
        with ``ending`` (the session ends, not just its connection), the QoS 1 ones in flight
        unacknowledged. In-flight QoS 2 ones stay with this session, to be completed when it
        resumes ([MQTT-4.8.2-4]), and are never given on: a session that ends drops them with it
        ([MQTT-4.8.2-5]). So a member that resumes never finds a message it had been sent also at
        another member; one in flight at QoS 1 waits for it as MQTT 5 allows, until its session ends."""
        taken: list[_Message] = []
        if ending:
            for packet_id, message in list(self.inflight.items()):  # the oldest first
                if message[6] and message[2] == 1:
                    del self.inflight[packet_id]
                    taken.append(message)
        queued = [m for m in self._queue if m[6]]
        if queued:
            self._queue = deque(m for m in self._queue if not m[6])
            self._bytes -= sum(len(m[0]) + len(m[1]) for m in queued)
        return taken + queued

    def on_refused(self, packet_id: int) -> None:
        """An MQTT 5 PUBREC with a failure reason code: the message is done with, as at PUBCOMP (§4.3.3)."""
        if self.inflight.pop(packet_id, None) is not None:
            self.released.discard(packet_id)
            if self._queue:
                self._schedule()

    def on_pubrec(self, packet_id: int) -> None:
        entry = self.inflight.get(packet_id)
        if entry is not None and entry[2] == 2:
            self.released.add(packet_id)
        self.send_raw(encode_ack(PUBREL, packet_id))  # [MQTT-4.3.3-1]: PUBREL also for an id we forgot

    def on_pubcomp(self, packet_id: int) -> None:
        if packet_id in self.released:
            self.released.discard(packet_id)
            del self.inflight[packet_id]
            if self._queue:
                self._schedule()

    # --- back-pressure -------------------------------------------------------------
    @property
    def pressed(self) -> bool:
        return len(self._queue) >= self.pressure_mark or self._bytes >= self.bytes_mark

    async def relieved(self, timeout: float) -> bool:
        """Wait until the queue is down to a quarter of its bound, the client went away, or
        ``timeout`` seconds passed; returns whether it was relieved."""
        if not self.pressed or self._transport is None:
            return True
        if self._relief is None:
            self._relief = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._relief)
        except TimeoutError:
            return False
        return True

    def _relieve(self) -> None:
        relief, self._relief = self._relief, None
        if relief is not None and not relief.done():
            relief.set_result(None)

    # --- output ------------------------------------------------------------------
    def flush_control(self) -> None:
        """Write the control packets not written yet (a CONNACK, acks) now, before the connection
        closes; queued messages stay queued."""
        if self._transport is not None and self._raw:
            frames, self._raw = self._raw, []
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def schedule_flush(self) -> None:
        """Write what is queued at the event loop's next turn (one write for all queued by then)."""
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._waiting_drain:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def _packet_id(self) -> int:
        next_id = self._next_id
        inflight = self.inflight
        while True:
            next_id = next_id % 65535 + 1
            if next_id not in inflight:
                self._next_id = next_id
                return next_id

    def flush(self) -> None:
        """Write everything sendable now in one write (called by the event loop; safe to call directly)."""
        self._scheduled = False
        transport = self._transport
        if transport is None or self._waiting_drain:
            return
        frames = self._raw
        self._raw = []
        queue = self._queue
        inflight = self.inflight
        max_inflight = self._max_inflight
        properties = self._properties
        v5 = self._v5
        max_packet = self._max_packet
        now = time.monotonic()
        stats = self._stats
        room = self._limits.high_water - transport.buffered()  # fill the transport up to high water
        sent = sent_bytes = 0
        while queue and room > 0:
            message = queue[0]
            topic, payload, qos, retain, forwarded, expires_at, _group = message
            if expires_at and expires_at <= now:  # [MQTT-3.3.2-5]: expired, not delivered
                queue.popleft()
                sent_bytes += len(topic) + len(payload)
                stats.expired += 1
                continue
            if qos and len(inflight) >= max_inflight:
                break
            topic_field, new_alias = topic, 0
            if v5 and self._alias_max:
                topic_field, properties, new_alias = self._aliased(topic, forwarded, expires_at, now)
            elif v5 and (forwarded or expires_at):
                properties = self._block(forwarded, expires_at, now)
            if v5 and len(topic_field) + len(payload) + len(properties) + 7 > max_packet and (
                    len(encode_publish(topic_field, payload, qos, 1 if qos else None,
                                       properties=properties)) > max_packet):
                queue.popleft()  # [MQTT-3.1.2-25]: never sent to this client
                sent_bytes += len(topic) + len(payload)
                stats.dropped_too_large += 1
                properties = self._properties
                continue
            if new_alias:  # the client learns it with this PUBLISH
                self._aliases[topic] = new_alias
            if qos:
                packet_id = self._packet_id()
                inflight[packet_id] = message
                frame = encode_publish(topic_field, payload, qos, packet_id, retain=retain, properties=properties)
            else:
                frame = encode_publish(topic_field, payload, 0, None, retain=retain, properties=properties)
            properties = self._properties
            frames.append(frame)
            room -= len(frame)
            queue.popleft()
            sent_bytes += len(topic) + len(payload)
            sent += 1
        self._bytes -= sent_bytes
        if self._relief is not None and len(queue) <= self.pressure_mark // 2 and self._bytes <= self.bytes_mark // 2:
            self._relieve()
        if not frames:
            if queue and room <= 0:
                self._waiting_drain = True
                transport.when_drained(self._drained)
            return
        self._stats.delivered += sent
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        if transport.buffered() >= self._limits.high_water or (queue and room <= 0):
            self._waiting_drain = True
            transport.when_drained(self._drained)

    @staticmethod
    def _block(forwarded: bytes, expires_at: float, now: float) -> bytes:
        """An MQTT 5 PUBLISH's property block: the forwarded properties and the expiry interval left."""
        expiry = max(0, math.ceil(expires_at - now)) if expires_at else None
        return publish_properties(forwarded, expiry)

    def _aliased(self, topic: bytes, forwarded: bytes, expires_at: float, now: float) -> tuple[bytes, bytes, int]:
        """MQTT 5 topic aliases to the client (§3.3.2.3.4): the topic field and property block of a
        PUBLISH on ``topic``, and the alias it sets (0: none new; the caller records it once the
        PUBLISH is sent). A topic sent before on this connection goes as its alias alone; a new one is
        spelled out with the next alias while the client's maximum lasts, then without
        ([MQTT-3.1.2-26]: never an alias above it)."""
        expiry = max(0, math.ceil(expires_at - now)) if expires_at else None
        alias = self._aliases.get(topic)
        if alias is not None:
            return ALIASED_TOPIC, publish_properties(forwarded, expiry, alias), 0
        if len(self._aliases) < self._alias_max:
            alias = len(self._aliases) + 1
            return topic, publish_properties(forwarded, expiry, alias), alias
        return topic, publish_properties(forwarded, expiry), 0

    def _drained(self) -> None:
        self._waiting_drain = False
        if self._transport is not None and (self._queue or self._raw):
            self._schedule()
