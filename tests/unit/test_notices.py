"""Notices from the API: ``BusNotifier`` puts them on ``chat.notices``, ``NoticeWorker`` sends or keeps them."""

from __future__ import annotations

import orjson

from chatmq.core.envelopes import event_envelope
from chatmq.core.topics import NOTICES
from chatmq.services.chat.notices import BusNotifier, NoticeWorker
from tests.unit.chat_fixtures import (
    NODE,
    OTHER_NODE,
    Chat,
    Probe,
    envs_of,
    eventually,
    notices_record,
    wire,
)


async def test_notifier_puts_the_envelope_on_chat_notices_keyed_by_the_first_user(chat: Chat) -> None:
    probe = Probe(chat.bus, [NOTICES], group="notices-probe")
    await probe.start()
    try:
        env = event_envelope("group_created", group={"group_id": "g1"}, by="u2")
        await BusNotifier(chat.bus).notify(["u2", "u1"], env)
        await BusNotifier(chat.bus).notify([], env)  # nobody: nothing published
        records = await probe.drain()
    finally:
        await probe.stop()

    [r] = records
    assert r.key == b"u2"
    assert wire(r) == {"users": ["u2", "u1"], "env": env}


async def test_worker_delivers_to_online_users_and_keeps_notices_for_offline(chat: Chat) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    chat.online(a, NODE)
    chat.online(b, OTHER_NODE)
    created = event_envelope("group_created", group={"group_id": "g1"}, by=a)
    renamed = event_envelope("group_renamed", group_id="g1", name="new", by=a)

    await NoticeWorker(chat.bus, chat.outlet).process([
        notices_record([a, b, c], created),
        notices_record([b, c], renamed),
    ])

    deliveries = await chat.deliveries()
    assert envs_of(deliveries, a, NODE) == [created]
    assert envs_of(deliveries, b, OTHER_NODE) == [created, renamed]
    assert envs_of(deliveries, c) == []
    pending = [(i.kind, orjson.loads(i.envelope)) for i in await chat.pending(c)]
    assert pending == [("notice", created), ("notice", renamed)]
    assert await chat.pending(a) == []
    assert await chat.pending(b) == []


async def test_started_worker_takes_notices_from_the_notifier(chat: Chat) -> None:
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    env = event_envelope("member_removed", group_id="g1", user_id=b, by=a)
    worker = NoticeWorker(chat.bus, chat.outlet)

    await worker.start()
    try:
        await BusNotifier(chat.bus).notify([a, b], env)
        deliveries = await chat.wait_deliveries(1)

        async def kept() -> bool:
            return len(await chat.pending(b)) == 1

        await eventually(kept)
    finally:
        await worker.stop()

    assert envs_of(deliveries, a, NODE) == [env]
    [notice] = await chat.pending(b)
    assert (notice.kind, orjson.loads(notice.envelope)) == ("notice", env)
    assert chat.bus.lag("notices") == 0
