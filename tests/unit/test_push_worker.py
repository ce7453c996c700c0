"""Push end to end inside one process: the routers' hook (``PushPublisher`` on the ``Outlet``) puts records
on ``chat.push`` for offline recipients, and a started ``PushWorker`` sends them through the real
firebase-admin to ``FakePushServer``: retries with backoff and Retry-After, dead tokens removed,
nobody's push held up by another's. Real ``MemoryBus``, ``SQLiteStore`` and routers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from chatmq.core.bus.base import Value
from chatmq.core.bus.memory import MemoryBus
from chatmq.core.envelopes import event_envelope
from chatmq.core.errors import BusError
from chatmq.core.topics import PUSH, deliver_topic
from chatmq.services.chat.group_router import GroupRouter
from chatmq.services.chat.notices import NoticeWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.chat.router import Router
from chatmq.services.push.fcm import FcmProvider
from chatmq.services.push.provider import PushProvider
from chatmq.services.push.publisher import PushPublisher
from chatmq.services.push.webhook import WebhookProvider
from chatmq.services.push.worker import PushWorker
from tests.fakes.push import Answer, FakePushServer, quota_exceeded, unavailable
from tests.unit.chat_fixtures import (
    NODE,
    NODES,
    Chat,
    Probe,
    envs_of,
    eventually,
    message,
    notices_record,
    outbox_record,
    record,
    wire,
)


def results(result: str, provider: str = "fcm") -> float:
    """The ``chatmq_push_results_total`` count of ``provider``'s pushes with ``result`` so far."""
    return REGISTRY.get_sample_value("chatmq_push_results_total", {"provider": provider, "result": result}) or 0.0


@dataclass
class Rig:
    chat: Chat
    outlet: Outlet
    worker: PushWorker
    pushes: Probe

    def router(self) -> Router:
        return Router(self.chat.bus, self.chat.store, self.outlet)

    async def published(self) -> list[dict[str, Any]]:
        """The ``chat.push`` records published since the last call."""
        return [wire(r) for r in await self.pushes.drain()]


@asynccontextmanager
async def rig(chat: Chat, push_fake: FakePushServer, tmp_path: Path, *, preview: int | None = None,
              group_events: bool = False, max_attempts: int = 5, backoff: float = 0.01,
              provider: PushProvider | None = None) -> AsyncIterator[Rig]:
    """The push hook and a started ``PushWorker`` on ``chat``'s bus and store (FCM unless ``provider``)."""
    outlet = Outlet(chat.bus, chat.registry, chat.store,
                    PushPublisher(chat.bus, preview_length=preview, group_events=group_events))
    provider = provider or FcmProvider(push_fake.service_account(tmp_path), url=push_fake.fcm_url)
    worker = PushWorker(chat.bus, chat.store, provider, ttl=600, max_attempts=max_attempts, backoff=backoff)
    pushes = Probe(chat.bus, [PUSH], group="push-probe")
    await pushes.start()
    await worker.start()
    try:
        yield Rig(chat, outlet, worker, pushes)
    finally:
        await worker.stop()
        await pushes.stop()


async def test_an_offline_recipient_gets_one_push_per_token_with_ids_and_no_text(
    chat: Chat, push_fake: FakePushServer, tmp_path: Path
) -> None:
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    chat.online(alice)
    chat.online(carol)
    await chat.store.add_push_token(bob, "android", "bob-phone")
    await chat.store.add_push_token(bob, "web", "bob-browser")
    await chat.store.add_push_token(carol, "android", "carol-phone")
    sent = results("sent")
    async with rig(chat, push_fake, tmp_path) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob, text="secret words")),
                                  outbox_record(alice, message("c2", to=carol, text="you are online"))])
        [pushed] = await r.published()  # carol is online: no push for her
        assert pushed["user"] == bob
        await push_fake.until(lambda s: len(s) == 2)

    [stored] = await chat.pending(bob)
    assert sorted(s.token for s in push_fake.sent) == ["bob-browser", "bob-phone"]
    for s in push_fake.sent:
        assert s.data == {"type": "message", "id": stored.item_id, "from": alice, "conversation": alice,
                          "group": "false"}
        assert "secret" not in orjson.dumps(s.body).decode()
    assert results("sent") - sent == 2
    # delivery did not wait for any of it: the ack and carol's message went out as always
    assert [e["type"] for e in envs_of(await chat.deliveries(), alice)] == ["ack", "ack"]


async def test_a_preview_when_configured_cut_to_its_length(chat: Chat, push_fake: FakePushServer,
                                                            tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "ios", "bob-iphone")
    async with rig(chat, push_fake, tmp_path, preview=8) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob, text="see you at the station"))])
        [sent] = await push_fake.until(lambda s: len(s) == 1)
    assert sent.data["preview"] == "see you…"


async def test_group_messages_push_offline_members_under_the_group(
    chat: Chat, push_fake: FakePushServer, tmp_path: Path
) -> None:
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    group = await chat.store.create_group("gteam", "team", alice, [bob, carol])
    chat.online(bob)
    for user in (alice, bob, carol):
        await chat.store.add_push_token(user, "android", f"tok-{user}")
    async with rig(chat, push_fake, tmp_path) as r:
        await GroupRouter(chat.bus, chat.store, r.outlet).process(
            [outbox_record(alice, message("c1", group=group.group_id))])
        assert [p["user"] for p in await r.published()] == [carol]
        [sent] = await push_fake.until(lambda s: len(s) == 1)
    assert sent.token == f"tok-{carol}"
    assert sent.data["conversation"] == "gteam"
    assert sent.data["group"] == "true"
    assert sent.body["message"]["android"]["collapse_key"] == "gteam"


async def test_group_events_are_pushed_only_when_configured(chat: Chat, push_fake: FakePushServer,
                                                            tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "android", "bob-phone")
    event = event_envelope("member_added", group_id="g1", members=[bob], by=alice)
    async with rig(chat, push_fake, tmp_path) as r:
        await NoticeWorker(chat.bus, r.outlet).process([notices_record([alice, bob], event)])
        assert await r.published() == []
    async with rig(chat, push_fake, tmp_path, group_events=True) as r:
        await NoticeWorker(chat.bus, r.outlet).process([notices_record([alice, bob], event)])
        assert sorted(p["user"] for p in await r.published()) == sorted([alice, bob])  # both offline
        await push_fake.until(lambda s: len(s) == 1)  # alice has no token
    assert push_fake.sent[0].data == {"type": "event", "event": "member_added", "from": alice, "conversation": "g1",
                                 "group": "true"}


async def test_receipts_are_never_pushed(chat: Chat, push_fake: FakePushServer, tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    chat.online(bob)
    sid = await chat.commit_message(alice, bob, "c1")
    async with rig(chat, push_fake, tmp_path, group_events=True) as r:
        await r.router().process([outbox_record(bob, {"type": "receipt", "status": "read", "ids": [sid]})])
        assert await r.published() == []


async def test_retries_back_off_and_honour_retry_after(chat: Chat, push_fake: FakePushServer, tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "android", "bob-phone")
    push_fake.script("bob-phone", quota_exceeded(retry_after=1), unavailable())
    retried, sent = results("retried"), results("sent")
    async with rig(chat, push_fake, tmp_path) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob))])
        await push_fake.until(lambda s: len(s) == 3)
    first, second, third = (s for s in push_fake.sent)
    assert [s.status for s in (first, second, third)] == [429, 503, 200]
    assert first.data == second.data == third.data
    assert results("retried") - retried == 2
    assert results("sent") - sent == 1
    assert r.worker.retrying == 0


async def test_retry_after_is_waited_for(chat: Chat, push_fake: FakePushServer, tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "android", "bob-phone")
    push_fake.script("bob-phone", quota_exceeded(retry_after=1))
    async with rig(chat, push_fake, tmp_path) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob))])
        await push_fake.until(lambda s: len(s) == 1)
        throttled = time.monotonic()
        await push_fake.until(lambda s: len(s) == 2)
    assert time.monotonic() - throttled >= 0.9  # backoff alone would be 0.01 s


async def test_a_push_is_given_up_after_max_attempts(chat: Chat, push_fake: FakePushServer, tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "android", "bob-phone")
    push_fake.failing = unavailable()
    failed = results("failed")
    async with rig(chat, push_fake, tmp_path, max_attempts=3) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob))])
        await push_fake.until(lambda s: len(s) == 3)

        async def given_up() -> bool:
            return results("failed") - failed == 1

        await eventually(given_up)
        assert r.worker.retrying == 0
    assert len(push_fake.sent) == 3
    assert [t.token for t in await chat.store.push_tokens(bob)] == ["bob-phone"]  # a failure is not a dead token


async def test_a_throttled_push_holds_up_nobody_else(chat: Chat, push_fake: FakePushServer, tmp_path: Path) -> None:
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "android", "bob-phone")
    await chat.store.add_push_token(carol, "android", "carol-phone")
    push_fake.script("bob-phone", quota_exceeded(retry_after=60))
    async with rig(chat, push_fake, tmp_path) as r:
        router = r.router()
        await router.process([outbox_record(alice, message("c1", to=bob))])
        await push_fake.until(lambda s: len(s) == 1)
        await router.process([outbox_record(alice, message("c2", to=carol))])
        await push_fake.until(lambda s: len(s) == 2)
        assert r.worker.retrying == 1  # bob's retry waits its minute in the background
    assert [s.token for s in push_fake.sent] == ["bob-phone", "carol-phone"]
    assert r.worker.retrying == 0  # cancelled by stop()


async def test_dead_tokens_are_removed_and_live_ones_kept(chat: Chat, push_fake: FakePushServer,
                                                          tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    for token in ("bob-phone", "unregistered-old-phone", "invalid-garbage", "mismatch-other-project"):
        await chat.store.add_push_token(bob, "android", token)
    unregistered = results("unregistered")
    async with rig(chat, push_fake, tmp_path) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob))])
        await push_fake.until(lambda s: len(s) == 4)

        async def removed() -> bool:
            return len(await chat.store.push_tokens(bob)) == 1

        await eventually(removed)
    assert [t.token for t in await chat.store.push_tokens(bob)] == ["bob-phone"]
    assert results("unregistered") - unregistered == 3


async def test_a_bad_record_is_skipped_and_the_rest_sent(chat: Chat, push_fake: FakePushServer, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    bob = await chat.user()
    await chat.store.add_push_token(bob, "android", "bob-phone")
    good = {"user": bob, "kind": "message", "id": "s1", "from": "ualice", "conversation": "ualice", "group": False}
    async with rig(chat, push_fake, tmp_path) as r:
        await r.worker.process([record(PUSH, bob, {"user": bob}), record(PUSH, bob, good)])
        [sent] = await push_fake.until(lambda s: len(s) == 1)
    assert sent.data["id"] == "s1"
    assert "skipping push record" in caplog.text


async def test_the_webhook_provider_stands_in_for_fcm(chat: Chat, push_fake: FakePushServer,
                                                     tmp_path: Path) -> None:
    alice, bob = await chat.user(), await chat.user()
    await chat.store.add_push_token(bob, "web", "bob-browser")
    await chat.store.add_push_token(bob, "android", "gone-phone")
    push_fake.script("bob-browser", Answer(503, {"Retry-After": "0"}))
    push_fake.script("gone-phone", Answer(410))
    retried, sent = results("retried", "webhook"), results("sent", "webhook")
    async with rig(chat, push_fake, tmp_path, provider=WebhookProvider(push_fake.webhook_url)) as r:
        await r.router().process([outbox_record(alice, message("c1", to=bob))])
        await push_fake.until(lambda s: len(s) == 3)

        async def removed() -> bool:
            return [t.token for t in await chat.store.push_tokens(bob)] == ["bob-browser"]

        await eventually(removed)
    [stored] = await chat.pending(bob)
    assert [(s.token, s.status) for s in push_fake.to("bob-browser")] == [("bob-browser", 503), ("bob-browser", 200)]
    assert all(s.path == "/webhook" for s in push_fake.sent)
    assert push_fake.sent[-1].body["data"] == {"type": "message", "id": stored.item_id, "from": alice,
                                               "conversation": alice, "group": "false"}
    assert (results("retried", "webhook") - retried, results("sent", "webhook") - sent) == (1, 1)


class _PushlessBus(MemoryBus):
    """A bus whose ``chat.push`` writes fail (Kafka refusing that topic, say)."""

    async def publish_many(self, topic: str, items: list[tuple[bytes, Value]]) -> None:
        if topic == PUSH:
            raise BusError("chat.push is not writable")
        await super().publish_many(topic, items)


async def test_a_failed_push_write_never_fails_the_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chat = Chat(tmp_path)
    chat.bus = _PushlessBus(default_partitions=8)
    chat.outlet = Outlet(chat.bus, chat.registry, chat.store, PushPublisher(chat.bus))
    chat.probe = Probe(chat.bus, [deliver_topic(n) for n in NODES])
    await chat.start()
    try:
        alice, bob = await chat.user(), await chat.user()
        chat.online(alice)
        before = REGISTRY.get_sample_value("chatmq_push_unpublished_total") or 0.0
        await Router(chat.bus, chat.store, chat.outlet).process([outbox_record(alice, message("c1", to=bob))])
        [ack] = envs_of(await chat.deliveries(), alice, NODE)
        assert ack["type"] == "ack"
        assert len(await chat.pending(bob)) == 1
        assert (REGISTRY.get_sample_value("chatmq_push_unpublished_total") or 0.0) - before == 1
        assert "could not publish 1 push notifications" in caplog.text
    finally:
        await chat.stop()
