"""``WebhookProvider``: JSON POSTs to ``FakePushServer``'s webhook, outcomes from the HTTP status."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import pytest

from chatmq.services.push.provider import Notification, Result
from chatmq.services.push.records import PushRecord
from chatmq.services.push.webhook import SIGNATURE_HEADER, WebhookProvider, signature
from chatmq.services.store.base import PushToken
from tests.fakes.push import Answer, FakePushServer


@pytest.fixture
async def webhook(push_fake: FakePushServer) -> AsyncIterator[WebhookProvider]:
    provider = WebhookProvider(push_fake.webhook_url)
    await provider.start()
    yield provider
    await provider.stop()


NOTE = Notification.of(PushRecord("ubob", "message", "gfriends", True, "s9", "ualice", preview="hi"), 120)


async def test_posts_the_notification_as_json(webhook: WebhookProvider, push_fake: FakePushServer) -> None:
    outcome = await webhook.send(PushToken("ubob", "ios", "apns-tok", 0), NOTE)

    assert outcome.result is Result.SENT
    [sent] = push_fake.sent
    assert sent.path == "/webhook"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {"token": "apns-tok", "platform": "ios", "collapse_key": "gfriends", "ttl": 120,
                         "urgent": True, "data": {"type": "message", "id": "s9", "from": "ualice",
                                                  "conversation": "gfriends", "group": "true", "preview": "hi"}}


@pytest.mark.parametrize(("answer", "result", "after"), [
    (Answer(404), Result.INVALID_TOKEN, None),
    (Answer(410), Result.INVALID_TOKEN, None),
    (Answer(429, {"Retry-After": "3"}), Result.RETRY, 3.0),
    (Answer(502), Result.RETRY, None),
    (Answer(400), Result.FAILED, None),
])
async def test_status_outcomes(webhook: WebhookProvider, push_fake: FakePushServer, answer: Answer, result: Result,
                               after: float | None) -> None:
    push_fake.script("tok", answer)
    outcome = await webhook.send(PushToken("ubob", "web", "tok", 0), NOTE)
    assert (outcome.result, outcome.retry_after) == (result, after)


async def test_an_unreachable_webhook_is_retried() -> None:
    provider = WebhookProvider("http://127.0.0.1:9/push")
    await provider.start()
    try:
        assert (await provider.send(PushToken("ubob", "web", "tok", 0), NOTE)).result is Result.RETRY
    finally:
        await provider.stop()


async def test_a_secret_signs_every_post(push_fake: FakePushServer) -> None:
    provider = WebhookProvider(push_fake.webhook_url, secret="s3cret-s3cret-s3cret")
    await provider.start()
    try:
        before = int(time.time())
        assert (await provider.send(PushToken("ubob", "ios", "apns-tok", 0), NOTE)).result is Result.SENT
    finally:
        await provider.stop()
    [sent] = push_fake.sent
    header = sent.headers[SIGNATURE_HEADER.lower()]
    t = int(header.split(",")[0].removeprefix("t="))
    assert before <= t <= int(time.time())
    expected = hmac.new(b"s3cret-s3cret-s3cret", f"{t}.".encode() + sent.raw, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={expected}"
    assert signature("another-secret-value", t, sent.raw) != header


async def test_no_secret_no_signature(webhook: WebhookProvider, push_fake: FakePushServer) -> None:
    await webhook.send(PushToken("ubob", "ios", "apns-tok", 0), NOTE)
    assert SIGNATURE_HEADER.lower() not in push_fake.sent[0].headers
