"""Tests of ``chatmq.broker.topic_index``.

* Conformance cases named by MQTT 3.1.1 clause (``test_MQTT_4_7_1_2_...`` is [MQTT-4.7.1-2]).
* Unit cases for every method.
* Property tests: random subscribe/unsubscribe/unsubscribe_all/match sequences over a small
  alphabet of levels, checked against ``ref_matches``, a brute-force matcher written plainly
  here (after NATS ``sublist_test.go``).
* A fuzz test: arbitrary text into every method raises nothing but ``TopicIndexError``.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from chatmq.broker.topic_index import (
    MAX_TOPIC_BYTES,
    InvalidFilterError,
    InvalidQoSError,
    InvalidTopicError,
    TopicIndex,
    TopicIndexError,
)
from chatmq.core.errors import ChatMQError

# -- the brute-force reference -------------------------------------------------------------


def ref_valid(text: str, *, is_filter: bool) -> bool:
    """Whether ``text`` is a valid topic filter (or name), checked the slow, obvious way."""
    if len(text) == 0 or "\x00" in text:
        return False
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return False
    if len(text.encode("utf-8")) > 65535:
        return False
    levels = text.split("/")
    for i, level in enumerate(levels):
        if not is_filter and ("+" in level or "#" in level):
            return False
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
    return True


def ref_matches(topic_filter: str, topic: str) -> bool:
    """Whether one valid filter matches one valid topic name, level by level."""
    if topic.startswith("$") and topic_filter.split("/")[0] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f_level in enumerate(f_levels):
        if f_level == "#":
            return True
        if i >= len(t_levels):
            return False
        if f_level != "+" and f_level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def ref_match(subscriptions: dict[tuple[str, str], int], topic: str) -> dict[str, int]:
    """``TopicIndex.match`` over a plain ``{(subscriber, filter): qos}`` dict."""
    out: dict[str, int] = {}
    for (subscriber, topic_filter), qos in subscriptions.items():
        if ref_matches(topic_filter, topic):
            out[subscriber] = max(qos, out.get(subscriber, -1))
    return out


def matching(topic_filter: str, topic: str) -> bool:
    """Whether the index, holding only ``topic_filter``, delivers ``topic``."""
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", topic_filter, 0)
    return "s" in index.match(topic)


# -- conformance: MQTT 3.1.1 §4.7 and friends --------------------------------------------


def test_reference_matcher_agrees_with_spec_examples() -> None:
    """The reference itself, on the non-normative examples of §4.7.1."""
    assert ref_matches("sport/tennis/player1/#", "sport/tennis/player1")
    assert ref_matches("sport/#", "sport")
    assert not ref_matches("sport/+", "sport")
    assert ref_matches("sport/+", "sport/")
    assert not ref_matches("#", "$SYS/x")


@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "#", "a+b", "sport/tennis#", "x/y+"])
def test_MQTT_4_7_1_1_wildcards_are_invalid_in_topic_names(topic: str) -> None:
    """[MQTT-4.7.1-1], [MQTT-3.3.2-2]: a PUBLISH topic name must not contain ``+`` or ``#``."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidTopicError, match=r"MQTT-4\.7\.1-1"):
        index.match(topic)


@pytest.mark.parametrize("topic_filter", ["a/#/b", "#/a", "#/", "#/#", "sport/tennis/#/ranking"])
def test_MQTT_4_7_1_2_hash_must_be_last(topic_filter: str) -> None:
    """[MQTT-4.7.1-2]: ``#`` must be the last character of the filter."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.1-2"):
        index.subscribe("s", topic_filter, 0)
    assert len(index) == 0


@pytest.mark.parametrize("topic_filter", ["sport/tennis#", "a#", "#a", "a/b#", "##", "a/#b"])
def test_MQTT_4_7_1_2_hash_must_be_alone_in_its_level(topic_filter: str) -> None:
    """[MQTT-4.7.1-2]: ``#`` on its own or following a level separator."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.1-2"):
        index.subscribe("s", topic_filter, 0)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("sport/tennis/player1", True),
        ("sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/score/wimbledon", True),
        ("sport/tennis/player1/", True),
        ("sport/tennis/player2", False),
        ("sport/tennis", False),
        ("Sport/tennis/player1", False),
    ],
)
def test_MQTT_4_7_1_2_hash_matches_parent_and_any_children(topic: str, expected: bool) -> None:
    """§4.7.1.2 example: ``sport/tennis/player1/#``."""
    assert matching("sport/tennis/player1/#", topic) is expected


def test_MQTT_4_7_1_2_sport_hash_matches_sport() -> None:
    """§4.7.1.2: ``sport/#`` also matches the singular ``sport``, the parent level."""
    assert matching("sport/#", "sport")
    assert matching("sport/#", "sport/")
    assert not matching("sport/#", "sports")


@pytest.mark.parametrize("topic", ["a", "/", "a/b/c", "/a", "a/", "//", "Ω/é"])
def test_MQTT_4_7_1_2_hash_alone_matches_every_topic(topic: str) -> None:
    """§4.7.1.2: ``#`` alone matches every topic (not starting with ``$``)."""
    assert matching("#", topic)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("sport/tennis/player1", True),
        ("sport/tennis/player2", True),
        ("sport/tennis/", True),
        ("sport/tennis/player1/ranking", False),
        ("sport/tennis", False),
    ],
)
def test_MQTT_4_7_1_3_plus_matches_exactly_one_level(topic: str, expected: bool) -> None:
    """§4.7.1.3 example: ``sport/tennis/+``."""
    assert matching("sport/tennis/+", topic) is expected


def test_MQTT_4_7_1_3_plus_matches_an_empty_level() -> None:
    """§4.7.1.3: ``sport/+`` does not match ``sport`` but does match ``sport/``."""
    assert not matching("sport/+", "sport")
    assert matching("sport/+", "sport/")
    assert matching("a/+/b", "a//b")
    assert matching("+", "a")


def test_MQTT_4_7_1_3_plus_examples_with_leading_separator() -> None:
    """§4.7.1.3: ``+/+`` and ``/+`` match ``/finance``; ``+`` does not."""
    assert matching("+/+", "/finance")
    assert matching("/+", "/finance")
    assert not matching("+", "/finance")


@pytest.mark.parametrize("topic_filter", ["+", "+/tennis/#", "sport/+/player1", "+/+", "/+", "+/", "+//+"])
def test_MQTT_4_7_1_3_valid_plus_filters(topic_filter: str) -> None:
    """§4.7.1.3: ``+`` may be used at any level, first and last included."""
    index: TopicIndex[str] = TopicIndex()
    assert index.subscribe("s", topic_filter, 0) is True


@pytest.mark.parametrize("topic_filter", ["sport+", "a/+b", "a/b+/c", "++", "+a", "+#", "a/+#"])
def test_MQTT_4_7_1_3_plus_must_occupy_an_entire_level(topic_filter: str) -> None:
    """[MQTT-4.7.1-3] (and -2 for ``+#``)."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.1-[23]"):
        index.subscribe("s", topic_filter, 0)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("#", "$SYS/monitor/Clients", False),
        ("#", "$SYS", False),
        ("#", "$", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("+", "$SYS", False),
        ("+/#", "$SYS/a", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/#", "$SYS", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("$SYS", "$SYS", True),
        ("$+", "$SYS", None),  # invalid filter, see below
        ("a/+", "a/$b", True),
        ("a/#", "a/$b", True),
        ("#", "a$", True),
        ("+/x", "$/x", False),
        ("$/x", "$/x", True),
    ],
)
def test_MQTT_4_7_2_1_dollar_topics_and_leading_wildcards(topic_filter: str, topic: str, expected: bool | None) -> None:
    """[MQTT-4.7.2-1]: filters starting with ``+`` or ``#`` do not match topics starting with ``$``."""
    if expected is None:
        with pytest.raises(InvalidFilterError):
            matching(topic_filter, topic)
    else:
        assert matching(topic_filter, topic) is expected


def test_MQTT_4_7_2_1_dollar_rule_with_subscribers_on_both_sides() -> None:
    """[MQTT-4.7.2-1] in a mixed index: only the ``$SYS`` subscriber gets ``$SYS`` topics."""
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("all", "#", 0)
    index.subscribe("plus", "+/broker/load", 1)
    index.subscribe("sys", "$SYS/#", 2)
    index.subscribe("exact", "$SYS/broker/load", 1)
    assert index.match("$SYS/broker/load") == {"sys": 2, "exact": 1}
    assert index.match("x/broker/load") == {"all": 0, "plus": 1}


def test_MQTT_4_7_3_1_empty_filter_and_topic_are_invalid() -> None:
    """[MQTT-4.7.3-1]: topic names and filters are at least one character long."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.3-1"):
        index.subscribe("s", "", 0)
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.3-1"):
        index.unsubscribe("s", "")
    with pytest.raises(InvalidTopicError, match=r"MQTT-4\.7\.3-1"):
        index.match("")


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "a/\x00", "\x00/#"])
def test_MQTT_4_7_3_2_null_character_is_invalid(text: str) -> None:
    """[MQTT-4.7.3-2]: no U+0000 in topic names or filters."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.3-2"):
        index.subscribe("s", text, 0)
    if "#" not in text:
        with pytest.raises(InvalidTopicError, match=r"MQTT-4\.7\.3-2"):
            index.match(text)


def test_MQTT_4_7_3_3_at_most_65535_utf8_bytes() -> None:
    """[MQTT-4.7.3-3]: the limit counts UTF-8 bytes, not characters."""
    index: TopicIndex[str] = TopicIndex()
    longest = "a" * MAX_TOPIC_BYTES
    assert index.subscribe("s", longest, 1)
    assert index.match(longest) == {"s": 1}
    assert index.subscribe("s", "a" * (MAX_TOPIC_BYTES - 2) + "/#", 0)
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.3-3"):
        index.subscribe("s", "a" * (MAX_TOPIC_BYTES + 1), 0)
    with pytest.raises(InvalidTopicError, match=r"MQTT-4\.7\.3-3"):
        index.match("a" * (MAX_TOPIC_BYTES + 1))
    two_byte = "é" * (MAX_TOPIC_BYTES // 2)  # 65534 bytes
    assert index.subscribe("s", two_byte, 0)
    with pytest.raises(InvalidFilterError, match=r"MQTT-4\.7\.3-3"):
        index.subscribe("s", two_byte + "é", 0)  # 32768 characters, 65536 bytes
    with pytest.raises(InvalidTopicError, match=r"MQTT-4\.7\.3-3"):
        index.match("€" * 21846)  # 65538 bytes
    assert len(index) == 3


def test_MQTT_4_7_3_3_long_error_messages_are_shortened() -> None:
    """An error about a 65 kB filter does not carry 65 kB of message."""
    with pytest.raises(InvalidFilterError) as info:
        TopicIndex[str]().subscribe("s", "a" * 70000, 0)
    assert len(str(info.value)) < 300
    assert "70000 characters" in str(info.value)


@pytest.mark.parametrize("text", ["\ud800", "a/\udfff", "x\udc80y"])
def test_MQTT_1_5_3_1_surrogates_are_invalid(text: str) -> None:
    """[MQTT-1.5.3-1]: well-formed UTF-8 only; a lone surrogate cannot be encoded."""
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match=r"MQTT-1\.5\.3-1"):
        index.subscribe("s", text, 0)
    with pytest.raises(InvalidTopicError, match=r"MQTT-1\.5\.3-1"):
        index.match(text)


def test_MQTT_4_7_3_4_no_normalisation_and_case_sensitive() -> None:
    """[MQTT-4.7.3-4] and §4.7.3: case-sensitive, no normalisation, spaces allowed."""
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("upper", "ACCOUNTS", 0)
    index.subscribe("title", "Accounts", 1)
    index.subscribe("space", "Accounts payable", 2)
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    index.subscribe("nfc", nfc, 0)
    assert index.match("ACCOUNTS") == {"upper": 0}
    assert index.match("Accounts") == {"title": 1}
    assert index.match("accounts") == {}
    assert index.match("Accounts payable") == {"space": 2}
    assert index.match(nfc) == {"nfc": 0}
    assert index.match(nfd) == {}


def test_MQTT_4_7_3_empty_levels_are_distinct() -> None:
    """§4.7.3: ``/finance`` differs from ``finance``; ``a//b`` and ``a/`` are topics of their own."""
    index: TopicIndex[str] = TopicIndex()
    for topic_filter in ["finance", "/finance", "finance/", "a//b", "a/b"]:
        index.subscribe(topic_filter, topic_filter, 0)
    for topic in ["finance", "/finance", "finance/", "a//b", "a/b"]:
        assert index.match(topic) == {topic: 0}
    assert index.match("/") == {}
    index.subscribe("slash", "/", 1)
    assert index.match("/") == {"slash": 1}
    assert index.match("//") == {}


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("+/+", "/", True),
        ("/+", "/", True),
        ("+/", "/", True),
        ("/#", "/", True),
        ("+", "/", False),
        ("a/+/+", "a//", True),
        ("a//+", "a//", True),
        ("a/+", "a//", False),
        ("a/#", "a//", True),
        ("+/+/+", "//", True),
    ],
)
def test_MQTT_4_7_3_wildcards_over_empty_levels(topic_filter: str, topic: str, expected: bool) -> None:
    """§4.7.3 with §4.7.1.3: ``+`` matches an empty level, ``#`` any number of them."""
    assert matching(topic_filter, topic) is expected
    assert ref_matches(topic_filter, topic) is expected


def test_MQTT_3_8_4_3_resubscribe_replaces_the_qos() -> None:
    """[MQTT-3.8.4-3]: an identical filter replaces the existing subscription."""
    index: TopicIndex[str] = TopicIndex()
    assert index.subscribe("s", "a/+", 2) is True
    assert index.subscribe("s", "a/+", 0) is False
    assert index.subscribe("s", "a/+", 0) is False
    assert len(index) == 1
    assert index.match("a/b") == {"s": 0}
    assert index.filters_of("s") == {"a/+": 0}
    assert index.subscribe("s", "x", 1) is True
    assert index.subscribe("s", "x", 2) is False
    assert index.match("x") == {"s": 2}


def test_MQTT_3_10_4_1_unsubscribe_compares_filters_character_by_character() -> None:
    """[MQTT-3.10.4-1]: ``a/+`` does not remove ``a/b``, nor ``a/#`` remove ``a/+``."""
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a/b", 1)
    index.subscribe("s", "a/+", 1)
    assert index.unsubscribe("s", "a/#") is False
    assert index.unsubscribe("s", "A/b") is False
    assert index.unsubscribe("s", "a/+") is True
    assert index.filters_of("s") == {"a/b": 1}
    assert index.match("a/b") == {"s": 1}
    assert index.match("a/c") == {}


def test_MQTT_3_3_5_1_overlapping_subscriptions_deliver_once_with_max_qos() -> None:
    """[MQTT-3.3.5-1]: one entry per subscriber, at the maximum QoS of its matching filters."""
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a/b", 0)
    index.subscribe("s", "a/+", 2)
    index.subscribe("s", "#", 1)
    index.subscribe("t", "a/#", 1)
    index.subscribe("t", "+/b", 0)
    assert index.match("a/b") == {"s": 2, "t": 1}
    assert index.match("a/c") == {"s": 2, "t": 1}
    assert index.match("z/b") == {"s": 1, "t": 0}
    assert index.match("z") == {"s": 1}


# -- unit cases, method by method ----------------------------------------------------------


def test_errors_share_one_root() -> None:
    for cls in (InvalidFilterError, InvalidTopicError, InvalidQoSError):
        assert issubclass(cls, TopicIndexError)
    assert issubclass(TopicIndexError, ChatMQError)
    assert TopicIndexError.retriable is False
    err = InvalidFilterError("a#", "why")
    assert err.value == "a#"
    assert err.reason == "why"
    assert str(err) == "invalid topic filter 'a#': why"


def test_new_index_is_empty() -> None:
    index: TopicIndex[str] = TopicIndex()
    assert len(index) == 0
    assert index.subscriber_count() == 0
    assert index.match("a") == {}
    assert index.filters_of("nobody") == {}
    assert "subscriptions=0" in repr(index)


def test_subscribe_counts_subscriptions_and_subscribers() -> None:
    index: TopicIndex[str] = TopicIndex()
    assert index.subscribe("s", "a", 0) is True
    assert index.subscribe("s", "b/+", 1) is True
    assert index.subscribe("t", "a", 2) is True
    assert len(index) == 3
    assert index.subscriber_count() == 2
    assert index.match("a") == {"s": 0, "t": 2}


@pytest.mark.parametrize("qos", [-1, 3, 100, True, False])
def test_subscribe_rejects_bad_qos_and_changes_nothing(qos: int) -> None:
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a", 1)
    with pytest.raises(InvalidQoSError, match="must be 0, 1 or 2"):
        index.subscribe("s", "a", qos)
    with pytest.raises(InvalidQoSError):
        index.subscribe("t", "b/#", qos)
    assert index.filters_of("s") == {"a": 1}
    assert index.subscriber_count() == 1
    assert index.match("b/c") == {}


@pytest.mark.parametrize("value", [None, b"a/b", 3, ["a"]])
def test_non_str_filters_and_topics_are_invalid(value: object) -> None:
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(InvalidFilterError, match="must be a str"):
        index.subscribe("s", value, 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidTopicError, match="must be a str"):
        index.match(value)  # type: ignore[arg-type]


def test_subscriber_keys_are_any_hashable() -> None:
    class Handler:
        pass

    h1, h2 = Handler(), Handler()
    index: TopicIndex[object] = TopicIndex()
    index.subscribe(h1, "users/1/inbox", 1)
    index.subscribe(h2, "users/+/inbox", 0)
    index.subscribe(("node", 7), "users/#", 2)
    assert index.match("users/1/inbox") == {h1: 1, h2: 0, ("node", 7): 2}
    assert index.unsubscribe_all(h1) == 1
    assert index.match("users/1/inbox") == {h2: 0, ("node", 7): 2}


def test_unsubscribe_returns_whether_it_removed() -> None:
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a/+", 1)
    index.subscribe("s", "a/b", 1)
    index.subscribe("t", "a/+", 2)
    assert index.unsubscribe("s", "a/+") is True
    assert index.unsubscribe("s", "a/+") is False
    assert index.unsubscribe("nobody", "a/+") is False
    assert index.unsubscribe("t", "a/b") is False
    assert len(index) == 2
    assert index.match("a/b") == {"s": 1, "t": 2}
    assert index.unsubscribe("s", "a/b") is True
    assert index.subscriber_count() == 1
    assert index.filters_of("s") == {}
    with pytest.raises(InvalidFilterError):
        index.unsubscribe("t", "a/#/b")


def test_unsubscribe_prunes_the_trie() -> None:
    index: TopicIndex[str] = TopicIndex()
    filters = ["a/+/c", "a/+/c/#", "a/b/+", "+", "#", "+/+/+/+", "a//+", "$SYS/#", "x"]
    for topic_filter in filters:
        index.subscribe("s", topic_filter, 1)
    index.subscribe("t", "a/+/c", 1)
    for topic_filter in filters:
        assert index.unsubscribe("s", topic_filter)
    assert index.match("a/b/c") == {"t": 1}
    assert index.unsubscribe("t", "a/+/c")
    assert index._root.is_empty()
    assert index._exact == {}
    assert len(index) == 0


def test_unsubscribe_all_removes_every_filter_of_one_subscriber() -> None:
    index: TopicIndex[str] = TopicIndex()
    for topic_filter in ["a", "a/+", "#", "$SYS/#", "b//"]:
        index.subscribe("s", topic_filter, 1)
    index.subscribe("t", "a", 0)
    index.subscribe("t", "#", 0)
    assert index.unsubscribe_all("s") == 5
    assert index.unsubscribe_all("s") == 0
    assert index.unsubscribe_all("nobody") == 0
    assert len(index) == 2
    assert index.subscriber_count() == 1
    assert index.filters_of("s") == {}
    assert index.match("a") == {"t": 0}
    assert index.match("$SYS/x") == {}
    assert index.unsubscribe_all("t") == 2
    assert index._root.is_empty()


def test_match_returns_a_dict_the_caller_owns() -> None:
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a", 1)
    index.subscribe("w", "a/#", 1)
    first = index.match("a")
    first["intruder"] = 2
    first["s"] = 0
    assert index.match("a") == {"s": 1, "w": 1}


def test_match_with_only_exact_or_only_wildcard_filters() -> None:
    exact: TopicIndex[int] = TopicIndex()
    for i in range(100):
        exact.subscribe(i, f"users/{i}/inbox", 1)
    assert exact.match("users/42/inbox") == {42: 1}
    assert exact.match("users/42") == {}
    wild: TopicIndex[int] = TopicIndex()
    wild.subscribe(1, "users/+/inbox", 0)
    assert wild.match("users/42/inbox") == {1: 0}
    assert wild.match("users/42/outbox") == {}


def test_filters_of_is_a_copy_in_subscription_order() -> None:
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "b", 0)
    index.subscribe("s", "a/#", 2)
    index.subscribe("s", "b", 1)
    filters = index.filters_of("s")
    assert list(filters.items()) == [("b", 1), ("a/#", 2)]
    filters["c"] = 0
    assert index.filters_of("s") == {"b": 1, "a/#": 2}


def test_invalid_subscribe_leaves_the_index_unchanged() -> None:
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a", 0)
    for bad in ["", "a/#/b", "a+", "\x00"]:
        with pytest.raises(InvalidFilterError):
            index.subscribe("t", bad, 0)
    assert len(index) == 1
    assert index.subscriber_count() == 1
    assert index.filters_of("t") == {}


def test_very_deep_filters_and_topics_do_not_recurse() -> None:
    """30,000 levels: every walk is iterative, so no RecursionError."""
    index: TopicIndex[str] = TopicIndex()
    deep_filter = "/".join(["+"] * 30000)
    deep_topic = "/".join(["a"] * 30000)
    index.subscribe("plus", deep_filter, 1)
    index.subscribe("empty", "/" * 29999 + "#", 2)
    assert index.match(deep_topic) == {"plus": 1}
    assert index.match("/" * 29999) == {"plus": 1, "empty": 2}
    assert index.unsubscribe("plus", deep_filter)
    assert index.unsubscribe_all("empty") == 1
    assert index._root.is_empty()


# -- property tests against the brute-force reference -------------------------------------

# A small alphabet makes collisions (and so matches, overlaps and replacements) frequent.
LEVELS = ["a", "b", "A", "", "$SYS", "$", "é"]
SUBSCRIBERS = ["s0", "s1", "s2", "s3"]

topic_names = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4).map("/".join).filter(bool)
topic_filters = st.builds(
    lambda levels, hashed: "/".join([*levels, "#"] if hashed else levels),
    st.lists(st.sampled_from([*LEVELS, "+", "+"]), min_size=0, max_size=4),
    st.booleans(),
).filter(bool)
subscribers = st.sampled_from(SUBSCRIBERS)
qoses = st.integers(min_value=0, max_value=2)


class IndexMachine(RuleBasedStateMachine):
    """Random operation sequences; the model is a plain ``{(subscriber, filter): qos}`` dict."""

    def __init__(self) -> None:
        super().__init__()
        self.index: TopicIndex[str] = TopicIndex()
        self.model: dict[tuple[str, str], int] = {}

    @rule(subscriber=subscribers, topic_filter=topic_filters, qos=qoses)
    def subscribe(self, subscriber: str, topic_filter: str, qos: int) -> None:
        expected_new = (subscriber, topic_filter) not in self.model
        assert self.index.subscribe(subscriber, topic_filter, qos) is expected_new
        self.model[(subscriber, topic_filter)] = qos

    @rule(subscriber=subscribers, topic_filter=topic_filters)
    def unsubscribe(self, subscriber: str, topic_filter: str) -> None:
        expected = self.model.pop((subscriber, topic_filter), None) is not None
        assert self.index.unsubscribe(subscriber, topic_filter) is expected

    @rule(subscriber=subscribers, data=st.data())
    def unsubscribe_a_held_filter(self, subscriber: str, data: st.DataObject) -> None:
        held = sorted(f for s, f in self.model if s == subscriber)
        if held:
            topic_filter = data.draw(st.sampled_from(held))
            del self.model[(subscriber, topic_filter)]
            assert self.index.unsubscribe(subscriber, topic_filter) is True

    @rule(subscriber=subscribers)
    def unsubscribe_all(self, subscriber: str) -> None:
        held = [key for key in self.model if key[0] == subscriber]
        for key in held:
            del self.model[key]
        assert self.index.unsubscribe_all(subscriber) == len(held)

    @rule(topic=topic_names)
    def match(self, topic: str) -> None:
        assert self.index.match(topic) == ref_match(self.model, topic)

    @invariant()
    def counts_and_filters_agree(self) -> None:
        assert len(self.index) == len(self.model)
        held = {s for s, _ in self.model}
        assert self.index.subscriber_count() == len(held)
        for subscriber in SUBSCRIBERS:
            expected = {f: q for (s, f), q in self.model.items() if s == subscriber}
            assert self.index.filters_of(subscriber) == expected

    @invariant()
    def empty_means_pruned(self) -> None:
        if not self.model:
            assert self.index._root.is_empty()
            assert self.index._exact == {}


def test_random_operation_sequences_match_the_reference() -> None:
    run_state_machine_as_test(IndexMachine, settings=settings(max_examples=300, stateful_step_count=40, deadline=None))


@settings(max_examples=300, deadline=None)
@given(
    subscriptions=st.dictionaries(st.tuples(subscribers, topic_filters), qoses, max_size=25),
    topics=st.lists(topic_names, min_size=1, max_size=10),
)
def test_match_equals_the_reference_on_random_snapshots(
    subscriptions: dict[tuple[str, str], int], topics: list[str]
) -> None:
    index: TopicIndex[str] = TopicIndex()
    for (subscriber, topic_filter), qos in subscriptions.items():
        index.subscribe(subscriber, topic_filter, qos)
    for topic in topics:
        assert index.match(topic) == ref_match(subscriptions, topic)


# -- fuzz ----------------------------------------------------------------------------------

fuzz_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="ab/+#$\x00 é", max_size=20),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),  # lone surrogates
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Zs", "Po"]), max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["subscribe", "unsubscribe", "match"]), fuzz_text, st.integers(-1, 3)),
        max_size=12,
    ),
)
def test_fuzz_raises_only_topic_index_errors(ops: list[tuple[str, str, int]]) -> None:
    """Arbitrary text: the index raises TopicIndexError or nothing, and agrees with the reference."""
    index: TopicIndex[str] = TopicIndex()
    model: dict[tuple[str, str], int] = {}
    for op, text, qos in ops:
        error: TopicIndexError | None = None
        try:
            if op == "subscribe":
                index.subscribe("s", text, qos)
                model[("s", text)] = qos
            elif op == "unsubscribe":
                assert index.unsubscribe("s", text) is (model.pop(("s", text), None) is not None)
            else:
                assert index.match(text) == ref_match(model, text)
        except TopicIndexError as exc:
            error = exc
        if not ref_valid(text, is_filter=op != "match"):
            assert isinstance(error, InvalidTopicError if op == "match" else InvalidFilterError)
        elif op == "subscribe" and not 0 <= qos <= 2:
            assert isinstance(error, InvalidQoSError)
        else:
            assert error is None
    assert len(index) == len(model)


def test_qos_of_reports_one_exact_subscription() -> None:
    index: TopicIndex[str] = TopicIndex()
    index.subscribe("s", "a/+", 1)
    assert index.qos_of("s", "a/+") == 1
    assert index.qos_of("s", "a/b") is None
    assert index.qos_of("other", "a/+") is None
    index.subscribe("s", "a/+", 2)
    assert index.qos_of("s", "a/+") == 2
