"""The ``Store`` contract, run against every implementation in ``STORE_FACTORIES``.

A factory takes the test's ``tmp_path`` and returns a new, unstarted store; calling it twice
with the same path must give two handles on the same data (that is how restart is tested).
SQLite always runs; MongoDB runs when ``CHATMQ_MONGO_URL`` names a running server
(``scripts/services.sh up mongo``, then ``CHATMQ_MONGO_URL=mongodb://127.0.0.1:27017``), one
fresh database per test, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from chatmq.core import ids
from chatmq.core.errors import ConflictError, NotFoundError, StoreError
from chatmq.services.store.base import (
    MAX_OWED,
    SHADOW_MAX_BYTES,
    SHADOW_MAX_DEPTH,
    DeviceCommand,
    DeviceConfirm,
    DeviceOwed,
    DeviceStatus,
    DocumentLimitError,
    Job,
    JobExecution,
    NewMessage,
    PendingItem,
    Route,
    Store,
    StoredMessage,
)
from chatmq.services.store.sqlite import SCHEMA_VERSION, SQLiteStore

if TYPE_CHECKING:
    from chatmq.services.store.mongo import MongoStore

StoreFactory = Callable[[Path], Store]

MONGO_URL = os.environ.get("CHATMQ_MONGO_URL")
_MONGO_SKIP = "CHATMQ_MONGO_URL is not set (scripts/services.sh up mongo)"


def _sqlite_store(tmp_path: Path) -> Store:
    return SQLiteStore(tmp_path / "chatmq.db")


def _mongo_database(tmp_path: Path) -> str:
    """This test's MongoDB database: a fresh name, remembered in ``tmp_path`` so that every
    handle made for the test (restart) opens the same one."""
    marker = tmp_path / "mongo-database"
    if not marker.exists():
        marker.write_text("t_" + uuid.uuid4().hex)
    return marker.read_text()


def _mongo_store(tmp_path: Path) -> Store:
    if not MONGO_URL:
        pytest.skip(_MONGO_SKIP)
    from chatmq.services.store.mongo import MongoStore

    return MongoStore(MONGO_URL, database=_mongo_database(tmp_path), timeout_ms=5000)


def _drop_mongo_database(tmp_path: Path) -> None:
    """Drop the database ``_mongo_store`` made for this test, if it made one."""
    marker = tmp_path / "mongo-database"
    if not MONGO_URL or not marker.exists():
        return
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(MONGO_URL, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(marker.read_text())
    finally:
        client.close()


STORE_FACTORIES = [
    pytest.param(_sqlite_store, id="sqlite"),
    pytest.param(
        _mongo_store, id="mongo", marks=[pytest.mark.cluster, pytest.mark.skipif(not MONGO_URL, reason=_MONGO_SKIP)]
    ),
]


@pytest.fixture(params=STORE_FACTORIES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A function making new (unstarted) handles on this test's store data."""
    factory: StoreFactory = request.param
    yield lambda: factory(tmp_path)
    _drop_mongo_database(tmp_path)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    s = make_store()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


# helpers ----------------------------------------------------------------------
def new_message(
    sender: str,
    *,
    to: str | None = None,
    group: str | None = None,
    recipients: list[str] | None = None,
    client_id: str | None = None,
    body: dict[str, Any] | None = None,
) -> NewMessage:
    """A message as the router would build it, with one envelope per recipient."""
    sid = ids.server_id()
    body = body if body is not None else {"text": f"hello {sid}"}
    if recipients is None:
        assert to is not None
        recipients = [to]
    return NewMessage(
        server_id=sid,
        client_id=client_id if client_id is not None else "c-" + sid,
        sender=sender,
        to=to,
        group=group,
        conversation=ids.conversation_key(sender, to, group),
        body=orjson.dumps(body),
        ts=ids.now_ms(),
        envelopes={
            r: orjson.dumps({"type": "message", "id": sid, "from": sender, "to": to, "for": r, "group": group,
                             "body": body})
            for r in recipients
        },
    )


async def all_pending(store: Store, user_id: str) -> list[PendingItem]:
    return await store.pending(user_id, 0, 10_000)


# lifecycle --------------------------------------------------------------------
async def test_methods_before_start_raise_store_error(make_store: Callable[[], Store]) -> None:
    s = make_store()
    with pytest.raises(StoreError):
        await s.get_user("u1")
    with pytest.raises(StoreError):
        await s.create_user("u1", "alice", "h", None)


async def test_methods_after_stop_raise_and_stop_twice_is_harmless(make_store: Callable[[], Store]) -> None:
    s = make_store()
    await s.start()
    await s.create_user("u1", "alice", "h", None)
    await s.stop()
    await s.stop()
    with pytest.raises(StoreError):
        await s.get_user("u1")
    with pytest.raises(StoreError):
        await s.count_pending()


async def test_async_context_manager(make_store: Callable[[], Store]) -> None:
    async with make_store() as s:
        await s.create_user("u1", "alice", "h", None)
        assert await s.count_users() == 1
    with pytest.raises(StoreError):
        await s.count_users()


async def test_concurrent_operations(store: Store) -> None:
    await asyncio.gather(*(store.create_user(f"u{i}", f"user{i}", "h", None) for i in range(50)))
    assert await store.count_users() == 50
    results = await asyncio.gather(
        *(store.create_user(f"x{i}", "same-name", "h", None) for i in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert sum(isinstance(r, ConflictError) for r in results) == 4
    assert await store.count_users() == 51


# users ------------------------------------------------------------------------
async def test_create_and_get_user(store: Store) -> None:
    before = ids.now_ms()
    user = await store.create_user("u1", "alice", "hash-a", "Alice")
    after = ids.now_ms()
    assert (user.user_id, user.username, user.display_name, user.password_hash) == (
        "u1",
        "alice",
        "Alice",
        "hash-a",
    )
    assert before <= user.created_at <= after
    assert not user.disabled
    assert not user.is_admin

    assert await store.get_user("u1") == user
    assert await store.get_user_by_username("alice") == user
    assert await store.get_user("nobody") is None
    assert await store.get_user_by_username("nobody") is None

    admin = await store.create_user("u2", "root", "hash-r", None, is_admin=True)
    assert admin.is_admin
    assert admin.display_name is None
    assert await store.get_user("u2") == admin
    assert await store.count_users() == 2


async def test_username_conflict(store: Store) -> None:
    original = await store.create_user("u1", "alice", "hash-a", "Alice")
    with pytest.raises(ConflictError):
        await store.create_user("u2", "alice", "hash-b", "Other Alice")
    assert await store.count_users() == 1
    assert await store.get_user("u2") is None
    assert await store.get_user_by_username("alice") == original


async def test_contacts_lookup(store: Store) -> None:
    await store.create_user("u1", "alice", "h", None)
    await store.create_user("u2", "bob", "h", None)
    await store.create_user("u3", "carol", "h", None)

    found = await store.user_ids_by_usernames(["bob", "alice", "mallory", "bob"])
    assert found == {"alice": "u1", "bob": "u2"}
    assert await store.user_ids_by_usernames([]) == {}
    assert await store.user_ids_by_usernames(["nobody"]) == {}

    assert await store.existing_user_ids(["u3", "u9", "u1", "u1"]) == {"u1", "u3"}
    assert await store.existing_user_ids([]) == set()


async def test_contacts_lookup_many(store: Store) -> None:
    for i in range(1200):
        await store.create_user(f"u{i:04}", f"user{i:04}", "h", None)
    names = [f"user{i:04}" for i in range(0, 2400, 2)]  # half of them exist
    found = await store.user_ids_by_usernames(names)
    assert found == {f"user{i:04}": f"u{i:04}" for i in range(0, 1200, 2)}
    existing = await store.existing_user_ids([f"u{i:04}" for i in range(0, 2400, 2)])
    assert existing == {f"u{i:04}" for i in range(0, 1200, 2)}


async def test_user_flags(store: Store) -> None:
    await store.create_user("u1", "alice", "h", None)

    await store.set_user_flags("u1", disabled=True)
    user = await store.get_user("u1")
    assert user is not None
    assert (user.disabled, user.is_admin) == (True, False)

    await store.set_user_flags("u1", is_admin=True)
    user = await store.get_user("u1")
    assert user is not None
    assert (user.disabled, user.is_admin) == (True, True)

    await store.set_user_flags("u1", disabled=False)
    user = await store.get_user("u1")
    assert user is not None
    assert (user.disabled, user.is_admin) == (False, True)

    await store.set_user_flags("u1")  # nothing to change, still fine
    user = await store.get_user("u1")
    assert user is not None
    assert (user.disabled, user.is_admin) == (False, True)

    await store.set_user_flags("u1", disabled=True, is_admin=False)
    user = await store.get_user("u1")
    assert user is not None
    assert (user.disabled, user.is_admin) == (True, False)

    with pytest.raises(NotFoundError):
        await store.set_user_flags("nobody", disabled=True)
    with pytest.raises(NotFoundError):
        await store.set_user_flags("nobody")


# push tokens ------------------------------------------------------------------
async def test_push_tokens_add_list_remove(store: Store) -> None:
    assert await store.push_tokens("u1") == []
    before = ids.now_ms()
    t1 = await store.add_push_token("u1", "fcm", "tok-1")
    assert (t1.user_id, t1.platform, t1.token) == ("u1", "fcm", "tok-1")
    assert t1.created_at >= before
    t2 = await store.add_push_token("u1", "apns", "tok-2")

    tokens = await store.push_tokens("u1")
    assert [t.token for t in tokens] == ["tok-1", "tok-2"]
    assert tokens == [t1, t2]

    # re-registering the same token by the same user does not duplicate it
    again = await store.add_push_token("u1", "fcm", "tok-1")
    assert again.user_id == "u1"
    assert sorted(t.token for t in await store.push_tokens("u1")) == ["tok-1", "tok-2"]

    assert await store.remove_push_token("u2", "tok-1") is False  # not the caller's token
    assert len(await store.push_tokens("u1")) == 2
    assert await store.remove_push_token("u1", "tok-1") is True
    assert [t.token for t in await store.push_tokens("u1")] == ["tok-2"]
    assert await store.remove_push_token("u1", "tok-1") is False
    assert await store.remove_push_token("u1", "never") is False


async def test_push_token_moves_to_new_user(store: Store) -> None:
    await store.add_push_token("u1", "fcm", "shared")
    await store.add_push_token("u1", "fcm", "mine")

    moved = await store.add_push_token("u2", "apns", "shared")
    assert (moved.user_id, moved.platform, moved.token) == ("u2", "apns", "shared")

    assert [t.token for t in await store.push_tokens("u1")] == ["mine"]
    u2_tokens = await store.push_tokens("u2")
    assert [(t.user_id, t.platform, t.token) for t in u2_tokens] == [("u2", "apns", "shared")]

    # the previous owner can no longer remove it
    assert await store.remove_push_token("u1", "shared") is False
    assert await store.remove_push_token("u2", "shared") is True
    assert await store.push_tokens("u2") == []


# devices ----------------------------------------------------------------------
async def test_devices_create_list_revoke(store: Store) -> None:
    before = ids.now_ms()
    d1 = await store.create_device("d1", "u1", "kitchen", "sh1")
    d2 = await store.create_device("d2", "u1", "garage", "sh2")
    d3 = await store.create_device("d3", "u2", "other", "sh3")
    assert (d1.device_id, d1.owner_id, d1.name, d1.secret_hash, d1.revoked) == (
        "d1",
        "u1",
        "kitchen",
        "sh1",
        False,
    )
    assert d1.created_at >= before

    assert await store.get_device("d1") == d1
    assert await store.get_device("nope") is None
    assert await store.list_devices("u1") == [d1, d2]  # oldest first
    assert await store.list_devices("u2") == [d3]
    assert await store.list_devices("u3") == []

    assert await store.revoke_device("u2", "d1") is False  # not the owner
    assert await store.revoke_device("u1", "nope") is False
    assert await store.revoke_device("u1", "d1") is True
    assert await store.revoke_device("u1", "d1") is False  # no longer live

    assert await store.list_devices("u1") == [d2]
    revoked = await store.get_device("d1")
    assert revoked is not None
    assert revoked.revoked
    assert (revoked.owner_id, revoked.name, revoked.secret_hash) == ("u1", "kitchen", "sh1")


async def test_device_id_conflict(store: Store) -> None:
    d1 = await store.create_device("d1", "u1", "kitchen", "sh1")
    with pytest.raises(ConflictError):
        await store.create_device("d1", "u2", "other", "sh2")
    assert await store.get_device("d1") == d1
    assert await store.list_devices("u2") == []


# groups -----------------------------------------------------------------------
async def test_create_and_get_group(store: Store) -> None:
    before = ids.now_ms()
    group = await store.create_group("g1", "friends", "u1", ["u2", "u3", "u2", "u1"])
    assert (group.group_id, group.name, group.created_by) == ("g1", "friends", "u1")
    assert group.created_at >= before
    assert group.member_ids() == ["u1", "u2", "u3"]  # creator first, deduplicated
    assert [m.role for m in group.members] == ["admin", "member", "member"]
    assert len({m.joined_at for m in group.members}) == 1  # joined together: the same ms
    assert group.created_at <= group.members[0].joined_at <= ids.now_ms()
    assert group.is_admin("u1")
    assert not group.is_admin("u2")
    assert group.is_member("u3")

    assert await store.get_group("g1") == group
    assert await store.get_group("nope") is None

    with pytest.raises(ConflictError):
        await store.create_group("g1", "again", "u9", [])
    assert await store.get_group("g1") == group


async def test_get_groups_reads_many_at_once(store: Store) -> None:
    g1 = await store.create_group("g1", "one", "u1", ["u2"])
    g2 = await store.create_group("g2", "two", "u2", [])
    assert await store.get_groups(["g2", "nope", "g1", "g2"]) == {"g1": g1, "g2": g2}
    assert await store.get_groups([]) == {}
    assert await store.get_groups(["nope"]) == {}


async def test_create_group_creator_only(store: Store) -> None:
    group = await store.create_group("g1", "solo", "u1", [])
    assert [(m.user_id, m.role) for m in group.members] == [("u1", "admin")]


async def test_groups_of(store: Store) -> None:
    g1 = await store.create_group("g1", "one", "u1", ["u2"])
    g2 = await store.create_group("g2", "two", "u2", ["u3"])
    g3 = await store.create_group("g3", "three", "u3", ["u1", "u2"])

    assert [g.group_id for g in await store.groups_of("u1")] == ["g1", "g3"]
    assert await store.groups_of("u2") == [g1, g2, g3]
    assert [g.group_id for g in await store.groups_of("u3")] == ["g2", "g3"]
    assert await store.groups_of("u9") == []


async def test_rename_group(store: Store) -> None:
    created = await store.create_group("g1", "old", "u1", ["u2"])
    renamed = await store.rename_group("g1", "new")
    assert renamed.name == "new"
    assert renamed.members == created.members
    assert (renamed.created_by, renamed.created_at) == (created.created_by, created.created_at)
    assert await store.get_group("g1") == renamed
    with pytest.raises(NotFoundError):
        await store.rename_group("nope", "x")


async def test_add_members_returns_only_new(store: Store) -> None:
    created = await store.create_group("g1", "g", "u1", ["u2"])
    added = await store.add_members("g1", ["u2", "u3", "u1", "u4", "u3"])
    assert added == ["u3", "u4"]

    group = await store.get_group("g1")
    assert group is not None
    assert group.member_ids() == ["u1", "u2", "u3", "u4"]
    assert [m.role for m in group.members] == ["admin", "member", "member", "member"]
    last_before = max(m.joined_at for m in created.members)
    new_joined = [m.joined_at for m in group.members if m.user_id in ("u3", "u4")]
    assert new_joined[0] == new_joined[1] >= last_before  # added together: the same ms

    assert await store.add_members("g1", ["u1", "u4"]) == []
    assert await store.add_members("g1", []) == []
    assert [g.group_id for g in await store.groups_of("u4")] == ["g1"]

    with pytest.raises(NotFoundError):
        await store.add_members("nope", ["u1"])


async def test_members_keep_their_order_not_their_ids_order(store: Store) -> None:
    """The members' order is explicit (a position): the creator, the members as given, then those added
    as given, though all created together share one ``joined_at`` and the ids sort otherwise."""
    await store.create_group("g1", "g", "u5", ["u9", "u2", "u7"])
    await store.add_members("g1", ["u8", "u1"])
    await store.add_members("g1", ["u3"])
    group = await store.get_group("g1")
    assert group is not None
    assert group.member_ids() == ["u5", "u9", "u2", "u7", "u8", "u1", "u3"]
    assert [g.member_ids() for g in await store.groups_of("u1")] == [group.member_ids()]

    await store.remove_member("g1", "u2")
    assert await store.remove_member("g1", "u5") == "u9"  # the first in the order becomes admin
    group = await store.get_group("g1")
    assert group is not None
    assert [(m.user_id, m.role) for m in group.members] == [
        ("u9", "admin"), ("u7", "member"), ("u8", "member"), ("u1", "member"), ("u3", "member")]
    await store.add_members("g1", ["u0"])
    assert (await store.get_group("g1") or group).member_ids()[-1] == "u0"


async def test_remove_plain_member(store: Store) -> None:
    await store.create_group("g1", "g", "u1", ["u2", "u3"])
    assert await store.remove_member("g1", "u2") is None
    group = await store.get_group("g1")
    assert group is not None
    assert group.member_ids() == ["u1", "u3"]
    assert group.is_admin("u1")
    assert await store.groups_of("u2") == []

    with pytest.raises(NotFoundError):
        await store.remove_member("g1", "u2")  # no longer a member
    with pytest.raises(NotFoundError):
        await store.remove_member("g1", "u9")
    with pytest.raises(NotFoundError):
        await store.remove_member("nope", "u1")


async def test_remove_last_admin_promotes_longest_standing(store: Store) -> None:
    await store.create_group("g1", "g", "u1", ["u3", "u2"])  # u3 joined before u2
    await store.add_members("g1", ["u0"])  # smallest id, but joined last

    assert await store.remove_member("g1", "u1") == "u3"
    group = await store.get_group("g1")
    assert group is not None
    assert [(m.user_id, m.role) for m in group.members] == [
        ("u3", "admin"),
        ("u2", "member"),
        ("u0", "member"),
    ]

    # a plain member leaving does not promote anyone
    assert await store.remove_member("g1", "u2") is None
    group = await store.get_group("g1")
    assert group is not None
    assert [(m.user_id, m.role) for m in group.members] == [("u3", "admin"), ("u0", "member")]

    assert await store.remove_member("g1", "u3") == "u0"
    group = await store.get_group("g1")
    assert group is not None
    assert [(m.user_id, m.role) for m in group.members] == [("u0", "admin")]


async def test_group_deleted_when_empty(store: Store) -> None:
    await store.create_group("g1", "g", "u1", ["u2"])
    await store.create_group("g2", "keep", "u2", [])
    assert await store.remove_member("g1", "u1") == "u2"
    assert await store.remove_member("g1", "u2") is None  # last one out

    assert await store.get_group("g1") is None
    assert [g.group_id for g in await store.groups_of("u2")] == ["g2"]
    with pytest.raises(NotFoundError):
        await store.remove_member("g1", "u2")
    with pytest.raises(NotFoundError):
        await store.rename_group("g1", "x")

    # the id is free again and no old member survived
    again = await store.create_group("g1", "fresh", "u5", [])
    assert again.member_ids() == ["u5"]
    assert again.name == "fresh"


# messages ---------------------------------------------------------------------
async def test_accept_batch_stores_history_and_pending(store: Store) -> None:
    await store.create_group("g1", "g", "alice", ["bob", "carol"])
    m1 = new_message("alice", to="bob", body={"text": "hi bob", "nested": {"n": [1, 2.5, None, True]}})
    m2 = new_message("bob", to="alice", body={"text": "héllo ✓"})
    m3 = new_message("alice", group="g1", recipients=["bob", "carol"])

    results = await store.accept_messages([m1, m2, m3])
    assert [(r.server_id, r.ts, r.duplicate) for r in results] == [
        (m1.server_id, m1.ts, False),
        (m2.server_id, m2.ts, False),
        (m3.server_id, m3.ts, False),
    ]

    bob = await all_pending(store, "bob")
    assert [(p.item_id, p.kind) for p in bob] == [(m1.server_id, "message"), (m3.server_id, "message")]
    assert bob[0].envelope == m1.envelopes["bob"]
    assert bob[1].envelope == m3.envelopes["bob"]
    assert bob[0].seq < bob[1].seq

    carol = await all_pending(store, "carol")
    assert [(p.item_id, p.envelope) for p in carol] == [(m3.server_id, m3.envelopes["carol"])]

    alice = await all_pending(store, "alice")
    assert [(p.item_id, p.envelope) for p in alice] == [(m2.server_id, m2.envelopes["alice"])]

    assert await store.count_pending("bob") == 2
    assert await store.count_pending("carol") == 1
    assert await store.count_pending("alice") == 1
    assert await store.count_pending("dave") == 0
    assert await store.count_pending() == 4

    stored = await store.get_messages([m1.server_id, m3.server_id])
    assert [s.server_id for s in stored] == [m1.server_id, m3.server_id]
    s1, s3 = stored
    assert (s1.client_id, s1.sender, s1.to, s1.group, s1.conversation, s1.body, s1.ts) == (
        m1.client_id,
        "alice",
        "bob",
        None,
        m1.conversation,
        orjson.loads(m1.body),
        m1.ts,
    )
    assert (s3.sender, s3.to, s3.group, s3.conversation, s3.body) == ("alice", None, "g1", "g1", orjson.loads(m3.body))

    pair = ids.conversation_key("alice", "bob")
    assert [s.server_id for s in await store.history(pair, None, 10)] == [m2.server_id, m1.server_id]
    assert [s.server_id for s in await store.history("g1", None, 10)] == [m3.server_id]


async def test_accept_batch_keeps_every_character_and_the_batch_order(store: Store) -> None:
    """What a message and its envelope hold comes back exactly (quotes, backslashes, escapes, control
    characters, astral characters), and a batch of many is stored whole, pending in the batch's order."""
    odd = {"text": 'q"uo\\te \u0000\x01 \n\t ünï 😀 </script>', "k": ["\\u00e9", "\ud7ff"]}
    m = new_message("alice", to="bob", body=odd)
    many = [new_message("carol", to="bob") for _ in range(1200)]
    results = await store.accept_messages([m, *many])
    assert [r.duplicate for r in results] == [False] * 1201
    pending = await all_pending(store, "bob")
    assert [p.item_id for p in pending] == [x.server_id for x in [m, *many]]
    assert pending[0].envelope == m.envelopes["bob"]
    assert [p.envelope for p in pending[1:]] == [x.envelopes["bob"] for x in many]
    (stored,) = await store.get_messages([m.server_id])
    assert stored.body == odd


async def test_a_resend_within_one_batch_is_a_duplicate_of_the_first(store: Store) -> None:
    first = new_message("alice", to="bob")
    again = new_message("alice", to="bob", client_id=first.client_id)
    other = new_message("alice", to="bob")
    results = await store.accept_messages([first, again, other])
    assert [(r.server_id, r.ts, r.duplicate) for r in results] == [
        (first.server_id, first.ts, False), (first.server_id, first.ts, True), (other.server_id, other.ts, False)]
    assert [p.item_id for p in await all_pending(store, "bob")] == [first.server_id, other.server_id]
    assert await store.get_messages([again.server_id]) == []


async def test_accept_empty_batch(store: Store) -> None:
    assert await store.accept_messages([]) == []
    assert await store.count_pending() == 0


async def test_duplicate_across_batches(store: Store) -> None:
    first = new_message("alice", to="bob", client_id="c1")
    [r1] = await store.accept_messages([first])
    assert not r1.duplicate

    resend = new_message("alice", to="bob", client_id="c1", body={"text": "changed"})
    assert resend.server_id != first.server_id
    [r2] = await store.accept_messages([resend])
    assert (r2.server_id, r2.ts, r2.duplicate) == (first.server_id, first.ts, True)

    assert await store.get_messages([resend.server_id]) == []
    assert [p.item_id for p in await all_pending(store, "bob")] == [first.server_id]
    history = await store.history(first.conversation, None, 10)
    assert [(s.server_id, s.body) for s in history] == [(first.server_id, orjson.loads(first.body))]

    # the same client id from another sender is a different message
    other = new_message("carol", to="bob", client_id="c1")
    [r3] = await store.accept_messages([other])
    assert (r3.server_id, r3.duplicate) == (other.server_id, False)
    assert await store.count_pending("bob") == 2


async def test_duplicate_inside_batch(store: Store) -> None:
    a = new_message("alice", to="bob", client_id="same")
    b = new_message("bob", to="alice")
    a_again = new_message("alice", to="bob", client_id="same", body={"text": "second copy"})
    results = await store.accept_messages([a, b, a_again])
    assert [(r.server_id, r.ts, r.duplicate) for r in results] == [
        (a.server_id, a.ts, False),
        (b.server_id, b.ts, False),
        (a.server_id, a.ts, True),
    ]
    assert await store.get_messages([a_again.server_id]) == []
    assert [p.item_id for p in await all_pending(store, "bob")] == [a.server_id]
    assert await store.count_pending() == 2
    assert [s.server_id for s in await store.history(a.conversation, None, 10)] == [b.server_id, a.server_id]


async def test_client_ids_are_per_sender_whatever_they_hold(store: Store) -> None:
    """(sender, client_id) pairs that would collide if the two were simply joined are distinct."""
    msgs = [
        new_message("a:1", to="bob", client_id="x"),
        new_message("a", to="bob", client_id="1:x"),
        new_message("1:a", to="bob", client_id="x"),
        new_message("a:1:x", to="bob", client_id=""),
    ]
    results = await store.accept_messages(msgs)
    assert [(r.server_id, r.duplicate) for r in results] == [(m.server_id, False) for m in msgs]
    again = await store.accept_messages([new_message(m.sender, to="bob", client_id=m.client_id) for m in msgs])
    assert [(r.server_id, r.duplicate) for r in again] == [(m.server_id, True) for m in msgs]
    assert await store.count_pending("bob") == 4


async def test_failed_batch_stores_nothing(store: Store) -> None:
    existing = new_message("alice", to="bob")
    await store.accept_messages([existing])

    fresh = new_message("carol", to="dave")
    clash = new_message("erin", to="frank")
    clash = NewMessage(  # reuses a server id already in history: the batch fails as a whole
        server_id=existing.server_id,
        client_id=clash.client_id,
        sender=clash.sender,
        to=clash.to,
        group=None,
        conversation=clash.conversation,
        body=clash.body,
        ts=clash.ts,
        envelopes=clash.envelopes,
    )
    with pytest.raises(StoreError):
        await store.accept_messages([fresh, clash])

    assert await store.get_messages([fresh.server_id]) == []
    assert await store.count_pending("dave") == 0
    assert await store.count_pending("frank") == 0
    assert await store.count_pending() == 1
    # the store is still usable and the failed message can be accepted later
    [r] = await store.accept_messages([fresh])
    assert not r.duplicate


async def test_imported_messages_are_history_and_claim_their_client_ids(store: Store) -> None:
    imported = [StoredMessage(ids.server_id(), f"c{i}", "alice", "bob", None, ids.conversation_key("alice", "bob"),
                              {"text": f"old {i}"}, ids.now_ms()) for i in range(3)]
    await store.import_messages(imported)
    await store.import_messages([])

    assert await store.history(imported[0].conversation, None, 10) == imported[::-1]
    assert await store.count_pending() == 0
    assert await store.count_messages() == 3
    # a resend of an imported message is a duplicate of it
    [again] = await store.accept_messages([new_message("alice", to="bob", client_id="c1")])
    assert (again.server_id, again.ts, again.duplicate) == (imported[1].server_id, imported[1].ts, True)
    with pytest.raises(StoreError):
        await store.import_messages([imported[0]])


async def test_history_order_and_paging(store: Store) -> None:
    msgs = [new_message("alice" if i % 2 else "bob", to="bob" if i % 2 else "alice") for i in range(7)]
    noise = new_message("alice", to="carol")
    await store.accept_messages([*msgs[:3], noise])
    await store.accept_messages(msgs[3:])
    conv = ids.conversation_key("alice", "bob")
    newest_first = [m.server_id for m in reversed(msgs)]

    assert [s.server_id for s in await store.history(conv, None, 100)] == newest_first
    page1 = await store.history(conv, None, 3)
    assert [s.server_id for s in page1] == newest_first[:3]
    page2 = await store.history(conv, page1[-1].server_id, 3)
    assert [s.server_id for s in page2] == newest_first[3:6]
    page3 = await store.history(conv, page2[-1].server_id, 3)
    assert [s.server_id for s in page3] == newest_first[6:]
    assert await store.history(conv, page3[-1].server_id, 3) == []

    # ``before`` is exclusive and need not be a stored id
    assert [s.server_id for s in await store.history(conv, msgs[4].server_id, 100)] == newest_first[3:]
    assert await store.history(conv, "0", 10) == []
    assert [s.server_id for s in await store.history(conv, "z", 2)] == newest_first[:2]

    assert [s.server_id for s in await store.history(noise.conversation, None, 10)] == [noise.server_id]
    assert await store.history("nobody:none", None, 10) == []


async def test_get_messages(store: Store) -> None:
    m1 = new_message("alice", to="bob")
    m2 = new_message("bob", to="alice")
    await store.accept_messages([m1, m2])
    got = await store.get_messages([m2.server_id, "unknown", m1.server_id])
    assert {s.server_id for s in got} == {m1.server_id, m2.server_id}
    by_id = {s.server_id: s for s in got}
    assert by_id[m1.server_id].body == orjson.loads(m1.body)
    assert by_id[m2.server_id].sender == "bob"
    assert await store.get_messages([]) == []
    assert await store.get_messages(["unknown"]) == []


# pending, notices ---------------------------------------------------------------
async def test_notices_and_pending_paging(store: Store) -> None:
    m1 = new_message("alice", to="bob")
    await store.accept_messages([m1])
    await store.add_notices(
        [
            ("bob", "n1", orjson.dumps({"type": "receipt", "status": "read", "id": "x"})),
            ("carol", "n2", orjson.dumps({"type": "event", "what": "joined"})),
        ]
    )
    m2 = new_message("alice", to="bob")
    await store.accept_messages([m2])
    await store.add_notices([("bob", "n3", orjson.dumps({"type": "event", "n": 3}))])
    await store.add_notices([])

    items = await all_pending(store, "bob")
    assert [(p.item_id, p.kind) for p in items] == [
        (m1.server_id, "message"),
        ("n1", "notice"),
        (m2.server_id, "message"),
        ("n3", "notice"),
    ]
    seqs = [p.seq for p in items]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 4
    assert orjson.loads(items[1].envelope) == {"type": "receipt", "status": "read", "id": "x"}

    carol = await all_pending(store, "carol")
    assert [(p.item_id, p.kind, orjson.loads(p.envelope)) for p in carol] == [
        ("n2", "notice", {"type": "event", "what": "joined"})
    ]

    # paging with after_seq and limit
    page1 = await store.pending("bob", 0, 2)
    assert page1 == items[:2]
    page2 = await store.pending("bob", page1[-1].seq, 2)
    assert page2 == items[2:]
    assert await store.pending("bob", page2[-1].seq, 2) == []
    assert await store.pending("bob", items[0].seq, 100) == items[1:]
    assert await store.pending("nobody", 0, 10) == []

    # notices are not counted as pending messages
    assert await store.count_pending("bob") == 2
    assert await store.count_pending("carol") == 0
    assert await store.count_pending() == 2


async def test_remove_pending(store: Store) -> None:
    m1 = new_message("alice", to="bob")
    m2 = new_message("alice", group="g1", recipients=["bob", "carol"])
    m3 = new_message("alice", to="bob")
    await store.accept_messages([m1, m2, m3])
    await store.add_notices([("bob", "note-1", orjson.dumps({"type": "event"}))])

    removed = await store.remove_pending("bob", [m2.server_id, "unknown", m1.server_id, "note-1"])
    assert sorted(removed) == sorted([m1.server_id, m2.server_id])

    bob = await all_pending(store, "bob")
    assert [(p.item_id, p.kind) for p in bob] == [(m3.server_id, "message"), ("note-1", "notice")]
    # carol's copy of the group message is untouched
    assert [p.item_id for p in await all_pending(store, "carol")] == [m2.server_id]

    # removing again removes nothing
    assert await store.remove_pending("bob", [m1.server_id, m2.server_id]) == []
    # another user's items cannot be removed
    assert await store.remove_pending("dave", [m3.server_id]) == []
    assert await store.remove_pending("bob", []) == []
    assert await store.count_pending("bob") == 1
    assert await store.count_pending() == 2

    # history is not affected by delivery
    assert len(await store.get_messages([m1.server_id, m2.server_id, m3.server_id])) == 3


async def test_remove_notices(store: Store) -> None:
    m1 = new_message("alice", to="bob")
    await store.accept_messages([m1])
    await store.add_notices(
        [("bob", "n1", orjson.dumps({"k": 1})), ("bob", "n2", orjson.dumps({"k": 2})),
         ("bob", "n3", orjson.dumps({"k": 3})), ("carol", "c1", orjson.dumps({"k": 4}))]
    )
    bob = await all_pending(store, "bob")
    by_id = {p.item_id: p.seq for p in bob}
    carol_seq = (await all_pending(store, "carol"))[0].seq

    # only bob's notices with these seqs go: not his message item, not carol's notice
    await store.remove_notices("bob", [by_id["n1"], by_id["n3"], by_id[m1.server_id], carol_seq, 999_999])
    assert [p.item_id for p in await all_pending(store, "bob")] == [m1.server_id, "n2"]
    assert [p.item_id for p in await all_pending(store, "carol")] == ["c1"]

    await store.remove_notices("bob", [])
    await store.remove_notices("bob", [by_id["n2"]])
    assert [p.item_id for p in await all_pending(store, "bob")] == [m1.server_id]
    assert await store.count_pending("bob") == 1


async def test_pending_seq_keeps_growing(store: Store) -> None:
    await store.add_notices([("bob", "n1", orjson.dumps({}))])
    [first] = await all_pending(store, "bob")
    await store.remove_notices("bob", [first.seq])
    await store.add_notices([("bob", "n2", orjson.dumps({}))])
    [second] = await all_pending(store, "bob")
    assert second.seq > first.seq  # a client's after_seq cursor never sees a reused seq


async def test_take_pending_removes_each_users_items_and_returns_their_routes(store: Store) -> None:
    m1 = new_message("alice", to="bob")
    m2 = new_message("carol", to="bob")
    g = new_message("alice", group="g1", recipients=["bob", "carol"])
    await store.accept_messages([m1, m2, g])
    await store.add_notices([("bob", "n1", b'{"type":"receipt"}')])
    one_to_one = {m.server_id: Route(m.server_id, m.sender, "bob", None) for m in (m1, m2)}
    group = Route(g.server_id, "alice", None, "g1")
    asked = [("bob", [m2.server_id, "unknown", m1.server_id, g.server_id, "n1", m1.server_id]),
             ("carol", [g.server_id, m1.server_id]), ("dave", [m1.server_id]), ("erin", [])]

    # a read looks without removing
    assert await store.held_routes(asked) == [[one_to_one[m2.server_id], one_to_one[m1.server_id], group],
                                              [group], [], []]
    assert await store.count_pending() == 4

    taken = await store.take_pending(asked)
    assert taken == [[one_to_one[m2.server_id], one_to_one[m1.server_id], group], [group], [], []]
    assert [(p.kind, p.item_id) for p in await all_pending(store, "bob")] == [("notice", "n1")]
    assert await all_pending(store, "carol") == []
    assert await store.take_pending(asked) == [[], [], [], []]
    assert await store.take_pending([]) == []
    # history keeps every message
    assert len(await store.get_messages([m1.server_id, m2.server_id, g.server_id])) == 3


# restart ------------------------------------------------------------------------
async def test_data_survives_restart(make_store: Callable[[], Store]) -> None:
    s = make_store()
    await s.start()
    user = await s.create_user("u1", "alice", "hash", "Alice", is_admin=True)
    await s.create_user("u2", "bob", "hash", None)
    await s.set_user_flags("u2", disabled=True)
    token = await s.add_push_token("u1", "fcm", "tok")
    d1 = await s.create_device("d1", "u1", "sensor", "sh")
    await s.create_device("d2", "u1", "old", "sh")
    await s.revoke_device("u1", "d2")
    await s.create_group("g1", "team", "u1", ["u2"])
    await s.remove_member("g1", "u1")  # u2 promoted
    group = await s.get_group("g1")
    m1 = new_message("u1", to="u2", client_id="c1")
    m2 = new_message("u2", group="g1", recipients=["u1"])
    await s.accept_messages([m1, m2])
    await s.add_notices([("u1", "n1", orjson.dumps({"type": "receipt"}))])
    pending_u1 = await all_pending(s, "u1")
    await s.stop()

    s2 = make_store()
    await s2.start()
    try:
        assert await s2.get_user("u1") == user
        bob = await s2.get_user_by_username("bob")
        assert bob is not None
        assert bob.disabled
        assert await s2.count_users() == 2
        assert await s2.push_tokens("u1") == [token]
        assert await s2.list_devices("u1") == [d1]
        assert await s2.get_group("g1") == group
        assert group is not None
        assert group.is_admin("u2")
        assert [s.server_id for s in await s2.history(m1.conversation, None, 10)] == [m1.server_id]
        assert [(s.server_id, s.body) for s in await s2.get_messages([m2.server_id])] == [
            (m2.server_id, orjson.loads(m2.body))
        ]
        assert await all_pending(s2, "u1") == pending_u1
        assert [p.item_id for p in await all_pending(s2, "u2")] == [m1.server_id]
        # deduplication state survives too
        [dup] = await s2.accept_messages([new_message("u1", to="u2", client_id="c1")])
        assert (dup.server_id, dup.duplicate) == (m1.server_id, True)
        # and new seqs continue after the old ones
        await s2.add_notices([("u1", "n2", orjson.dumps({}))])
        assert (await all_pending(s2, "u1"))[-1].seq > pending_u1[-1].seq
    finally:
        await s2.stop()


# SQLite specifics ---------------------------------------------------------------
async def test_sqlite_pragmas_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "chatmq.db"
    s = SQLiteStore(path)
    await s.start()
    try:
        assert path.exists()  # the parent folders were created
        pragmas = await s._run(
            lambda conn: tuple(
                conn.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("journal_mode", "synchronous", "foreign_keys", "user_version")
            )
        )
        assert pragmas == ("wal", 2, 1, SCHEMA_VERSION)  # synchronous 2 == FULL
    finally:
        await s.stop()


async def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "chatmq.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.commit()
    s = SQLiteStore(path)
    with pytest.raises(StoreError):
        await s.start()
    with pytest.raises(StoreError):
        await s.count_users()
    await s.stop()


async def _check_members_of_the_earlier_order(s: Store) -> None:
    """Group ``g1`` written before positions (admin joined at 1, ``u-c`` at 3, ``u-b`` and ``u-a`` at 5) is in
    that order, a tie by user id; a member added comes last, and the first after the admin succeeds it."""
    group = await s.get_group("g1")
    assert group is not None
    assert group.member_ids() == ["admin", "u-c", "u-a", "u-b"]
    assert await s.add_members("g1", ["u-0"]) == ["u-0"]
    assert await s.remove_member("g1", "admin") == "u-c"
    group = await s.get_group("g1")
    assert group is not None
    assert [(m.user_id, m.role) for m in group.members] == [
        ("u-c", "admin"), ("u-a", "member"), ("u-b", "member"), ("u-0", "member")]


async def test_sqlite_version_4_group_members_are_numbered_in_their_earlier_order(tmp_path: Path) -> None:
    """A database before positions: its members get theirs on start, in the order they had (by ``joined_at``,
    a tie by user id), and those added later come after them."""
    path = tmp_path / "chatmq.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE groups (group_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_by TEXT NOT NULL,"
                     " created_at INTEGER NOT NULL)")
        conn.execute("CREATE TABLE group_members (group_id TEXT NOT NULL REFERENCES groups (group_id) ON DELETE"
                     " CASCADE, user_id TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('admin', 'member')),"
                     " joined_at INTEGER NOT NULL, PRIMARY KEY (group_id, user_id))")
        conn.execute("INSERT INTO groups VALUES ('g1', 'g', 'admin', 1)")
        conn.executemany("INSERT INTO group_members VALUES ('g1', ?, ?, ?)",
                         [("u-c", "member", 3), ("u-b", "member", 5), ("admin", "admin", 1), ("u-a", "member", 5)])
        conn.execute("PRAGMA user_version=4")
        conn.commit()
    async with SQLiteStore(path) as s:
        assert await s._run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
        await _check_members_of_the_earlier_order(s)


async def test_sqlite_version_5_pending_items_keep_their_routes_read_out_of_their_envelopes(tmp_path: Path) -> None:
    """Pending items written before their route was stored with them (version 5): a receipt takes them with the route
    from the envelope, as items written since take theirs from their columns."""
    path = tmp_path / "chatmq.db"
    async with SQLiteStore(path) as s:
        old_direct, old_group = new_message("a", to="b"), new_message("c", group="g1", recipients=["b"])
        await s.accept_messages([old_direct, old_group])
        await s._run(lambda conn: conn.execute("UPDATE pending SET route_from = NULL, route_to = NULL,"
                                               " route_group = NULL"))
        await s._run(lambda conn: conn.execute("PRAGMA user_version=5"))
    async with SQLiteStore(path) as s:
        new = new_message("a", to="b")
        await s.accept_messages([new])
        taken = await s.take_pending([("b", [old_direct.server_id, old_group.server_id, new.server_id])])
    assert taken == [[Route(old_direct.server_id, "a", "b", None), Route(old_group.server_id, "c", None, "g1"),
                      Route(new.server_id, "a", "b", None)]]


async def test_sqlite_restart_after_stop_same_object(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "chatmq.db")
    await s.start()
    await s.create_user("u1", "alice", "h", None)
    await s.stop()
    await s.start()
    try:
        assert await s.count_users() == 1
    finally:
        await s.stop()


async def test_commit_batch_accepts_then_takes_receipts(store: Store) -> None:
    m1 = new_message("alice", to="bob")
    await store.accept_messages([m1])
    m2, resend = new_message("alice", to="bob"), new_message("alice", to="bob", client_id=m1.client_id)

    results, taken = await store.commit_batch([m2, resend], [("bob", [m1.server_id]), ("carol", [m1.server_id])])

    assert [(r.server_id, r.duplicate) for r in results] == [(m2.server_id, False), (m1.server_id, True)]
    assert taken == [[Route(m1.server_id, "alice", "bob", None)], []]
    assert [p.item_id for p in await all_pending(store, "bob")] == [m2.server_id]
    assert await store.commit_batch([], []) == ([], [])


async def _hot_path(store: Store) -> None:
    """Accept messages (one a resend of nothing yet: all new), take their receipts, look at a read."""
    batch = [new_message("alice", to="bob"), new_message("carol", group="g1", recipients=["bob", "alice"])]
    await store.accept_messages(batch)
    await store.held_routes([("bob", [batch[0].server_id])])
    await store.take_pending([("bob", [m.server_id for m in batch]), ("alice", [batch[1].server_id])])
    await store.add_notices([("alice", "n1", b'{"type":"receipt"}')])


async def test_sqlite_hot_path_only_inserts_into_history(tmp_path: Path) -> None:
    """Accepting and taking receipts never reads, updates or deletes ``messages``: its only
    statement there is the insert of the batch's new messages (one for all), whatever history holds."""
    s = SQLiteStore(tmp_path / "db")
    await s.start()
    try:
        statements = await _traced(s, _hot_path(s))
        on_messages = [st.split("(")[0].strip() for st in statements if "messages" in st]
        assert on_messages == ["INSERT INTO messages"]
    finally:
        await s.stop()


async def _traced(s: SQLiteStore, work: Awaitable[object]) -> list[str]:
    """The SQL statements ``work`` ran on ``s``'s connection."""
    statements: list[str] = []
    await s._run(lambda conn: conn.set_trace_callback(statements.append))
    try:
        await work
    finally:
        await s._run(lambda conn: conn.set_trace_callback(None))
    return statements


async def _hot_path_with_a_resend(s: SQLiteStore) -> None:
    await _hot_path(s)
    resend = new_message("alice", to="bob")
    await s.accept_messages([resend])
    await s.accept_messages([new_message("alice", to="bob", client_id=resend.client_id)])  # the claims read


async def test_sqlite_hot_path_statements_search_by_index(tmp_path: Path) -> None:
    """Every statement of accepting a batch and taking its receipts (each over the whole batch, through
    ``json_each``) finds its rows by an index: none scans ``messages``, ``pending`` or the heads."""
    s = SQLiteStore(tmp_path / "db")
    await s.start()
    try:
        batched = [st for st in await _traced(s, _hot_path_with_a_resend(s)) if "json_each" in st]
        assert any(st.startswith("DELETE FROM pending") for st in batched)
        assert any("FROM messages WHERE (sender, client_id) IN" in st for st in batched)
        plans = await s._run(lambda conn: [(st, [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + st)])
                                           for st in batched])
        for st, plan in plans:
            assert not [p for p in plan if p.startswith("SCAN") and "json_each" not in p], (st[:80], plan)
    finally:
        await s.stop()


async def test_sqlite_remembers_users_it_found_until_one_is_deleted(tmp_path: Path) -> None:
    """``existing_user_ids`` answers ids it found before from memory; a deletion forgets the id, and a
    lookup begun before the deletion (its read ran first on the store's one thread) is not remembered."""
    s = SQLiteStore(tmp_path / "db")
    await s.start()
    try:
        for uid in ("u1", "u2"):
            await s.create_user(uid, uid, "h", None)
        assert await s.existing_user_ids(["u2", "u3"]) == {"u2"}
        looked = asyncio.ensure_future(s.existing_user_ids(["u2", "u2"]))
        assert await _traced(s, looked) == []  # answered from memory
        assert looked.result() == {"u2"}
        await s.create_user("u3", "u3", "h", None)
        assert await s.existing_user_ids(["u3", "u2"]) == {"u2", "u3"}  # not found before: read again

        looking = asyncio.ensure_future(s.existing_user_ids(["u1"]))
        await asyncio.sleep(0)  # its read is handed to the store's thread
        await s.delete_user("u1")
        assert await looking == {"u1"}  # it still existed when read
        assert await s.existing_user_ids(["u1", "u2"]) == {"u2"}
        await s.delete_user("u2")
        assert await s.existing_user_ids(["u2", "u3"]) == {"u3"}
    finally:
        await s.stop()


async def test_sqlite_commit_batch_is_one_transaction(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "db")
    await s.start()
    try:
        m1 = new_message("alice", to="bob")
        await s.accept_messages([m1])
        statements: list[str] = []
        await s._run(lambda conn: conn.set_trace_callback(statements.append))
        await s.commit_batch([new_message("bob", to="alice"), new_message("carol", to="bob")],
                             [("bob", [m1.server_id])])
        await s._run(lambda conn: conn.set_trace_callback(None))
        assert [st for st in statements if st.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
    finally:
        await s.stop()


# MongoDB specifics ----------------------------------------------------------------
@pytest.fixture
def mongo_handles(tmp_path: Path) -> Iterator[Callable[[], MongoStore]]:
    """A function making new (unstarted) ``MongoStore`` handles on one fresh database."""
    if not MONGO_URL:
        pytest.skip(_MONGO_SKIP)
    from chatmq.services.store.mongo import MongoStore

    url = MONGO_URL
    yield lambda: MongoStore(url, database=_mongo_database(tmp_path), timeout_ms=5000)
    _drop_mongo_database(tmp_path)


async def test_mongo_unreachable_server_is_a_clear_store_error() -> None:
    pytest.importorskip("pymongo")
    from chatmq.services.store.mongo import MongoStore

    s = MongoStore("mongodb://chatmq:secret@127.0.0.1:1/?directConnection=true", timeout_ms=200)
    with pytest.raises(StoreError) as info:
        await s.start()
    message = str(info.value)
    # pymongo 4.20 leaks the socket of a monitor connect that close() cancels (PYTHON-5867); the
    # error's traceback keeps it alive. Drop that and collect the socket here, quietly, rather
    # than let its ResourceWarning fail a later test.
    del info
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert "127.0.0.1:1" in message
    assert "secret" not in message
    with pytest.raises(StoreError):
        await s.count_users()
    await s.stop()


@pytest.mark.cluster
@pytest.mark.parametrize("crash_after_insert", [False, True], ids=["before-pending", "before-commit"])
async def test_mongo_retry_repairs_an_interrupted_accept(
    mongo_handles: Callable[[], MongoStore], monkeypatch: pytest.MonkeyPatch, crash_after_insert: bool
) -> None:
    """A failure between the message record and its commit: the retry (a new server id, as the
    router makes) finishes the first record and reports it as a duplicate; nothing is doubled."""
    from pymongo.errors import AutoReconnect

    s = mongo_handles()
    await s.start()
    try:
        real = s._insert_pending

        async def failing(docs: list[dict[str, Any]]) -> None:
            if crash_after_insert:
                await real(docs)
            raise AutoReconnect("connection lost")

        monkeypatch.setattr(s, "_insert_pending", failing)
        first = new_message("alice", group="g1", recipients=["bob", "carol"], client_id="c1")
        with pytest.raises(StoreError):
            await s.accept_messages([first])
        monkeypatch.undo()
        # not visible yet
        assert await s.history(first.conversation, None, 10) == []
        assert await s.get_messages([first.server_id]) == []

        retry = new_message("alice", group="g1", recipients=["bob", "carol"], client_id="c1")
        other = new_message("alice", to="bob")
        results = await s.accept_messages([retry, other])
        assert [(r.server_id, r.ts, r.duplicate) for r in results] == [
            (first.server_id, first.ts, True),
            (other.server_id, other.ts, False),
        ]
        assert [m.server_id for m in await s.history(first.conversation, None, 10)] == [first.server_id]
        assert [p.item_id for p in await all_pending(s, "bob")] == [first.server_id, other.server_id]
        assert [p.envelope for p in await all_pending(s, "carol")] == [first.envelopes["carol"]]
        assert await s.get_messages([retry.server_id]) == []
        [again] = await s.accept_messages([retry])
        assert (again.server_id, again.duplicate) == (first.server_id, True)
        assert await s.count_pending() == 3
    finally:
        await s.stop()


@pytest.mark.cluster
async def test_mongo_hot_path_only_inserts_into_history(
    mongo_handles: Callable[[], MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepting and taking receipts never reads, updates or deletes ``messages`` (on FerretDB any of
    those scans the whole collection): it only inserts new messages there, and what it deletes it
    deletes by ``_id`` (pending items, records in ``accepting``)."""
    s = mongo_handles()
    await s.start()
    try:
        calls: list[tuple[str, str, Any]] = []
        real = s._coll

        class Spy:
            def __init__(self, name: str) -> None:
                self._name, self._coll = name, real(name)

            def __getattr__(self, attr: str) -> Any:
                method = getattr(self._coll, attr)

                def call(*args: Any, **kwargs: Any) -> Any:
                    calls.append((self._name, attr, args[0] if args else None))
                    return method(*args, **kwargs)

                return call

        monkeypatch.setattr(s, "_coll", Spy)
        await _hot_path(s)
        monkeypatch.undo()
        assert {(name, verb) for name, verb, _ in calls if name == "messages"} == {("messages", "insert_many")}
        deletes = [(name, query) for name, verb, query in calls if verb.startswith("delete")]
        assert {name for name, _ in deletes} == {"pending", "accepting"}
        assert all(set(query) == {"_id"} and isinstance(query["_id"], str) for _, query in deletes)
        updated = {name for name, verb, _ in calls if verb.startswith(("update", "replace", "find_one_and"))}
        assert updated <= {"counters", "conversation_heads"}  # the seq allocator's one-document hint, the heads
        heads = [query for name, _, query in calls if name == "conversation_heads"]
        assert heads
        assert all(set(query) == {"_id"} and isinstance(query["_id"], str) for query in heads)
        assert await s.count_pending() == 0
        assert [p.kind for p in await all_pending(s, "alice")] == ["notice"]
    finally:
        await s.stop()


@pytest.mark.cluster
async def test_mongo_pending_items_of_the_earlier_shape_are_rewritten_on_start(
    mongo_handles: Callable[[], MongoStore], tmp_path: Path
) -> None:
    """Pending items written before their ``_id`` became the (user, item id) key (``_id`` = seq, a unique
    (user_id, item_id) index) are rewritten when the store starts: replayed in order, confirmable."""
    from pymongo import ASCENDING, MongoClient

    assert MONGO_URL is not None
    client: MongoClient[dict[str, Any]] = MongoClient(MONGO_URL, serverSelectionTimeoutMS=5000)
    try:
        old = client[_mongo_database(tmp_path)].pending
        old.create_index([("user_id", ASCENDING), ("item_id", ASCENDING)], unique=True, name="user_item_unique")
        old.insert_many([
            {"_id": 7, "user_id": "bob", "item_id": "s1", "kind": "message",
             "envelope": '{"type":"message","id":"s1","from":"alice","group":null}'},
            {"_id": 9, "user_id": "bob", "item_id": "n1", "kind": "notice", "envelope": '{"type":"receipt"}'},
        ])
    finally:
        client.close()
    s = mongo_handles()
    await s.start()
    try:
        assert [(p.seq, p.item_id, p.kind) for p in await all_pending(s, "bob")] == [(7, "s1", "message"),
                                                                                     (9, "n1", "notice")]
        await s.add_notices([("bob", "n2", b"{}")])
        assert [p.item_id for p in await all_pending(s, "bob")][-1] == "n2"
        assert await s.take_pending([("bob", ["s1"])]) == [[Route("s1", "alice", "bob", None)]]
        await s.remove_notices("bob", [9])
        assert [p.item_id for p in await all_pending(s, "bob")] == ["n2"]
    finally:
        await s.stop()


@pytest.mark.cluster
async def test_mongo_members_without_a_position_keep_their_joined_at_order(
    mongo_handles: Callable[[], MongoStore], tmp_path: Path
) -> None:
    """Group members written before positions go by ``joined_at`` (a tie by user id); adding members
    numbers them all, the newcomers after them."""
    from pymongo import MongoClient

    assert MONGO_URL is not None
    client: MongoClient[dict[str, Any]] = MongoClient(MONGO_URL, serverSelectionTimeoutMS=5000)
    try:
        client[_mongo_database(tmp_path)].groups.insert_one(
            {"_id": "g1", "name": "g", "created_by": "admin", "created_at": 1, "v": 0, "members": [
                {"user_id": "u-c", "role": "member", "joined_at": 3},
                {"user_id": "u-b", "role": "member", "joined_at": 5},
                {"user_id": "admin", "role": "admin", "joined_at": 1},
                {"user_id": "u-a", "role": "member", "joined_at": 5}]})
    finally:
        client.close()
    s = mongo_handles()
    await s.start()
    try:
        await _check_members_of_the_earlier_order(s)
    finally:
        await s.stop()


@pytest.mark.cluster
async def test_mongo_a_resend_that_finishes_the_first_attempt_leaves_it_standing(
    mongo_handles: Callable[[], MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resend (another process) finds the first attempt claimed but unfinished and finishes it; the
    first attempt then finds its history row there, written for it, and is not a server id clash."""
    a, b = mongo_handles(), mongo_handles()
    await a.start()
    await b.start()
    try:
        reached, gate = asyncio.Event(), asyncio.Event()
        real = a._finish

        async def paused(records: list[dict[str, Any]], *, fresh: bool = False) -> None:
            if fresh:
                reached.set()
                await gate.wait()
            await real(records, fresh=fresh)

        monkeypatch.setattr(a, "_finish", paused)
        first = new_message("alice", to="bob", client_id="c1")
        attempt = asyncio.create_task(a.accept_messages([first]))
        await reached.wait()
        [resend] = await b.accept_messages([new_message("alice", to="bob", client_id="c1")])
        gate.set()
        [result] = await attempt

        assert (result.server_id, result.duplicate) == (first.server_id, False)
        assert (resend.server_id, resend.ts, resend.duplicate) == (first.server_id, first.ts, True)
        assert [m.server_id for m in await a.history(first.conversation, None, 10)] == [first.server_id]
        assert [p.item_id for p in await all_pending(b, "bob")] == [first.server_id]
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.cluster
async def test_mongo_seqs_increase_across_handles(mongo_handles: Callable[[], MongoStore]) -> None:
    """Two handles (as two processes) reserve seqs concurrently: all distinct, and a handle whose
    memory is behind still gets seqs above everything reserved before."""
    a, b = mongo_handles(), mongo_handles()
    await a.start()
    await b.start()
    try:
        await a.add_notices([("u", "a0", orjson.dumps({}))])
        for i in range(5):
            await b.add_notices([("u", f"b{i}", orjson.dumps({}))])
        await a.add_notices([("u", "a1", orjson.dumps({}))])  # a's next block is taken: it probes past b's
        items = await all_pending(a, "u")
        assert [p.item_id for p in items] == ["a0", "b0", "b1", "b2", "b3", "b4", "a1"]

        await asyncio.gather(
            *(
                h.add_notices([(f"v{i % 3}", f"{name}{i}-{j}", orjson.dumps({})) for j in range(3)])
                for i in range(20)
                for name, h in (("a", a), ("b", b))
            ),
            *(h.accept_messages([new_message("alice", to=f"v{i % 3}")]) for i in range(10) for h in (a, b)),
        )
        seqs = [p.seq for u in ("v0", "v1", "v2") for p in await all_pending(a, u)]
        assert len(seqs) == 20 * 2 * 3 + 20
        assert len(set(seqs)) == len(seqs)
        assert min(seqs) > items[-1].seq
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.cluster
async def test_mongo_concurrent_resends_store_one_message(mongo_handles: Callable[[], MongoStore]) -> None:
    handles = [mongo_handles() for _ in range(3)]
    for h in handles:
        await h.start()
    try:
        copies = [new_message("alice", to="bob", client_id="same") for _ in range(6)]
        results = await asyncio.gather(*(handles[i % 3].accept_messages([m]) for i, m in enumerate(copies)))
        flat = [r for rs in results for r in rs]
        assert sum(not r.duplicate for r in flat) == 1
        assert len({r.server_id for r in flat}) == 1
        assert [p.item_id for p in await all_pending(handles[0], "bob")] == [flat[0].server_id]
        assert len(await handles[1].history(copies[0].conversation, None, 10)) == 1
    finally:
        for h in handles:
            await h.stop()


@pytest.mark.cluster
async def test_mongo_racing_batches_store_each_message_once(mongo_handles: Callable[[], MongoStore]) -> None:
    """Two handles (as two processes) accept batches with the same (sender, client_id) pairs at
    once, in opposite orders: each pair is stored once, both report that message, and the
    losing copies leave nothing behind (no pending item, no history row)."""
    a, b = mongo_handles(), mongo_handles()
    await a.start()
    await b.start()
    try:
        keys = [(f"s{i % 3}", f"c{i}") for i in range(30)]
        batch_a = [new_message(s, to="bob", client_id=c) for s, c in keys]
        batch_b = [new_message(s, to="bob", client_id=c) for s, c in reversed(keys)]
        results_a, results_b = await asyncio.gather(a.accept_messages(batch_a), b.accept_messages(batch_b))
        results_b.reverse()
        winners: list[str] = []
        for ra, rb in zip(results_a, results_b, strict=True):
            assert ra.server_id == rb.server_id
            assert [ra.duplicate, rb.duplicate].count(False) == 1
            winners.append(ra.server_id)
        losers = {m.server_id for m in [*batch_a, *batch_b]} - set(winners)
        assert len(losers) == 30
        assert sorted(p.item_id for p in await all_pending(a, "bob")) == sorted(winners)
        assert await b.get_messages(sorted(losers)) == []
        assert [m.server_id for m in await b.get_messages(winners)] == winners
        stored = [m for s in ("s0", "s1", "s2") for m in await a.history(ids.conversation_key(s, "bob"), None, 100)]
        assert sorted(m.server_id for m in stored) == sorted(winners)
        # a later resend through either handle is a duplicate of the winner
        [again] = await b.accept_messages([new_message("s0", to="bob", client_id="c0")])
        assert (again.server_id, again.duplicate) == (winners[0], True)
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.cluster
async def test_mongo_concurrent_group_changes_in_one_process(mongo_handles: Callable[[], MongoStore]) -> None:
    s = mongo_handles()
    await s.start()
    try:
        await s.create_group("g1", "g", "admin", [f"m{i}" for i in range(10)])
        await asyncio.gather(
            *(s.add_members("g1", [f"n{i}"]) for i in range(10)),
            *(s.remove_member("g1", f"m{i}") for i in range(10)),
            s.rename_group("g1", "renamed"),
        )
        group = await s.get_group("g1")
        assert group is not None
        assert group.name == "renamed"
        assert sorted(group.member_ids()) == sorted(["admin", *(f"n{i}" for i in range(10))])
    finally:
        await s.stop()


@pytest.mark.cluster
async def test_mongo_keeps_any_json_body(mongo_handles: Callable[[], MongoStore]) -> None:
    """Keys MongoDB documents cannot hold (dots, a leading ``$``) survive: bodies are JSON text."""
    s = mongo_handles()
    await s.start()
    try:
        body = {"a.b": 1, "$x": {"$y": [1.5, None]}, "": "empty"}
        m = new_message("alice", to="bob", body=body)
        await s.accept_messages([m])
        await s.add_notices([("bob", "n1", orjson.dumps({"$set": {"k.k": True}}))])
        [stored] = await s.get_messages([m.server_id])
        assert stored.body == body
        assert [p.envelope for p in await all_pending(s, "bob")] == [m.envelopes["bob"],
                                                                       orjson.dumps({"$set": {"k.k": True}})]
    finally:
        await s.stop()


async def test_presence_newest_epoch_wins(store: Store) -> None:
    assert await store.set_online("u1", "n1", 10)
    assert await store.set_online("u1", "n2", 20)  # another device on another node: both are kept
    assert not await store.set_online("u1", "n2", 15)  # a late online on that node does not go back
    assert await store.nodes_of(["u1", "u2"]) == {"u1": "n2"}  # the newest entry's
    assert await store.user_nodes(["u1", "u2"]) == {"u1": ["n2", "n1"]}
    assert await store.count_online() == 1


async def test_presence_late_offline_cannot_erase_newer_connection(store: Store) -> None:
    await store.set_online("u1", "n1", 10)
    await store.set_online("u1", "n2", 20)
    assert await store.set_offline("u1", "n1", 10)  # the device on n1 went; the one on n2 stays
    assert await store.nodes_of(["u1"]) == {"u1": "n2"}
    assert await store.user_nodes(["u1"]) == {"u1": ["n2"]}
    assert not await store.set_offline("u1", "n2", 19)  # older than the entry
    assert await store.set_offline("u1", "n2", 20)
    assert await store.nodes_of(["u1"]) == {}
    assert not await store.set_offline("u1", "n2", 20)  # twice is harmless
    assert await store.count_online() == 0


async def test_presence_survives_restart_and_forget_node(make_store: Callable[[], Store]) -> None:
    async with make_store() as store:
        await store.set_online("a", "n1", 10)
        await store.set_online("b", "n1", 30)
        await store.set_online("c", "n2", 10)
    async with make_store() as store:
        assert await store.nodes_of(["a", "b", "c"]) == {"a": "n1", "b": "n1", "c": "n2"}
        assert await store.forget_node("n1", 20) == 1  # n1 restarted at 20: "b" connected after that
        assert await store.nodes_of(["a", "b", "c"]) == {"b": "n1", "c": "n2"}


async def test_presence_lookup_many(store: Store) -> None:
    users = [f"user{i}" for i in range(1200)]
    for i, u in enumerate(users[::2]):
        await store.set_online(u, f"n{i % 2}", i + 1)
    found = await store.nodes_of(users)
    assert set(found) == set(users[::2])


async def test_pending_copies_are_what_recipients_still_hold(store: Store) -> None:
    m1 = new_message("a", to="b")
    m2 = new_message("a", group="g1", recipients=["b", "c"])
    await store.accept_messages([m1, m2])
    assert await store.pending_copies([m2.server_id, m1.server_id, "unknown"]) == [
        ("b", m1.envelopes["b"]), ("b", m2.envelopes["b"]), ("c", m2.envelopes["c"])]
    await store.remove_pending("b", [m1.server_id, m2.server_id])
    assert await store.pending_copies([m1.server_id, m2.server_id]) == [("c", m2.envelopes["c"])]


# devices of a user (issue 15) ----------------------------------------------------
async def test_each_device_of_a_user_confirms_for_itself(store: Store) -> None:
    assert (await store.touch_session("b", "phone", 1))[0]
    new, devices = await store.touch_session("b", "laptop", 2)
    assert new
    assert [d.client_id for d in devices] == ["phone", "laptop"]
    assert not (await store.touch_session("b", "phone", 3))[0]  # known: last_seen moves on
    assert [(d.client_id, d.first_seen, d.last_seen) for d in (await store.sessions_of(["b", "x"]))["b"]] == [
        ("phone", 1, 3), ("laptop", 2, 2)]
    m = new_message("a", to="b")
    await store.accept_messages([m])
    _, [routes] = await store.commit_batch([], [], [DeviceConfirm("b", "phone", [m.server_id, "nope"], ("laptop",))])
    assert [(r.server_id, r.sender, r.to) for r in routes] == [(m.server_id, "a", "b")]
    assert await store.count_pending("b") == 1  # the laptop has not had it
    assert await store.device_has("b", "phone", [m.server_id]) == {m.server_id}
    assert await store.device_has("b", "laptop", [m.server_id]) == set()
    [routes] = await store.confirm_on_device([DeviceConfirm("b", "laptop", [m.server_id], ("phone",))])
    assert [r.server_id for r in routes] == [m.server_id]
    assert await store.count_pending("b") == 0
    assert await store.device_has("b", "phone", [m.server_id]) == set()  # the marks went with the item


async def test_signing_a_device_out_settles_what_the_others_had(store: Store) -> None:
    for client in ("phone", "laptop", "tablet"):
        await store.touch_session("b", client, 1)
    m1, m2 = new_message("a", to="b"), new_message("a", to="b")
    await store.accept_messages([m1, m2])
    await store.confirm_on_device([DeviceConfirm("b", "phone", [m1.server_id, m2.server_id], ("laptop", "tablet")),
                                   DeviceConfirm("b", "tablet", [m1.server_id], ("phone", "laptop"))])
    assert await store.remove_session("b", "laptop")
    assert not await store.remove_session("b", "laptop")
    assert [d.client_id for d in (await store.sessions_of(["b"]))["b"]] == ["phone", "tablet"]
    assert [i.item_id for i in await store.pending("b", 0, 10)] == [m2.server_id]  # the tablet still owes m2


async def test_a_senders_copy_for_its_other_devices_is_marked_had_by_the_sending_one(store: Store) -> None:
    m = new_message("a", to="b", recipients=["b", "a"])
    m = NewMessage(m.server_id, m.client_id, m.sender, m.to, m.group, m.conversation, m.body, m.ts, m.envelopes,
                   device="phone")
    await store.accept_messages([m])
    assert await store.device_has("a", "phone", [m.server_id]) == {m.server_id}
    [route] = (await store.held_routes([("a", [m.server_id])]))[0]
    assert (route.sender, route.to) == ("a", "b")  # the sender's copy is of its conversation with b


async def test_recent_messages_are_the_users_own_in_a_window(store: Store) -> None:
    old = new_message("a", to="b")
    await store.accept_messages([old])
    after = old.server_id
    m1 = new_message("a", to="b")
    m2 = new_message("c", group="g1", recipients=["b"])
    m3 = new_message("b", to="d")
    other = new_message("c", to="d")
    await store.accept_messages([m1, m2, m3, other])
    got = await store.recent_messages("b", ["g1"], after, 10)
    assert [m.server_id for m in got] == [m1.server_id, m2.server_id, m3.server_id]
    assert [m.server_id for m in await store.recent_messages("b", [], after, 10)] == [m1.server_id, m3.server_id]
    assert [m.server_id for m in await store.recent_messages("b", ["g1"], after, 2)] == [m2.server_id, m3.server_id]


# operators: token revocation, listings, group deletion, counts ------------------
async def test_revoke_tokens_raises_the_version_and_survives_restart(make_store: Callable[[], Store]) -> None:
    async with make_store() as store:
        created = await store.create_user("u1", "alice", "h", None)
        assert created.token_version == 0
        assert await store.revoke_tokens("u1") == 1
        assert await store.revoke_tokens("u1") == 2
        with pytest.raises(NotFoundError):
            await store.revoke_tokens("nobody")
        await store.set_user_flags("u1", disabled=True)  # other changes keep the version
    async with make_store() as store:
        user = await store.get_user("u1")
        assert user is not None
        assert (user.token_version, user.disabled) == (2, True)
        by_name = await store.get_user_by_username("alice")
        assert by_name is not None
        assert by_name.token_version == 2


async def test_list_users_by_prefix_and_page(store: Store) -> None:
    for i, name in enumerate(["bob", "alice", "alina", "al", "carol", "ali.b"]):
        await store.create_user(f"u{i}", name, "h", None, is_admin=name == "carol")
    assert [u.username for u in await store.list_users()] == ["al", "ali.b", "alice", "alina", "bob", "carol"]
    assert [u.username for u in await store.list_users("ali")] == ["ali.b", "alice", "alina"]
    assert [u.username for u in await store.list_users("ali", limit=2)] == ["ali.b", "alice"]
    assert [u.username for u in await store.list_users("ali", after="alice")] == ["alina"]
    assert [u.username for u in await store.list_users(after="alina", limit=10)] == ["bob", "carol"]
    assert [u.is_admin for u in await store.list_users("carol")] == [True]
    assert await store.list_users("zz") == []
    assert await store.list_users("a.*") == []  # a prefix, not a pattern


async def test_list_and_delete_groups(store: Store) -> None:
    made = sorted([await store.create_group(ids.group_id(), "x", "a", ["b"]) for _ in range(3)],
                  key=lambda g: g.group_id)
    made = [await store.rename_group(g.group_id, f"g{i}") for i, g in enumerate(made)]
    listed = await store.list_groups()
    assert [g.group_id for g in listed] == [g.group_id for g in made]
    assert listed[0].member_ids() == ["a", "b"]
    assert [g.name for g in await store.list_groups(limit=2)] == ["g0", "g1"]
    assert [g.name for g in await store.list_groups(after=made[0].group_id)] == ["g1", "g2"]
    deleted = await store.delete_group(made[1].group_id)
    assert (deleted.name, deleted.member_ids()) == ("g1", ["a", "b"])
    assert await store.get_group(made[1].group_id) is None
    assert sorted(g.name for g in await store.groups_of("b")) == ["g0", "g2"]
    assert [g.name for g in await store.list_groups()] == ["g0", "g2"]
    with pytest.raises(NotFoundError):
        await store.delete_group(made[1].group_id)
    with pytest.raises(NotFoundError):
        await store.add_members(made[1].group_id, ["c"])


async def test_count_messages_and_devices(store: Store) -> None:
    assert (await store.count_messages(), await store.count_devices()) == (0, 0)
    await store.accept_messages([new_message("a", to="b"), new_message("a", group="g", recipients=["b", "c"])])
    await store.create_device("d1", "a", "one", "h")
    await store.create_device("d2", "a", "two", "h")
    await store.revoke_device("a", "d1")
    assert (await store.count_messages(), await store.count_devices()) == (2, 1)


async def test_sqlite_version_1_database_gets_token_versions(tmp_path: Path) -> None:
    path = tmp_path / "chatmq.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT,"
                     " password_hash TEXT NOT NULL, created_at INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,"
                     " is_admin INTEGER NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO users VALUES ('u1', 'alice', NULL, 'h', 1, 0, 1)")
        conn.execute("PRAGMA user_version=1")
        conn.commit()
    store = SQLiteStore(path)
    async with store:
        user = await store.get_user("u1")
        assert user is not None
        assert (user.is_admin, user.token_version) == (True, 0)
        assert await store.revoke_tokens("u1") == 1
        assert await store._run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION


async def test_sqlite_commands_of_the_earlier_shape_get_their_requester_columns(tmp_path: Path) -> None:
    path = tmp_path / "chatmq.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE commands (command_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, name TEXT NOT NULL,"
                     " params TEXT NOT NULL, persistent INTEGER NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT"
                     " NULL, expires_at INTEGER NOT NULL, result TEXT, error TEXT)")
        conn.execute("INSERT INTO commands VALUES ('c1', 'd1', 'reboot', '{}', 0, 'sent', 1, 2, NULL, NULL)")
        conn.commit()
    async with SQLiteStore(path) as store:
        assert await store.get_command("c1") == DeviceCommand("c1", "d1", "reboot", {}, False, "sent", 1, 2)
        mine = DeviceCommand("c2", "d1", "blink", {}, False, "sent", 3, 4, requester="u1", client_id="k1")
        await store.add_command(mine)
        assert await store.get_command("c2") == mine


async def test_ping_answers_while_started_and_fails_once_stopped(make_store: Callable[[], Store]) -> None:
    s = make_store()
    await s.start()
    await s.ping()
    await s.stop()
    with pytest.raises(StoreError):
        await s.ping()


# --- device shadows ---------------------------------------------------------------------------------

async def test_shadow_starts_empty_and_merges_with_versions(store: Store) -> None:
    empty = await store.get_shadow("d1")
    assert (empty.desired, empty.reported, empty.version) == ({}, {}, 0)
    first = await store.change_shadow("d1", desired={"led": "on", "cfg": {"rate": 5, "mode": "a"}})
    assert first.version == 1
    assert first.delta() == {"led": "on", "cfg": {"rate": 5, "mode": "a"}}
    second = await store.change_shadow("d1", reported={"led": "on", "cfg": {"rate": 1, "mode": "a"}, "fw": 3})
    assert second.version == 2
    assert second.delta() == {"cfg": {"rate": 5}}
    third = await store.change_shadow("d1", desired={"cfg": {"rate": None}}, version=2)
    assert third.version == 3
    assert third.desired == {"led": "on", "cfg": {"mode": "a"}}
    assert third.delta() == {}
    again = await store.get_shadow("d1")
    assert (again.desired, again.reported, again.version) == (third.desired, third.reported, 3)
    assert (await store.get_shadow("d2")).version == 0  # one document per device


async def test_shadow_stale_version_conflicts_and_changes_nothing(store: Store) -> None:
    await store.change_shadow("d1", desired={"a": 1})
    await store.change_shadow("d1", desired={"a": 2})
    with pytest.raises(ConflictError):
        await store.change_shadow("d1", desired={"a": 3}, version=1)
    with pytest.raises(ConflictError):
        await store.change_shadow("d9", desired={"a": 3}, version=4)
    assert (await store.get_shadow("d1")).desired == {"a": 2}
    # a swap from a stale read loses
    stale = await store.get_shadow("d1")
    assert await store.swap_shadow(stale.changed(desired={"b": 1}))
    assert not await store.swap_shadow(stale.changed(desired={"c": 1}))
    assert (await store.get_shadow("d1")).desired == {"a": 2, "b": 1}


async def test_shadow_writers_in_several_processes_race_and_exactly_one_wins(make_store: Callable[[], Store]) -> None:
    """Handles of their own (as the API copies and device workers of a cluster have) change one shadow
    from the same version at once: one wins, the others get ``ConflictError``, nothing is lost."""
    handles = [make_store() for _ in range(6)]
    for h in handles:
        await h.start()
    try:
        for version in range(4):
            async def write(i: int, h: Store, v: int = version) -> bool:
                try:
                    await h.change_shadow("d1", desired={"round": v, f"w{i}": v}, version=v)
                except ConflictError:
                    return False
                return True

            wins = await asyncio.gather(*(write(i, h) for i, h in enumerate(handles)))
            assert sum(wins) == 1, f"round {version}: {sum(wins)} writers won"
            for h in handles:  # every handle reads the winner
                shadow = await h.get_shadow("d1")
                assert shadow.version == version + 1
                assert shadow.desired["round"] == version
    finally:
        for h in handles:
            await h.stop()


async def test_shadow_many_versions_and_a_writer_that_read_long_ago(store: Store) -> None:
    stale = await store.get_shadow("d1")
    for n in range(40):
        await store.change_shadow("d1", reported={"n": n})
    latest = await store.get_shadow("d1")
    assert (latest.version, latest.reported) == (40, {"n": 39})
    assert not await store.swap_shadow(stale.changed(desired={"late": True}))
    again = await store.get_shadow("d1")
    assert (again.version, again.desired, again.reported) == (40, {}, {"n": 39})


async def test_shadow_bounds(store: Store) -> None:
    deep: dict[str, object] = {"x": 1}
    for _ in range(SHADOW_MAX_DEPTH):
        deep = {"k": deep}
    with pytest.raises(DocumentLimitError) as too_deep:
        await store.change_shadow("d1", desired=deep)
    assert too_deep.value.kind == "too_deep"
    await store.change_shadow("d1", reported={"blob": "x" * (SHADOW_MAX_BYTES - 100)})
    with pytest.raises(DocumentLimitError) as too_large:
        await store.change_shadow("d1", reported={"more": "y" * 200})
    assert too_large.value.kind == "too_large"
    assert (await store.get_shadow("d1")).version == 1


async def test_device_status_round_trip(store: Store) -> None:
    assert await store.get_device_status("d1") == DeviceStatus("d1")
    up = DeviceStatus("d1", True, "n1", 7, 1000, 1000, None)
    await store.put_device_status(up)
    assert await store.get_device_status("d1") == up
    down = DeviceStatus("d1", False, None, 7, 1000, 2000, "disconnected")
    await store.put_device_status(down)
    assert await store.get_device_status("d1") == down
    assert await store.get_device_status("d2") == DeviceStatus("d2")


async def test_commands_add_get_replace_list(store: Store) -> None:
    first = DeviceCommand("c1", "d1", "reboot", {"delay": 1}, False, "sent", 1000, 31000)
    queued = DeviceCommand("c2", "d1", "update", {}, True, "queued", 2000, 90000)
    other = DeviceCommand("c3", "d2", "reboot", {}, True, "queued", 3000, 90000)
    for c in (first, queued, other):
        await store.add_command(c)
    with pytest.raises(ConflictError):
        await store.add_command(first)
    assert await store.get_command("c1") == first
    assert await store.get_command("nope") is None
    done = DeviceCommand("c1", "d1", "reboot", {"delay": 1}, False, "succeeded", 1000, 31000, {"up": True}, None)
    await store.put_command(done)
    assert await store.get_command("c1") == done
    assert [c.command_id for c in await store.device_commands("d1")] == ["c2", "c1"]
    assert await store.device_commands("d1", ["queued", "sent"]) == [queued]
    assert [c.command_id for c in await store.device_commands("d1", limit=1)] == ["c2"]
    assert done.seen_at(40000) == done  # finished: stays
    assert queued.seen_at(90000).status == "expired"


async def test_what_a_device_is_owed(store: Store) -> None:
    assert await store.get_owed("d1") == DeviceOwed("d1")
    owed = DeviceOwed("d1").with_command("c1")
    assert owed is not None
    owed = owed.with_job("j1")
    assert owed is not None
    assert owed.with_job("j1") is owed
    await store.put_owed(owed)
    await store.put_owed(DeviceOwed("d2", (), ("j9",)))
    assert await store.get_owed("d1") == DeviceOwed("d1", ("c1",), ("j1",))
    await store.put_owed(owed.without(commands=["c1"]))
    assert await store.get_owed("d1") == DeviceOwed("d1", (), ("j1",))
    await store.put_owed(owed.without(commands=["c1"], jobs=["j1"]))  # owes nothing: removed
    assert await store.get_owed("d1") == DeviceOwed("d1")
    assert await store.get_owed("d2") == DeviceOwed("d2", (), ("j9",))
    full = DeviceOwed("d3", tuple(f"c{i}" for i in range(MAX_OWED)))
    assert full.with_command("another") is None
    assert full.with_command("c5") is full


async def test_jobs_and_their_executions(store: Store) -> None:
    job = Job("j1", "u1", {"fw": 3}, 1000)
    await store.add_job(job, ["d2", "d1", "d2"])
    assert await store.get_job("j1") == job
    assert await store.get_job("nope") is None
    assert [(e.device_id, e.status) for e in await store.job_executions("j1")] == [("d1", "queued"), ("d2", "queued")]
    sent = JobExecution("j1", "d1", "in_progress", 40, {"step": "download"}, 2000)
    await store.put_execution(sent)
    assert await store.get_execution("j1", "d1") == sent
    assert await store.get_execution("j1", "d9") is None
    await store.add_job(Job("j2", "u1", {}, 1500), ["d1"])
    assert [(e.job_id, e.status) for e in await store.job_executions("j2")] == [("j2", "queued")]
    await store.cancel_job("j1")
    canceled = await store.get_job("j1")
    assert canceled is not None
    assert canceled.canceled
    assert sent.seen_in(canceled).status == "canceled"
    with pytest.raises(NotFoundError):
        await store.cancel_job("nope")


# refresh token rotation and account deletion (issue 12) ---------------------------------------
FAR = ids.now_ms() + 3_600_000


async def test_refresh_token_is_spent_once_and_reuse_revokes_its_family(make_store: Callable[[], Store]) -> None:
    async with make_store() as store:
        assert await store.spend_refresh_token("t1", "famA", "u1", FAR)  # login's token, first use
        assert await store.spend_refresh_token("t2", "famA", "u1", FAR)  # its successor
        assert await store.spend_refresh_token("x1", "famB", "u1", FAR)  # another login of the user
        # t1 again (a stolen copy): refused, and every token of famA with it, spent or not
        assert not await store.spend_refresh_token("t1", "famA", "u1", FAR)
        assert not await store.spend_refresh_token("t3", "famA", "u1", FAR)
        assert await store.spend_refresh_token("x2", "famB", "u1", FAR)  # the other login goes on
    async with make_store() as store:  # it is kept across restarts
        assert not await store.spend_refresh_token("t4", "famA", "u1", FAR)
        assert not await store.spend_refresh_token("x2", "famB", "u1", FAR)
        assert not await store.spend_refresh_token("x3", "famB", "u1", FAR)


async def test_reuse_revokes_the_family_the_token_was_first_spent_in(store: Store) -> None:
    """A token from before families (the API gives it a fresh family each time it is shown)."""
    assert await store.spend_refresh_token("old", "first", "u1", FAR)
    assert await store.spend_refresh_token("next", "first", "u1", FAR)
    assert not await store.spend_refresh_token("old", "second", "u1", FAR)
    assert not await store.spend_refresh_token("after-next", "first", "u1", FAR)


async def test_refresh_token_reused_within_the_grace_is_honoured(store: Store) -> None:
    """The same client again at once (browser tabs racing): within ``grace_ms`` of the first spend
    the token passes again; later it revokes the family as any reuse."""
    assert await store.spend_refresh_token("t1", "fam", "u1", FAR, grace_ms=60_000)
    assert await store.spend_refresh_token("t1", "fam", "u1", FAR, grace_ms=60_000)
    assert not await store.spend_refresh_token("t1", "fam", "u1", FAR, grace_ms=0)  # past the grace
    assert not await store.spend_refresh_token("t1", "fam", "u1", FAR, grace_ms=60_000)  # family revoked now
    assert not await store.spend_refresh_token("t2", "fam", "u1", FAR, grace_ms=60_000)


async def test_concurrent_spends_of_one_refresh_token_let_one_through(store: Store) -> None:
    results = await asyncio.gather(*(store.spend_refresh_token("t", "fam", "u1", FAR) for _ in range(8)))
    assert results.count(True) <= 1
    assert not await store.spend_refresh_token("t-next", "fam", "u1", FAR)  # the race revoked it


async def test_expired_refresh_records_are_forgotten(store: Store) -> None:
    if isinstance(store, SQLiteStore):  # MongoDB prunes once in many calls: forgetting is allowed, not due
        assert await store.spend_refresh_token("t", "fam", "u1", ids.now_ms() - 1)
        assert await store.spend_refresh_token("u", "fam2", "u1", FAR)  # prunes t
        count = await store._run(lambda conn: conn.execute("SELECT COUNT(*) FROM refresh_spent").fetchone()[0])
        assert count == 1


async def test_delete_user_removes_the_account_and_frees_the_username(store: Store) -> None:
    await store.create_user("u1", "alice", "h", "Alice")
    await store.create_user("u2", "bob", "h", None)
    await store.create_device("d1", "u1", "sensor", "s")
    await store.create_device("d2", "u2", "bob's", "s")
    await store.add_push_token("u1", "android", "tok-a")
    await store.add_push_token("u2", "ios", "tok-b")
    await store.accept_messages([new_message("u2", to="u1"), new_message("u1", to="u2")])
    await store.add_notices([("u1", "n1", b'{"type": "event"}')])

    await store.delete_user("u1")

    assert await store.get_user("u1") is None
    assert await store.get_user_by_username("alice") is None
    assert await store.get_device("d1") is None
    assert await store.list_devices("u1") == []
    assert await store.push_tokens("u1") == []
    assert await all_pending(store, "u1") == []
    # bob keeps everything, the message from alice included
    assert [d.device_id for d in await store.list_devices("u2")] == ["d2"]
    assert [t.token for t in await store.push_tokens("u2")] == ["tok-b"]
    assert len(await all_pending(store, "u2")) == 1
    with pytest.raises(NotFoundError):
        await store.delete_user("u1")
    again = await store.create_user("u3", "alice", "h2", None)  # the name is free again
    assert again.username == "alice"
