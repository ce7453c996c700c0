"""``NodeGateway``: the bridge of one broker node, running in the node's process.

Inbound (node → bus): connects and disconnects go to ``chat.connections``; outbox
envelopes are parsed and put on ``chat.outbox`` or ``chat.group-outbox`` keyed by
conversation (receipts and message actions on ``chat.outbox`` keyed by their sender; a ``presence``
as ``StateSet`` on ``chat.presence`` keyed by the user)
(``EnvelopeError`` goes back to the node, which answers the user); device
readings are checked (``chatmq.core.readings``: an invalid one is an ``EnvelopeError``
answered in the device's inbox) and go to ``chat.telemetry``; inbox subscribe and release become
``online``/``offline`` presence records with an epoch. A device's inbox subscribe and release become
``DeviceUp``/``DeviceDown`` on ``chat.devices``, and its outbox envelopes (``shadow_report``,
``shadow_get``), checked here, ``DeviceOut`` there. A user's ``command`` for a device goes to ``chat.devices``
keyed by the device, as ``UserCommand``.

A publish the bus cannot take (Kafka away) is retried with backoff for up to
``outage_grace`` seconds before it is given up (the client then resends it without an
ack); meanwhile later publishes of that connection wait, so their order holds.

Outbound (bus → node): ``chat.deliver.<node>`` records are published to the users'
inboxes. While a user's replay is under way (from an ``online`` until the matching
replay ``done``), live deliveries are held back and sent after the replay, skipping
ids the replay already carried, so a conversation's order holds across reconnects; a live
copy of a replayed message that comes after the replay's end is dropped too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from chatmq.broker.identity import Identity, device_outbox_topic
from chatmq.core.bus.base import Bus, Record
from chatmq.core.control import announce_takeover
from chatmq.core.device_envelopes import parse_device_outbox
from chatmq.core.envelopes import (
    CommandIn,
    EnvelopeLimits,
    MessageIn,
    PresenceIn,
    ReceiptIn,
    TypingIn,
    address,
    envelope_type,
    message_id,
    message_ts,
    parse_outbox,
)
from chatmq.core.errors import ChatMQError
from chatmq.core.ids import conversation_key, now_ms
from chatmq.core.metrics import BUS_PUBLISH_RETRIES, DELIVERY_LATENCY, MESSAGES_IN, MESSAGES_OUT
from chatmq.core.readings import parse_reading
from chatmq.core.records import (
    DELIVERIES,
    BusItem,
    Connected,
    Delivery,
    DeviceDown,
    DeviceOut,
    DeviceUp,
    Disconnected,
    NodeStarted,
    Offline,
    Online,
    Outbox,
    StateSet,
    TelemetryRecord,
    UserCommand,
)
from chatmq.core.topics import CONNECTIONS, DEVICES, GROUP_OUTBOX, OUTBOX, PRESENCE, TELEMETRY, deliver_topic
from chatmq.core.worker import BusWorker

log = logging.getLogger(__name__)

#: Seconds between two ``typing`` envelopes of a user with one state in one conversation (more are dropped).
TYPING_INTERVAL = 1.0


class InboxSink(Protocol):
    """Where deliveries go: the broker node (``ChatBroker.send``)."""

    def send(self, user_id: str, conns: list[object], payload: bytes) -> None: ...

    def send_device(self, device_id: str, conns: list[object], payload: bytes) -> None: ...


@dataclass(slots=True)
class _Inbox:
    conns: dict[int, object] = field(default_factory=dict)
    clients: dict[int, str] = field(default_factory=dict)  # each connection's MQTT client id
    by_client: dict[str, dict[int, object]] = field(default_factory=dict)  # the connections of each client id
    epoch: int = 0
    # the replays under way, by the client id they go to ("": to every connection), with their epoch
    awaiting: dict[str, int] = field(default_factory=dict)
    held: list[tuple[bytes, str | None]] = field(default_factory=list)  # (envelope, client id to skip)
    # the message ids each client's last replay carried ("": every connection's), until its next one
    replayed: dict[str, set[str]] = field(default_factory=dict)

    @property
    def replaying(self) -> bool:
        return bool(self.awaiting)

    def reading(self, only: str | None = None, skip: Collection[str] = ()) -> list[object]:
        """The connections reading this inbox: only those of client id ``only`` when given, none of
        the client ids in ``skip``."""
        if only is not None:
            return [] if only in skip else list(self.by_client.get(only, {}).values())
        if not skip:
            return list(self.conns.values())
        return [c for key, c in self.conns.items() if self.clients.get(key) not in skip]

    def attach(self, conn: object, client_id: str) -> None:
        """``conn`` (of MQTT client id ``client_id``) reads this inbox."""
        key = id(conn)
        self.conns[key] = conn
        self.clients[key] = client_id
        self.by_client.setdefault(client_id, {})[key] = conn

    def detach(self, conn: object) -> str | None:
        """``conn`` no longer reads this inbox; returns its client id when that client has no other
        connection here (in O(1): a wave of thousands of connections of one user leaving must not be
        quadratic), else None."""
        key = id(conn)
        self.conns.pop(key, None)
        client = self.clients.pop(key, None)
        if client is None:
            return None
        mine = self.by_client.get(client)
        if mine is not None:
            mine.pop(key, None)
            if mine:
                return None
            del self.by_client[client]
        return client

    def skips(self, env: bytes, skip: str | None) -> set[str] | None:
        """Whom a live ``env`` skips (``skip``, and the clients whose replay carried it, each forgetting it:
        once is enough); None when nobody is left (a replay to every connection carried it)."""
        skipping = {skip} if skip is not None else set()
        sid = message_id(env)
        if sid is None:
            return skipping
        for client, ids in list(self.replayed.items()):
            if sid in ids:
                ids.discard(sid)
                skipping.add(client)
                if not ids:
                    del self.replayed[client]  # only clients with ids left stay: an empty dict is the fast path
        return None if "" in skipping else skipping


class _Epochs:
    """Strictly increasing epochs, ordered across restarts (nanoseconds since the epoch)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


class NodeGateway(BusWorker):
    """Implements ``chatmq.broker.node.NodeHooks`` and consumes the node's delivery topic."""

    def __init__(self, bus: Bus, node: str, limits: EnvelopeLimits | int, outage_grace: float = 300.0,
                 cluster: bool = False, telemetry: bool = True) -> None:
        """``limits``: the outbox envelope bounds (an int: ``max_payload`` with the default bounds)."""
        super().__init__(bus, f"node.{node}", [deliver_topic(node)])
        self._telemetry_on = telemetry  # False: readings are checked, then dropped
        self.node = node
        self._cluster = cluster  # other nodes exist: announce takeovers of client ids
        self._outage_grace = outage_grace
        self._limits = EnvelopeLimits(max_payload=limits) if isinstance(limits, int) else limits
        self._sink: InboxSink | None = None
        self._inboxes: dict[str, _Inbox] = {}
        self._devices: dict[str, _Inbox] = {}  # devices reading their inbox here (conns and epoch only)
        self._epochs = _Epochs()
        # metrics: children bound once, so the message path only increments
        self._in = {t: MESSAGES_IN.labels(node, t)
                    for t in ("message", "group_message", "receipt", "action", "telemetry", "command", "typing")}
        self._typing: dict[tuple[str, str, str], float] = {}  # (user, conversation, state) -> when it last went on
        self._out = {t: MESSAGES_OUT.labels(node, t) for t in ("message", "ack", "receipt", "event", "error")}
        self._out_other = MESSAGES_OUT.labels(node, "other")
        self._latency = {path: DELIVERY_LATENCY.labels(node, path) for path in ("live", "replay")}

    def attach(self, sink: InboxSink) -> None:
        self._sink = sink

    def online_users(self) -> list[str]:
        return list(self._inboxes)

    async def announce_start(self) -> None:
        """Tell the registry and the connection table that this node (re)starts: whoever was on it
        before is gone (``node_started`` on ``chat.presence`` and ``chat.connections``)."""
        value = NodeStarted(self.node, self._epochs.next(), now_ms())
        await self._bus.publish(PRESENCE, self.node.encode(), value)
        await self._bus.publish(CONNECTIONS, self.node.encode(), value)

    # --- node hooks ------------------------------------------------------------------
    async def connected(self, identity: Identity, client_id: str, transport: str) -> None:
        value = Connected(identity.kind, identity.id, client_id, self.node, transport, now_ms())
        await self._bus.publish(CONNECTIONS, identity.id.encode(), value)
        if client_id and self._cluster:
            await announce_takeover(self._bus, self.node, client_id, identity.kind, identity.id)

    async def disconnected(self, identity: Identity, client_id: str) -> None:
        value = Disconnected(identity.kind, identity.id, client_id, self.node, None, now_ms())
        await self._bus.publish(CONNECTIONS, identity.id.encode(), value)

    async def inbox_subscribed(self, user_id: str, conn: object, client_id: str = "") -> None:
        inbox = self._inboxes.setdefault(user_id, _Inbox())
        inbox.attach(conn, client_id)
        inbox.epoch = self._epochs.next()
        inbox.awaiting[client_id] = inbox.epoch
        inbox.replayed.pop(client_id, None)
        await self._bus.publish(PRESENCE, user_id.encode(), Online(user_id, self.node, inbox.epoch, client_id))

    async def inbox_released(self, user_id: str, conn: object) -> None:
        inbox = self._inboxes.get(user_id)
        if inbox is None:
            return
        client = inbox.detach(conn)
        if client is not None:
            inbox.replayed.pop(client, None)
        if not inbox.conns:
            del self._inboxes[user_id]
            await self._bus.publish(PRESENCE, user_id.encode(), Offline(user_id, self.node, inbox.epoch))

    async def device_subscribed(self, identity: Identity, conn: object) -> None:
        inbox = self._devices.setdefault(identity.id, _Inbox())
        inbox.conns[id(conn)] = conn
        inbox.epoch = self._epochs.next()
        await self._durably(DEVICES, identity.id.encode(),
                            DeviceUp(identity.id, identity.owner, self.node, inbox.epoch, now_ms()))

    async def device_released(self, identity: Identity, conn: object) -> None:
        inbox = self._devices.get(identity.id)
        if inbox is None or inbox.conns.pop(id(conn), None) is None:
            return
        if not inbox.conns:
            del self._devices[identity.id]
            await self._durably(DEVICES, identity.id.encode(),
                                DeviceDown(identity.id, identity.owner, self.node, inbox.epoch, now_ms()))

    async def published(self, identity: Identity, topic: str, payload: bytes, client_id: str = "") -> None:
        if identity.kind == "device" and topic == device_outbox_topic(identity.id):
            device_env = parse_device_outbox(payload, self._limits.max_payload)
            await self._durably(DEVICES, identity.id.encode(),
                                DeviceOut(identity.id, identity.owner, self.node, device_env))
            return
        if identity.kind == "device":
            await self._telemetry(identity, payload)
            self._in["telemetry"].inc()
            return
        env = parse_outbox(payload, self._limits)
        if isinstance(env, CommandIn):
            await self._durably(DEVICES, env.device.encode(), UserCommand(env.device, identity.id, env.id, env.name,
                                                                          env.params_object(), env.timeout_s,
                                                                          now_ms()))
            self._in["command"].inc()
            return
        if isinstance(env, PresenceIn):  # with the user's online/offline records, off the message path
            await self._durably(PRESENCE, identity.id.encode(), StateSet(identity.id, env.state))
            return
        record = Outbox(identity.id, self.node, env, client_id)
        if isinstance(env, TypingIn):
            await self._typed(identity.id, env, record)
        elif isinstance(env, MessageIn):
            if env.group is not None:
                await self._durably(GROUP_OUTBOX, env.group.encode(), record)
                self._in["group_message"].inc()
            else:
                key = conversation_key(identity.id, env.to or "")
                await self._durably(OUTBOX, key.encode(), record)
                self._in["message"].inc()
        else:  # receipts and message actions: keyed by their sender (the router finds an action's conversation)
            await self._durably(OUTBOX, identity.id.encode(), record)
            self._in["receipt" if isinstance(env, ReceiptIn) else "action"].inc()

    async def _typed(self, user: str, env: TypingIn, record: Outbox) -> None:
        """A ``typing`` goes on at most once a second per (user, conversation, state); more are dropped,
        and so is one the bus cannot take now (it is worth nothing later)."""
        conversation = env.group if env.group is not None else conversation_key(user, env.to or "")
        now, key = time.monotonic(), (user, conversation, env.state)
        if now - self._typing.get(key, -TYPING_INTERVAL) < TYPING_INTERVAL:
            return
        if len(self._typing) >= 100_000:
            self._typing.clear()
        self._typing[key] = now
        topic = GROUP_OUTBOX if env.group is not None else OUTBOX
        try:
            await self._bus.publish(topic, conversation.encode(), record)
        except ChatMQError as exc:
            log.info("a typing of %s dropped: %s", user, exc)
            return
        self._in["typing"].inc()

    async def _telemetry(self, identity: Identity, payload: bytes) -> None:
        """Check the reading (``EnvelopeError`` goes back to the device); put it on the bus unless
        telemetry is off (embedded without ``influx_url``: nothing would read it)."""
        valid = parse_reading(payload, self._limits.max_payload)
        if not self._telemetry_on:
            return
        reading: dict[str, int | float] = dict(valid.fields) if valid.ts is None else {**valid.fields, "ts": valid.ts}
        record = TelemetryRecord(identity.id, identity.owner, reading, now_ms())
        await self._durably(TELEMETRY, identity.id.encode(), record)

    async def _durably(self, topic: str, key: bytes, value: BusItem) -> None:
        """Publish, retrying retriable bus errors with backoff for up to ``outage_grace`` seconds."""
        deadline = time.monotonic() + self._outage_grace
        pause = 0.2
        while True:
            try:
                await self._bus.publish(topic, key, value)
                return
            except ChatMQError as exc:
                if not exc.retriable or time.monotonic() + pause > deadline:
                    raise
                log.warning("bus unavailable (%s); retrying a publish to %s in %.1fs", exc, topic, pause)
                BUS_PUBLISH_RETRIES.labels(topic).inc()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    # --- deliveries ------------------------------------------------------------------
    async def process(self, records: list[Record]) -> None:
        for item in DELIVERIES.read_all(records):
            await self._deliver(item)

    async def _deliver(self, item: Delivery) -> None:
        if item.device is not None:
            device = self._devices.get(item.device)
            if device is not None and self._sink is not None:
                conns = list(device.conns.values())
                for env in item.envs:
                    self._sink.send_device(item.device, conns, bytes(env))
            return
        if item.users is not None:  # a group fan-out: one envelope for several members
            template = bytes(item.env)
            for user in item.users:
                await self._live(user, [address(template, user)])
            return
        if item.user is None:
            return
        inbox = self._inboxes.get(item.user)
        if inbox is None:
            return  # not on this node (any more): messages stay pending in the store
        user, envs = item.user, [bytes(e) for e in item.envs]
        if item.replay is None and item.client is not None:  # an answer to one connection: never held
            await self._send(user, envs, only=item.client)
            return
        if item.replay is None:
            await self._live(user, envs, item.skip)
            return
        target = item.client or ""
        if inbox.awaiting.get(target) != item.epoch:
            return  # a replay superseded by a newer subscription of that client: that one's replay follows
        if item.replay == "page":
            carried = {i for e in envs if (i := message_id(e)) is not None}
            if carried:
                inbox.replayed.setdefault(target, set()).update(carried)
            await self._send(user, envs, "replay", only=item.client)
        elif item.replay == "done":
            del inbox.awaiting[target]
            if inbox.awaiting:
                return  # another device's replay is under way: held until its end too
            held, inbox.held = inbox.held, []
            for held_env, held_skip in held:
                skipping = inbox.skips(held_env, held_skip)
                if skipping is not None:
                    await self._send(user, [held_env], skip=skipping)
            # kept until the next subscription: a live copy of a replayed message may still come
            # (a router that looked the user up after the replay read the store publishes after it)

    async def _live(self, user: str, envs: list[bytes], skip: str | None = None) -> None:
        """Live deliveries (to every connection of the user but client id ``skip``): held back while
        the user's replay is under way, sent otherwise."""
        inbox = self._inboxes.get(user)
        if inbox is None:
            return  # not on this node (any more): messages stay pending in the store
        if inbox.replaying:
            inbox.held.extend((e, skip) for e in envs)
            return
        if inbox.replayed:
            for e in envs:
                skipping = inbox.skips(e, skip)
                if skipping is not None:
                    await self._send(user, [e], skip=skipping)
            return
        await self._send(user, envs, skip=() if skip is None else (skip,))

    async def _send(self, user: str, envs: list[bytes], path: str = "live", *, only: str | None = None,
                    skip: Collection[str] = ()) -> None:
        """Write ``envs`` (JSON bytes, made once upstream) to ``user``'s connections (only those of client
        id ``only``, none of the client ids in ``skip``); counts them by type and measures each message's latency
        from its server timestamp (``path``: live or replay)."""
        if self._sink is None:
            raise RuntimeError("gateway has no broker attached")
        inbox = self._inboxes.get(user)
        if inbox is None:
            return
        conns = inbox.reading(only, skip)
        if not conns:
            return
        now = time.time()
        latency = self._latency[path]
        for env in envs:
            self._sink.send(user, conns, env)
            kind = envelope_type(env)
            self._out.get(kind, self._out_other).inc(len(conns))
            if kind == "message":
                ts = message_ts(env)
                if ts is not None:
                    latency.observe(max(0.0, now - ts / 1000))
