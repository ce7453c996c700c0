"""The broker's subscription index: which subscribers want a published topic, and at what QoS.

Synchronous and free of I/O (no sockets, no asyncio, no logging), so it is tested on its own
against a brute-force matcher (after NATS ``server/sublist.go`` and Mosquitto ``src/subs.c``).

Structure
---------
* Exact filters (no ``+`` or ``#``) live in one dict, ``filter -> {subscriber: qos}``: a
  publish finds them with a single lookup.
* Wildcard filters live in a trie keyed by level. Each node has ``children`` (literal
  levels), ``plus`` (the ``+`` child), ``subs`` (filters that end at this node) and
  ``hash_subs`` (filters ``<this node>/#``). A publish walks only the branches its levels
  select, so the cost of ``match`` grows with the matching subscriptions and the depth of the
  topic, not with the total number of subscriptions.
* A third dict, ``subscriber -> {filter: qos}``, serves ``filters_of`` and ``unsubscribe_all``.
* Empty trie nodes are pruned on unsubscribe, so churn does not grow memory. Every walk is
  iterative: a filter of 30,000 empty levels cannot exhaust the Python stack.

Rules (MQTT 3.1.1 §4.7, §1.5.3, §3.3.5, §3.8.4, §3.10.4)
---------------------------------------------------------
* ``/`` separates levels. Levels may be empty: ``a//b``, ``/a`` and ``a/`` are valid and
  distinct from ``a/b``, ``a`` and ``a`` respectively; no normalisation of any kind is done,
  and filters and names are case-sensitive ([MQTT-4.7.3-4]).
* ``+`` matches exactly one level, including an empty one: ``a/+`` matches ``a/b`` and
  ``a/`` but not ``a`` or ``a/b/c``. It must occupy a whole level: ``a+``, ``a/+b`` are
  invalid filters ([MQTT-4.7.1-3]).
* ``#`` matches its parent level and any number of child levels: ``a/#`` matches ``a``,
  ``a/``, ``a/b`` and ``a/b/c``; ``#`` alone matches every topic (but see ``$``). It must be
  alone in its level and the last level: ``a#``, ``a/#/b``, ``a/b#`` are invalid
  ([MQTT-4.7.1-2]).
* A topic name whose first character is ``$`` (``$SYS/...``) is not matched by a filter whose
  first level is ``+`` or ``#``; ``$SYS/#`` and ``$SYS/+/x`` do match it ([MQTT-4.7.2-1]).
* A topic name must not contain ``+`` or ``#`` ([MQTT-4.7.1-1], [MQTT-3.3.2-2]).
* Filters and names must be at least one character long ([MQTT-4.7.3-1]), must not contain
  U+0000 ([MQTT-4.7.3-2]), must be well-formed UTF-8 (no lone surrogates, [MQTT-1.5.3-1])
  and must not encode to more than 65,535 bytes ([MQTT-4.7.3-3]). Other control characters
  are "SHOULD NOT" in the spec and are accepted here.
* Subscribing again with the same subscriber and filter replaces the QoS of that one
  subscription ([MQTT-3.8.4-3]); unsubscribing compares filters character by character, so
  ``unsubscribe(s, "a/+")`` never removes ``a/b`` ([MQTT-3.10.4-1]).
* A subscriber whose several filters match one topic appears once in ``match``, with the
  maximum QoS over those filters ([MQTT-3.3.5-1]).

Errors are ``TopicIndexError`` subclasses (``InvalidFilterError``, ``InvalidTopicError``,
``InvalidQoSError``); nothing else is raised for any ``str`` input. An invalid argument leaves
the index unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from chatmq.core.errors import ChatMQError

__all__ = [
    "MAX_TOPIC_BYTES",
    "InvalidFilterError",
    "InvalidQoSError",
    "InvalidTopicError",
    "TopicIndex",
    "TopicIndexError",
    "validate_filter",
    "validate_topic",
]

S = TypeVar("S", bound=Hashable)

MAX_TOPIC_BYTES = 65535
"""The longest topic filter or name, in UTF-8 bytes ([MQTT-4.7.3-3])."""

_SHOW_CHARS = 60


def _show(value: object) -> str:
    """A short printable form of ``value`` for an error message."""
    if isinstance(value, str) and len(value) > _SHOW_CHARS:
        return f"{value[:_SHOW_CHARS]!r}… ({len(value)} characters)"
    return repr(value)


class TopicIndexError(ChatMQError):
    """Root of the errors of the topic index."""


class _InvalidValueError(TopicIndexError):
    kind = "value"

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {self.kind} {_show(value)}: {reason}")


class InvalidFilterError(_InvalidValueError):
    """A topic filter breaks the rules of MQTT 3.1.1 §4.7; ``reason`` says which."""

    kind = "topic filter"


class InvalidTopicError(_InvalidValueError):
    """A topic name breaks the rules of MQTT 3.1.1 §4.7; ``reason`` says which."""

    kind = "topic name"


class InvalidQoSError(_InvalidValueError):
    """A QoS other than 0, 1 or 2."""

    kind = "QoS"


def _common_reason(text: object) -> str | None:
    """Why ``text`` is neither a valid filter nor a valid name, or None if it may be either."""
    if not isinstance(text, str):
        return f"must be a str, not {type(text).__name__}"
    if not text:
        return "must be at least one character long [MQTT-4.7.3-1]"
    if "\x00" in text:
        return "must not contain U+0000 [MQTT-4.7.3-2]"
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return "must be well-formed UTF-8, without surrogate code points [MQTT-1.5.3-1]"
    if size > MAX_TOPIC_BYTES:
        return f"encodes to {size} UTF-8 bytes, more than {MAX_TOPIC_BYTES} [MQTT-4.7.3-3]"
    return None


def validate_topic(topic: str) -> None:
    """Raise ``InvalidTopicError`` unless ``topic`` is a valid topic name for a PUBLISH."""
    reason = _common_reason(topic)
    if reason is None and ("+" in topic or "#" in topic):
        reason = "a topic name must not contain the wildcards '+' or '#' [MQTT-4.7.1-1]"
    if reason is not None:
        raise InvalidTopicError(topic, reason)


def validate_filter(topic_filter: str) -> None:
    """Raise ``InvalidFilterError`` unless ``topic_filter`` is a valid topic filter."""
    reason = _common_reason(topic_filter)
    if reason is None and ("+" in topic_filter or "#" in topic_filter):
        levels = topic_filter.split("/")
        last = len(levels) - 1
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != last):
                reason = "'#' must be alone in its level and be the last level [MQTT-4.7.1-2]"
                break
            if "+" in level and level != "+":
                reason = "'+' must occupy an entire level [MQTT-4.7.1-3]"
                break
    if reason is not None:
        raise InvalidFilterError(topic_filter, reason)


def _validate_qos(qos: int) -> None:
    if type(qos) is not int or not 0 <= qos <= 2:
        raise InvalidQoSError(qos, "must be 0, 1 or 2")


def _merge_max(out: dict[S, int], subs: dict[S, int]) -> None:
    """Fold ``subs`` into ``out``, keeping the higher QoS where a subscriber is in both."""
    if not out:
        out.update(subs)
        return
    for subscriber, qos in subs.items():
        if qos > out.get(subscriber, -1):
            out[subscriber] = qos


class _Node(Generic[S]):
    """One level of the wildcard trie."""

    __slots__ = ("children", "hash_subs", "plus", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node[S]] = {}
        self.plus: _Node[S] | None = None
        self.subs: dict[S, int] = {}
        self.hash_subs: dict[S, int] = {}

    def is_empty(self) -> bool:
        return not (self.children or self.plus is not None or self.subs or self.hash_subs)


def _is_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


class TopicIndex(Generic[S]):
    """Subscriptions of subscribers (any hashable key) to topic filters, each with a QoS.

    One subscription is one ``(subscriber, filter)`` pair. See the module docstring for the
    matching rules.
    """

    __slots__ = ("_by_subscriber", "_count", "_exact", "_root")

    def __init__(self) -> None:
        self._exact: dict[str, dict[S, int]] = {}
        self._root: _Node[S] = _Node()
        self._by_subscriber: dict[S, dict[str, int]] = {}
        self._count = 0

    def __len__(self) -> int:
        """The number of subscriptions."""
        return self._count

    def __repr__(self) -> str:
        return f"<TopicIndex subscriptions={self._count} subscribers={len(self._by_subscriber)}>"

    def subscriber_count(self) -> int:
        """The number of subscribers with at least one subscription."""
        return len(self._by_subscriber)

    def filters_of(self, subscriber: S) -> dict[str, int]:
        """A copy of ``subscriber``'s subscriptions as ``{filter: qos}``, in subscription order."""
        return dict(self._by_subscriber.get(subscriber, {}))

    def qos_of(self, subscriber: S, topic_filter: str) -> int | None:
        """The QoS of ``subscriber``'s subscription to exactly ``topic_filter``, or None."""
        own = self._by_subscriber.get(subscriber)
        return None if own is None else own.get(topic_filter)

    def subscribe(self, subscriber: S, topic_filter: str, qos: int) -> bool:
        """Subscribe ``subscriber`` to ``topic_filter`` with ``qos``.

        Returns True for a new subscription, False when it replaced the QoS of the same
        subscriber's subscription to the same filter ([MQTT-3.8.4-3]).
        Raises ``InvalidFilterError`` or ``InvalidQoSError``.
        """
        validate_filter(topic_filter)
        _validate_qos(qos)
        own = self._by_subscriber.get(subscriber)
        if own is None:
            own = self._by_subscriber[subscriber] = {}
        is_new = topic_filter not in own
        own[topic_filter] = qos
        if _is_wildcard(topic_filter):
            self._terminal(topic_filter)[subscriber] = qos
        else:
            subs = self._exact.get(topic_filter)
            if subs is None:
                subs = self._exact[topic_filter] = {}
            subs[subscriber] = qos
        if is_new:
            self._count += 1
        return is_new

    def unsubscribe(self, subscriber: S, topic_filter: str) -> bool:
        """Remove ``subscriber``'s subscription to exactly ``topic_filter`` ([MQTT-3.10.4-1]).

        Returns False when there was none. Raises ``InvalidFilterError``.
        """
        validate_filter(topic_filter)
        own = self._by_subscriber.get(subscriber)
        if own is None or topic_filter not in own:
            return False
        del own[topic_filter]
        if not own:
            del self._by_subscriber[subscriber]
        self._remove(subscriber, topic_filter)
        self._count -= 1
        return True

    def unsubscribe_all(self, subscriber: S) -> int:
        """Remove every subscription of ``subscriber``; returns how many there were."""
        own = self._by_subscriber.pop(subscriber, None)
        if own is None:
            return 0
        for topic_filter in own:
            self._remove(subscriber, topic_filter)
        self._count -= len(own)
        return len(own)

    def match(self, topic: str, *, validated: bool = False) -> dict[S, int]:
        """Every subscriber with a filter matching ``topic``, with its highest matching QoS.

        The dict is new and belongs to the caller. Raises ``InvalidTopicError``, unless the caller
        says with ``validated`` that ``validate_topic`` already accepted ``topic``.
        """
        if not validated:
            validate_topic(topic)
        exact = self._exact.get(topic)
        out: dict[S, int] = dict(exact) if exact is not None else {}
        root = self._root
        if not root.children and root.plus is None and not root.hash_subs:
            return out
        levels = topic.split("/")
        depth = len(levels)
        stack: list[tuple[_Node[S], int]] = []
        # The root is handled apart for the "$" rule [MQTT-4.7.2-1].
        if topic[0] != "$":
            if root.hash_subs:
                _merge_max(out, root.hash_subs)
            if root.plus is not None:
                stack.append((root.plus, 1))
        child = root.children.get(levels[0])
        if child is not None:
            stack.append((child, 1))
        while stack:
            node, i = stack.pop()
            if node.hash_subs:
                _merge_max(out, node.hash_subs)
            if i == depth:
                if node.subs:
                    _merge_max(out, node.subs)
                continue
            child = node.children.get(levels[i])
            if child is not None:
                stack.append((child, i + 1))
            if node.plus is not None:
                stack.append((node.plus, i + 1))
        return out

    # -- trie upkeep -------------------------------------------------------------------------

    def _terminal(self, topic_filter: str) -> dict[S, int]:
        """The subscriber dict of a wildcard filter's last node, creating the path to it."""
        levels = topic_filter.split("/")
        hashed = levels[-1] == "#"
        if hashed:
            levels.pop()
        node = self._root
        for level in levels:
            nxt = node.plus if level == "+" else node.children.get(level)
            if nxt is None:
                nxt = _Node()
                if level == "+":
                    node.plus = nxt
                else:
                    node.children[level] = nxt
            node = nxt
        return node.hash_subs if hashed else node.subs

    def _remove(self, subscriber: S, topic_filter: str) -> None:
        """Drop one subscription from the exact dict or the trie (the caller keeps the counts)."""
        if not _is_wildcard(topic_filter):
            subs = self._exact[topic_filter]
            del subs[subscriber]
            if not subs:
                del self._exact[topic_filter]
            return
        levels = topic_filter.split("/")
        hashed = levels[-1] == "#"
        if hashed:
            levels.pop()
        trail: list[tuple[_Node[S], str]] = []
        node = self._root
        for level in levels:
            nxt = node.plus if level == "+" else node.children.get(level)
            if nxt is None:  # pragma: no cover - the subscriber dict says the path exists
                return
            trail.append((node, level))
            node = nxt
        terminal = node.hash_subs if hashed else node.subs
        terminal.pop(subscriber, None)
        # Prune the nodes this removal left empty, deepest first.
        for parent, level in reversed(trail):
            if not node.is_empty():
                break
            if level == "+":
                parent.plus = None
            else:
                del parent.children[level]
            node = parent
