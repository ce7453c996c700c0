"""``FcmProvider``: the real firebase-admin against ``FakePushServer`` (OAuth token endpoint and FCM v1
over local sockets, a service account with a fresh RSA key)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatmq.core.errors import ConfigError
from chatmq.services.push.fcm import FcmProvider
from chatmq.services.push.provider import Notification, Result
from chatmq.services.push.records import PushRecord
from chatmq.services.store.base import PushToken
from tests.fakes.push import (
    PROJECT,
    FakePushServer,
    bad_message,
    internal,
    quota_exceeded,
    unavailable,
)


@pytest.fixture
async def fcm(push_fake: FakePushServer, tmp_path: Path) -> AsyncIterator[FcmProvider]:
    provider = FcmProvider(push_fake.service_account(tmp_path), url=push_fake.fcm_url)
    await provider.start()
    yield provider
    await provider.stop()


def _token(token: str, platform: str = "android") -> PushToken:
    return PushToken("ubob", platform, token, 0)


MESSAGE = Notification.of(PushRecord("ubob", "message", "ualice", False, "s1", "ualice"), 3600)


async def test_a_data_only_message_with_collapse_key_and_ttl_for_every_platform(
    fcm: FcmProvider, push_fake: FakePushServer
) -> None:
    before = int(time.time())
    outcome = await fcm.send(_token("tok-a"), MESSAGE)

    assert outcome.result is Result.SENT
    [sent] = push_fake.sent
    assert sent.path == f"/v1/projects/{PROJECT}/messages:send"
    assert sent.headers["authorization"].startswith("Bearer fake-access-")
    message = sent.body["message"]
    assert set(message) == {"token", "data", "android", "apns", "webpush"}  # no "notification": data only
    assert message["token"] == "tok-a"
    assert message["data"] == {"type": "message", "id": "s1", "from": "ualice", "conversation": "ualice",
                               "group": "false"}
    assert message["android"] == {"collapse_key": "ualice", "ttl": "3600s", "priority": "high"}
    apns = message["apns"]["headers"]
    assert apns["apns-collapse-id"] == "ualice"
    assert before + 3600 <= int(apns["apns-expiration"]) <= int(time.time()) + 3600
    assert (apns["apns-push-type"], apns["apns-priority"]) == ("background", "5")
    assert message["apns"]["payload"] == {"aps": {"content-available": 1}}
    assert message["webpush"]["headers"] == {"TTL": "3600", "Topic": "ualice", "Urgency": "high"}


async def test_events_are_not_urgent(fcm: FcmProvider, push_fake: FakePushServer) -> None:
    event = Notification.of(PushRecord("ubob", "event", "g1", True, sender="ualice", event="member_added"), 60)
    assert (await fcm.send(_token("tok-e"), event)).result is Result.SENT
    message = push_fake.sent[0].body["message"]
    assert message["android"]["priority"] == "normal"
    assert message["webpush"]["headers"]["Urgency"] == "normal"
    assert message["data"]["event"] == "member_added"


async def test_one_oauth_token_serves_many_sends(fcm: FcmProvider, push_fake: FakePushServer) -> None:
    issued = push_fake.token_requests
    for n in range(3):
        assert (await fcm.send(_token(f"tok-{n}"), MESSAGE)).result is Result.SENT
    assert push_fake.token_requests - issued <= 1
    assert len({s.headers["authorization"] for s in push_fake.sent}) == 1


@pytest.mark.parametrize("token", ["unregistered-1", "invalid-1", "mismatch-1"])
async def test_tokens_fcm_calls_dead_are_invalid(fcm: FcmProvider, token: str) -> None:
    outcome = await fcm.send(_token(token), MESSAGE)
    assert outcome.result is Result.INVALID_TOKEN
    assert token not in outcome.detail  # never the token itself in what may be logged


async def test_a_bad_message_fails_without_blaming_the_token(fcm: FcmProvider, push_fake: FakePushServer) -> None:
    push_fake.script("tok-b", bad_message())
    assert (await fcm.send(_token("tok-b"), MESSAGE)).result is Result.FAILED


async def test_throttling_and_server_errors_are_retried_once_each_honouring_retry_after(
    fcm: FcmProvider, push_fake: FakePushServer
) -> None:
    push_fake.script("tok-r", quota_exceeded(retry_after=7), unavailable(retry_after=2), internal())
    outcomes = [await fcm.send(_token("tok-r"), MESSAGE) for _ in range(3)]
    assert [(o.result, o.retry_after) for o in outcomes] == [
        (Result.RETRY, 7.0), (Result.RETRY, 2.0), (Result.RETRY, None)]
    # firebase-admin's own retries (4 more on 500/503) are off: one request per send
    assert [s.status for s in push_fake.to("tok-r")] == [429, 503, 500]
    assert (await fcm.send(_token("tok-r"), MESSAGE)).result is Result.SENT


async def test_unreachable_fcm_is_retried(push_fake: FakePushServer, tmp_path: Path) -> None:
    provider = FcmProvider(push_fake.service_account(tmp_path), url="http://127.0.0.1:9/v1/projects/{0}/messages:send")
    await provider.start()
    try:
        assert (await provider.send(_token("tok-u"), MESSAGE)).result is Result.RETRY
    finally:
        await provider.stop()


async def test_an_unreachable_token_endpoint_is_retried(push_fake: FakePushServer, tmp_path: Path) -> None:
    account = push_fake.service_account(tmp_path)
    info = json.loads(account.read_text())
    account.write_text(json.dumps({**info, "token_uri": "http://127.0.0.1:9/token"}))
    provider = FcmProvider(account, url=push_fake.fcm_url)
    await provider.start()
    try:
        outcome = await provider.send(_token("tok-o"), MESSAGE)
        assert outcome.result is Result.RETRY
        assert "OAuth" in outcome.detail
        assert push_fake.sent == []
    finally:
        await provider.stop()


@pytest.mark.parametrize(("content", "says"), [
    (None, "not a readable"),
    ("{not json", "not a readable"),
    ('["a list"]', "not a readable"),
    ('{"type": "authorized_user", "client_id": "x"}', "not a readable"),
])
def test_a_bad_service_account_file_is_a_config_error(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "account.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=says) as caught:
        FcmProvider(path)
    assert str(path) in str(caught.value)


def test_a_service_account_without_project_is_a_config_error(push_fake: FakePushServer, tmp_path: Path) -> None:
    account = push_fake.service_account(tmp_path)
    info = json.loads(account.read_text())
    del info["project_id"]
    account.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="project_id"):
        FcmProvider(account)
