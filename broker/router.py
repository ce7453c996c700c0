"""``Router``: who gets a published message, at what QoS, and the node's retained messages.

It replaces amqtt's ``Broker._run_broadcast`` (a task per message that scans every subscription
filter and delivers at the subscription's QoS) with one synchronous call per publish:

* subscribers come from ``TopicIndex.match`` (cost grows with the matches, not the subscriptions),
  each once, at the maximum QoS of its matching filters ([MQTT-3.3.5-1]);
* the delivered QoS is ``min(publish QoS, subscription QoS)`` ([MQTT-3.8.4-6]);
* a receive check (``may_receive``, the node's ACL) is asked per subscriber;
* each message goes into the subscriber's ``Outbox`` with RETAIN clear ([MQTT-3.3.1-9]).

Retained messages ([MQTT-3.3.1-5] .. [MQTT-3.3.1-11]): a PUBLISH with RETAIN and a payload
replaces the topic's retained message, one with an empty payload removes it. They are sent,
with RETAIN set, only to a subscription just made, only for topics its filter matches, and only
where ``may_receive`` allows: never to a session merely because it (re)connected.

No I/O and no awaiting: the outboxes do the writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from chatmq.broker.outbox import DeliveryLimits, DeliveryStats, Outbox
from chatmq.broker.topic_index import TopicIndex, TopicIndexError, validate_topic
from chatmq.broker.wire import SubscriptionOptions, encode_topic, encode_varint

ReceiveCheck = Callable[[Hashable, str], bool]
"""``may_receive(subscriber, topic)``: whether the node's ACL lets ``subscriber`` receive ``topic``."""

_TOPIC_CACHE_LIMIT = 50_000


def _allow_all(_subscriber: Hashable, _topic: str) -> bool:
    return True


DEFAULT_OPTIONS = SubscriptionOptions(0)


@dataclass(frozen=True, slots=True)
class SubscriptionExtras:
    """What an MQTT 5 subscription adds to its filter and QoS: its options and its identifier."""

    options: SubscriptionOptions = DEFAULT_OPTIONS
    identifier: int | None = None

    @property
    def routed(self) -> bool:
        """Whether routing needs them (No Local, Retain As Published or an identifier); retain handling
        is done with at SUBSCRIBE, so a subscription without these routes as an MQTT 3.1.1 one."""
        return self.identifier is not None or self.options.no_local or self.options.retain_as_published


SHARE_PREFIX = "$share/"


@dataclass(slots=True)
class SharedGroup:
    """The members of one shared subscription ``$share/{group}/{filter}`` (MQTT 5 §4.8.2): each
    message matching ``topic_filter`` goes to one of them, in turn."""

    topic_filter: str
    members: dict[str, int]
    """client id -> granted QoS, in the order they joined."""
    turn: int = 0


def shared_key(topic_filter: str) -> tuple[str, str] | None:
    """For ``$share/{group}/{filter}``: the router's key of the group (never a client id: it holds
    U+0000, which no client id may) and the filter; None for another filter. Raises
    ``TopicIndexError`` for a share name that is empty or holds ``+`` or ``#``, or no filter
    ([MQTT-4.8.2-1], [MQTT-4.8.2-2]); the filter itself is checked by the index."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, sep, inner = topic_filter[len(SHARE_PREFIX):].partition("/")
    if not group or not sep or not inner or "+" in group or "#" in group:
        raise TopicIndexError(f"invalid shared subscription {topic_filter!r}")
    return f"\x00{group}\x00{inner}", inner


@dataclass(slots=True)
class Retained:
    """A retained message: the topic's last PUBLISH with RETAIN and a payload."""

    topic: str
    payload: bytes
    qos: int
    forwarded: bytes = b""
    """The publisher's MQTT 5 properties passed on (``wire.forwarded_properties``)."""
    expires_at: float = 0.0
    """When its MQTT 5 message expiry interval ends (``time.monotonic``; 0: never): then it is dropped."""


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (both valid), with the ``$`` rule ([MQTT-4.7.2-1])."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    levels = topic.split("/")
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)


class Router:
    """The node's subscriptions, outboxes and retained messages, by subscriber key (the client id)."""

    def __init__(self, limits: DeliveryLimits | None = None, may_receive: ReceiveCheck | None = None) -> None:
        self.limits = limits or DeliveryLimits()
        self.stats = DeliveryStats()
        self.index: TopicIndex[str] = TopicIndex()
        self.outboxes: dict[str, Outbox] = {}
        self.retained: dict[str, Retained] = {}
        self._may_receive: ReceiveCheck = may_receive or _allow_all
        self._topics: dict[str, bytes] = {}
        self.extras: dict[str, dict[str, SubscriptionExtras]] = {}
        """MQTT 5 subscriptions' options and identifiers, ``client id -> {filter: extras}``; only
        sessions that subscribed with MQTT 5 have an entry, so routing to the others costs nothing."""
        self.shared: dict[str, SharedGroup] = {}
        """Shared subscriptions by group key (``shared_key``); the index holds each group once, under its key."""
        self.pressed: Outbox | None = None
        """The last outbox a ``publish`` left pressed (``Outbox.pressed``), for the publisher to wait on."""

    # --- sessions ----------------------------------------------------------------
    def outbox(self, client_id: str) -> Outbox:
        """The session's outbox, made on first use."""
        box = self.outboxes.get(client_id)
        if box is None:
            box = self.outboxes[client_id] = Outbox(self.limits, self.stats)
        return box

    def forget(self, client_id: str) -> None:
        """The session ended for good: drop its subscriptions and everything it was owed (what came by
        shared subscriptions and may go on goes to other members first, ``member_left``)."""
        self.member_left(client_id, ending=True)
        for key in [k for k, group in self.shared.items() if client_id in group.members]:
            self._leave(key, client_id)
        self.index.unsubscribe_all(client_id)
        self.extras.pop(client_id, None)
        box = self.outboxes.pop(client_id, None)
        if box is not None:
            box.clear()

    # --- subscriptions -----------------------------------------------------------
    def subscribe(self, client_id: str, topic_filter: str, qos: int, *, replay: bool = True,
                  extras: SubscriptionExtras | None = None) -> int:
        """Add (or re-grade) a subscription (with its MQTT 5 ``extras``) and, with ``replay``, send the
        retained messages it matches. Returns the granted QoS, or 0x80 for an invalid filter (SUBACK
        failure code)."""
        granted = min(max(qos, 0), 2)
        try:
            shared = shared_key(topic_filter)
            if shared is not None:  # no retained messages for a shared subscription
                key, inner = shared
                group = self.shared.get(key)
                if group is None:
                    self.index.subscribe(key, inner, 2)
                    group = self.shared[key] = SharedGroup(inner, {})
                group.members[client_id] = granted
                return granted
            self.index.subscribe(client_id, topic_filter, granted)
        except TopicIndexError:
            return 0x80
        if extras is not None and extras.routed:
            self.extras.setdefault(client_id, {})[topic_filter] = extras
        else:  # routed as a 3.1.1 subscription: no per-message option work
            own = self.extras.get(client_id)
            if own is not None:
                own.pop(topic_filter, None)
                if not own:
                    del self.extras[client_id]
        if replay:
            self.replay_retained(client_id, topic_filter, granted)
        return granted

    def unsubscribe(self, client_id: str, topic_filter: str) -> bool:
        """Remove one subscription; False when there was none (or the filter is invalid)."""
        own = self.extras.get(client_id)
        if own is not None:
            own.pop(topic_filter, None)
            if not own:
                del self.extras[client_id]
        try:
            shared = shared_key(topic_filter)
            if shared is not None:
                return self._leave(shared[0], client_id)
            return self.index.unsubscribe(client_id, topic_filter)
        except TopicIndexError:
            return False

    def _leave(self, key: str, client_id: str) -> bool:
        group = self.shared.get(key)
        if group is None or group.members.pop(client_id, None) is None:
            return False
        if not group.members:
            del self.shared[key]
            self.index.unsubscribe(key, group.topic_filter)
        return True

    def _member(self, group: SharedGroup, topic: str, leaving: str | None = None) -> str | None:
        """The group's next member to get a message on ``topic``: a connected one in turn, else one
        whose persistent session queues it; never ``leaving``."""
        members = list(group.members)
        count = len(members)
        fallback = None
        for step in range(count):
            index = (group.turn + step) % count
            client_id = members[index]
            if client_id == leaving or not self._may_receive(client_id, topic):
                continue
            box = self.outboxes.get(client_id)
            if box is None:
                continue
            if box.online:
                group.turn = index + 1
                return client_id
            if fallback is None:
                fallback = client_id
        return fallback

    def member_left(self, client_id: str, *, ending: bool = False) -> int:
        """``client_id``'s connection ended (its session too, with ``ending``): its messages from shared
        subscriptions that may go on (``Outbox.take_shared``) go to other members of their groups
        (§4.8.2), queued there to be sent with that member's own packet ids. Returns how many were given on."""
        box = self.outboxes.get(client_id) if self.shared else None
        if box is None:
            return 0
        moved = 0
        for topic_raw, payload, qos, retain, forwarded, expires_at, key in box.take_shared(ending):
            group = self.shared.get(key)
            if group is None:
                continue
            topic = topic_raw[2:].decode("utf-8")
            other = self._member(group, topic, leaving=client_id)
            if other is None:
                continue
            granted = group.members[other]
            self.outboxes[other].push(topic_raw, payload, min(qos, granted), retain, forwarded, expires_at, key)
            moved += 1
        return moved

    def replay_retained(self, client_id: str, topic_filter: str, qos: int) -> int:
        """Send the retained messages matching ``topic_filter`` to ``client_id`` (RETAIN set). Returns how many."""
        box = self.outbox(client_id)
        if "+" in topic_filter or "#" in topic_filter:
            found = [r for topic, r in self.retained.items() if filter_matches(topic_filter, topic)]
        else:
            one = self.retained.get(topic_filter)
            found = [one] if one is not None else []
        sent = 0
        now = time.monotonic()
        for message in found:
            if message.expires_at and message.expires_at <= now:
                self.retained.pop(message.topic, None)  # [MQTT-3.3.2-5]: an expired retained message goes
                continue
            if self._may_receive(client_id, message.topic):
                extra = self.extras.get(client_id, {}).get(topic_filter)
                forwarded = message.forwarded
                if extra is not None and extra.identifier is not None:
                    forwarded = b"\x0b" + encode_varint(extra.identifier) + forwarded
                box.push(self.encoded(message.topic), message.payload, min(qos, message.qos), True,
                         forwarded, message.expires_at)
                sent += 1
        return sent

    # --- publishing --------------------------------------------------------------
    def encoded(self, topic: str) -> bytes:
        """``topic`` as a length-prefixed UTF-8 string, cached; raises ``InvalidTopicError`` for an
        invalid topic name (a cached topic was valid)."""
        raw = self._topics.get(topic)
        if raw is None:
            validate_topic(topic)
            if len(self._topics) >= _TOPIC_CACHE_LIMIT:
                self._topics.clear()
            raw = self._topics[topic] = encode_topic(topic)
        return raw

    def retain(self, topic: str, payload: bytes, qos: int, forwarded: bytes = b"", expires_at: float = 0.0) -> None:
        """Store ``topic``'s retained message, or remove it when ``payload`` is empty ([MQTT-3.3.1-10])."""
        if payload:
            self.retained[topic] = Retained(topic, payload, qos, forwarded, expires_at)
        else:
            self.retained.pop(topic, None)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False, forwarded: bytes = b"",
                expires_at: float = 0.0, publisher: str | None = None) -> int:
        """Route one message; ``retain`` also stores (or, with an empty payload, clears) the topic's
        retained message. ``forwarded`` and ``expires_at`` are its MQTT 5 properties (``Outbox.push``).
        A subscriber with MQTT 5 subscriptions gets it by their options (``_by_options``: no local
        against ``publisher``, retain as published) with their identifiers.
        Returns the number of subscribers it was queued for.
        Raises ``InvalidTopicError`` for an invalid topic name."""
        encoded = self.encoded(topic)
        if retain:
            self.retain(topic, payload, qos, forwarded, expires_at)
        matches = self.index.match(topic, validated=True)
        if not matches:
            return 0
        outboxes = self.outboxes
        may_receive = self._may_receive
        check = may_receive is not _allow_all
        extras = self.extras
        shared = self.shared
        queued = 0
        for client_id, sub_qos in matches.items():
            if shared and client_id in shared:
                group = shared[client_id]
                member = self._member(group, topic)
                if member is not None:
                    grade = group.members[member]
                    target = outboxes[member]
                    if target.push(encoded, payload, qos if qos < grade else grade, False, forwarded, expires_at,
                                   client_id):
                        queued += 1
                    if target.pressed:
                        self.pressed = target
                continue
            box = outboxes.get(client_id)
            if box is None or (check and not may_receive(client_id, topic)):
                continue
            flag, carried = False, forwarded
            if extras and client_id in extras:
                chosen = self._by_options(client_id, topic, retain, client_id == publisher, forwarded)
                if chosen is None:
                    continue
                flag, carried = chosen
            if box.push(encoded, payload, qos if qos < sub_qos else sub_qos, flag, carried, expires_at):
                queued += 1
            if box.pressed:
                self.pressed = box
        return queued

    def _by_options(self, client_id: str, topic: str, retain: bool, own: bool,
                    forwarded: bytes) -> tuple[bool, bytes] | None:
        """How a message goes to a subscriber with MQTT 5 subscriptions, over all its filters that
        match ``topic``: not at all when each is No Local and it published the message itself
        ([MQTT-3.8.3-3]); the RETAIN flag as published if one is Retain As Published ([MQTT-3.3.1-12],
        else 0, [MQTT-3.3.1-13]); and every matching subscription's identifier ([MQTT-3.3.4-3])."""
        own_extras = self.extras[client_id]
        delivered = False
        keep_retain = False
        identifiers = b""
        for topic_filter in self.index.filters_of(client_id):
            if not filter_matches(topic_filter, topic):
                continue
            extra = own_extras.get(topic_filter)
            options = extra.options if extra is not None else DEFAULT_OPTIONS
            if own and options.no_local:
                continue
            delivered = True
            keep_retain = keep_retain or options.retain_as_published
            if extra is not None and extra.identifier is not None:
                identifiers += b"\x0b" + encode_varint(extra.identifier)
        if not delivered:
            return None
        return retain and keep_retain, identifiers + forwarded

    def deliver(self, client_id: str, topic: str, payload: bytes, qos: int) -> bool:
        """Queue a message for one session directly (the chat node's inbox deliveries), at the lower
        of ``qos`` and the QoS of the session's subscription to exactly ``topic``, if it has one."""
        box = self.outboxes.get(client_id)
        if box is None:
            return False
        granted = self.index.qos_of(client_id, topic)
        return box.push(self.encoded(topic), payload, qos if granted is None else min(qos, granted))
