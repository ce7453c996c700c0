"""Outlet: envelopes to online users through their node's delivery topic; notices kept for offline users."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatmq.core.envelopes import ack_envelope, encode_event, event_envelope, receipt_envelope
from chatmq.core.records import Offline, Online
from chatmq.services.chat.outlet import Outlet
from tests.unit.chat_fixtures import NODE, OTHER_NODE, Chat, envs_of


@pytest.fixture
def outlet(chat: Chat) -> Outlet:
    return chat.outlet


def _env(n: int) -> bytes:
    return orjson.dumps(_sent(n))


def _sent(n: int) -> dict[str, Any]:
    """``_env(n)`` as the recipient reads it."""
    return {"type": "message", "id": f"s{n}", "body": {"n": n}}


async def test_deliver_groups_envelopes_per_node_and_user_and_returns_offline_users(
    chat: Chat, outlet: Outlet
) -> None:
    chat.online("u1", NODE)
    chat.online("u2", NODE)
    chat.online("u3", OTHER_NODE)

    offline = await outlet.deliver([
        ("u1", _env(1)), ("u3", _env(2)), ("u9", _env(3)), ("u1", _env(4)), ("u2", _env(5)), ("u8", _env(6)),
        ("u9", _env(7)),
    ])

    assert offline == ["u9", "u8", "u9"]
    deliveries = await chat.deliveries()
    # one record per user and node, envelopes in input order, keyed by the user
    assert sorted((d.node, d.user, d.key) for d in deliveries) == [
        (NODE, "u1", "u1"), (NODE, "u2", "u2"), (OTHER_NODE, "u3", "u3")]
    assert envs_of(deliveries, "u1", NODE) == [_sent(1), _sent(4)]
    assert envs_of(deliveries, "u2", NODE) == [_sent(5)]
    assert envs_of(deliveries, "u3", OTHER_NODE) == [_sent(2)]
    assert all(d.replay is None for d in deliveries)
    assert await chat.store.count_pending() == 0  # deliver stores nothing


async def test_deliver_of_nothing_publishes_nothing(chat: Chat, outlet: Outlet) -> None:
    assert await outlet.deliver([]) == []
    assert await chat.deliveries() == []


async def test_deliver_follows_the_registry(chat: Chat, outlet: Outlet) -> None:
    chat.online("u1", NODE, epoch=1)
    chat.registry.apply(Online("u1", OTHER_NODE, 2))  # a second device, on the other node
    assert await outlet.deliver([("u1", _env(1))]) == []
    chat.registry.apply(Offline("u1", NODE, 1))  # the first one went
    assert await outlet.deliver([("u1", _env(2))]) == []
    chat.registry.apply(Offline("u1", OTHER_NODE, 2))
    assert await outlet.deliver([("u1", _env(3))]) == ["u1"]

    got = sorted((d.node, e["id"]) for d in await chat.deliveries() for e in d.envs)
    assert got == [(NODE, "s1"), (OTHER_NODE, "s1"), (OTHER_NODE, "s2")]


async def test_to_node_answers_the_connection_that_asked(chat: Chat, outlet: Outlet) -> None:
    # the registry does not know u1: the answer still goes to the node it came from
    await outlet.to_node(OTHER_NODE, "u1", [ack_envelope("c1", "s1", 1), ack_envelope("c2", "s2", 2)])
    await outlet.to_node(NODE, "u1", [])  # nothing to say: no record

    [d] = await chat.deliveries()
    assert (d.node, d.key, d.user, d.replay) == (OTHER_NODE, "u1", "u1", None)
    assert [e["client_id"] for e in d.envs] == ["c1", "c2"]


async def test_notify_delivers_to_online_and_keeps_notices_for_offline(chat: Chat, outlet: Outlet) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    chat.online(a, NODE)
    env = event_envelope("member_added", group_id="g1", members=[c], by=a)

    await outlet.notify([a, b, c], encode_event(env))

    deliveries = await chat.deliveries()
    assert envs_of(deliveries, a, NODE) == [env]
    assert {d.user for d in deliveries} == {a}
    for offline in (b, c):
        [notice] = await chat.pending(offline)
        assert (notice.kind, notice.envelope) == ("notice", encode_event(env))
    assert await chat.pending(a) == []
    assert await chat.store.count_pending() == 0  # notices are not pending messages


async def test_notices_for_an_offline_user_keep_their_order(chat: Chat, outlet: Outlet) -> None:
    b = await chat.user()
    first = receipt_envelope("delivered", ["s1"], "u-x")
    second = receipt_envelope("read", ["s1"], "u-x")

    await outlet.notify([b], first)
    await outlet.notify([b], second)

    items = await chat.pending(b)
    assert [i.envelope for i in items] == [first, second]
    assert len({i.item_id for i in items}) == 2


async def test_notify_nobody_does_nothing(chat: Chat, outlet: Outlet) -> None:
    await outlet.notify([], encode_event(event_envelope("group_renamed", group_id="g1", name="x", by="u1")))
    assert await chat.deliveries() == []
    assert await chat.pending("u1") == []
