"""Push notifications end to end, in both modes: ``chatmq serve`` or a cluster (with its ``chatmq push``
part) configured with ``push_provider = fcm``, the real firebase-admin in the server talking to
``FakePushServer`` (OAuth token endpoint and FCM v1) over local sockets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from chatmq.devices.sdk import MessageRejectedError
from chatmq.services.store.base import Store
from tests.e2e.harness import (
    Deployment,
    Peer,
    Users,
    cluster,
    read_store,
    serve,
    user_factory,
)
from tests.fakes.push import FakePushServer, internal

TIMEOUT = 15


@pytest.fixture(scope="module")
def fcm() -> Iterator[FakePushServer]:
    with FakePushServer() as fake:
        yield fake


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def pushing(request: pytest.FixtureRequest, fcm: FakePushServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment that pushes through FCM (``fcm``): defaults otherwise (no previews, no group events)."""
    tmp = tmp_path_factory.mktemp("push")
    env = {"CHATMQ_PUSH_PROVIDER": "fcm", "CHATMQ_FCM_CREDENTIALS": str(fcm.service_account(tmp)),
           "CHATMQ_FCM_URL": fcm.fcm_url}
    if request.param == "embedded":
        yield from serve(tmp, **env)
    else:
        yield from cluster(tmp, env=env)


@pytest.fixture
def users(pushing: Deployment) -> Iterator[Users]:
    yield from user_factory(pushing)


@pytest.fixture
def fake(fcm: FakePushServer) -> Iterator[FakePushServer]:
    yield fcm
    fcm.failing = None


def register_token(server: Deployment, peer: Peer, platform: str = "android", prefix: str = "") -> str:
    """A fresh push token (starting with ``prefix``) registered for ``peer`` through the REST API."""
    token = f"{prefix}{platform}-{uuid.uuid4().hex}"
    answer = httpx.post(f"{server.api_url}/api/v1/push-tokens", json={"platform": platform, "token": token},
                        headers={"Authorization": f"Bearer {peer.access_token}"})
    assert answer.status_code == 201, answer.text
    return token


def store_tokens(server: Deployment, user_id: str) -> list[str]:
    """``user_id``'s push tokens, read from the deployment's store."""

    async def read(store: Store) -> list[str]:
        return [t.token for t in await store.push_tokens(user_id)]

    return read_store(server, read)


def test_an_offline_user_gets_one_data_push_per_message_and_an_online_user_none(
    users: Users, pushing: Deployment, fake: FakePushServer
) -> None:
    alice, bob, carol = users(), users(connect=False), users()
    bob_phone, carol_phone = register_token(pushing, bob), register_token(pushing, carol)

    carol_cid = alice.send(carol.uid, "carol is here")
    carol.wait_messages(1, TIMEOUT)
    acks = [alice.wait_ack(alice.send(bob.uid, f"private words {n}"), TIMEOUT) for n in range(2)]
    pushes = fake.wait_for(lambda s: len([p for p in s if p.token == bob_phone]) >= 2, TIMEOUT)

    to_bob = [p for p in pushes if p.token == bob_phone]
    assert sorted(p.data["id"] for p in to_bob) == sorted(a["id"] for a in acks)
    for push in to_bob:
        assert push.status == 200
        assert push.data == {"type": "message", "id": push.data["id"], "from": alice.uid,
                             "conversation": alice.uid, "group": "false"}
        assert "private" not in str(push.body)  # no text: previews are off by default
        assert "notification" not in push.body["message"]  # a data message
        assert push.body["message"]["android"]["collapse_key"] == alice.uid
    assert fake.to(carol_phone) == []
    assert alice.wait_ack(carol_cid, TIMEOUT)

    bob.connect()  # and the messages themselves arrive as always
    assert [m["id"] for m in bob.wait_messages(2, TIMEOUT)] == [a["id"] for a in acks]
    assert len(fake.to(bob_phone)) == 2  # exactly one push per message


def test_a_token_fcm_calls_unregistered_is_removed(users: Users, pushing: Deployment, fake: FakePushServer) -> None:
    alice, dave = users(), users(connect=False)
    live = register_token(pushing, dave)
    dead = register_token(pushing, dave, "ios", prefix="unregistered-")  # FakePushServer: FCM's UNREGISTERED

    alice.wait_ack(alice.send(dave.uid, "hello"), TIMEOUT)
    fake.wait_for(lambda s: {live, dead} <= {p.token for p in s}, TIMEOUT)

    deadline = time.monotonic() + TIMEOUT
    while dead in (tokens := store_tokens(pushing, dave.uid)):
        assert time.monotonic() < deadline, f"{dead} is still registered: {tokens}"
        time.sleep(0.1)
    assert live in tokens


def test_messages_are_delivered_while_fcm_answers_500(users: Users, pushing: Deployment,
                                                      fake: FakePushServer) -> None:
    alice, erin = users(), users(connect=False)
    phone = register_token(pushing, erin)
    fake.failing = internal()

    acks = [alice.wait_ack(alice.send(erin.uid, f"m{n}"), TIMEOUT) for n in range(3)]
    failed = fake.wait_for(lambda s: any(p.token == phone for p in s), TIMEOUT)
    assert all(p.status == 500 for p in failed if p.token == phone)

    erin.connect()
    assert [m["id"] for m in erin.wait_messages(3, TIMEOUT)] == [a["id"] for a in acks]


def test_group_messages_push_offline_members_and_group_events_do_not(
    users: Users, pushing: Deployment, fake: FakePushServer
) -> None:
    alice, bob, carol = users(), users(connect=False), users()
    bob_phone, carol_phone = register_token(pushing, bob), register_token(pushing, carol)
    gid = alice.create_group("walkers", [bob.uid, carol.uid])["group_id"]
    # the group_created event went to everyone (bob's kept for later) before the message is sent
    carol.wait_for(lambda: [e for e in carol.events if e["event"] == "group_created"], TIMEOUT)

    ack = alice.wait_ack(alice.send_group(gid, "walk at noon"), TIMEOUT)
    carol.wait_messages(1, TIMEOUT)
    [push] = [p for p in fake.wait_for(lambda s: any(p.token == bob_phone for p in s), TIMEOUT)
              if p.token == bob_phone]

    assert push.data == {"type": "message", "id": ack["id"], "from": alice.uid, "conversation": gid,
                         "group": "true"}
    assert fake.to(carol_phone) == []  # online
    bob.connect()
    assert bob.wait_messages(1, TIMEOUT)[0]["id"] == ack["id"]
    assert [p.data["type"] for p in fake.to(bob_phone)] == ["message"]  # the event was not pushed


def test_a_blocked_senders_message_is_not_pushed(users: Users, pushing: Deployment, fake: FakePushServer) -> None:
    alice, bob = users(connect=False), users()
    phone = register_token(pushing, alice)
    blocked = httpx.put(f"{pushing.api_url}/api/v1/blocks/{bob.uid}",
                        headers={"Authorization": f"Bearer {alice.access_token}"})
    assert blocked.status_code == 204
    with pytest.raises(MessageRejectedError) as refused:
        bob.wait_ack(bob.send(alice.uid, "let me in"), TIMEOUT)
    assert refused.value.code == "blocked"
    unblocked = httpx.delete(f"{pushing.api_url}/api/v1/blocks/{bob.uid}",
                             headers={"Authorization": f"Bearer {alice.access_token}"})
    assert unblocked.status_code == 204
    ack = bob.wait_ack(bob.send(alice.uid, "now?"), TIMEOUT)  # the same conversation: after the refused one
    pushed = fake.wait_for(lambda s: any(p.token == phone for p in s), TIMEOUT)
    assert [p.data["id"] for p in pushed if p.token == phone] == [ack["id"]]
    alice.connect()
    assert [m["body"] for m in alice.wait_messages(1, TIMEOUT)] == [{"text": "now?"}]
