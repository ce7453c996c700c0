"""The ``Store``'s social role (``SocialStore``): blocks, contact lists, phone numbers and the hashes of
other numbers, on every store in ``tests.unit.test_store.STORE_FACTORIES`` (MongoDB when
``CHATMQ_MONGO_URL`` is set)."""

from __future__ import annotations

import pytest

from chatmq.core.errors import ConflictError
from chatmq.services.store.base import Store
from tests.unit.test_store import make_store, store

__all__ = ["make_store", "store"]  # the fixtures, used by name below


async def users(store: Store, *names: str) -> list[str]:
    return [(await store.create_user(f"u_{n}", n, "hash", None)).user_id for n in names]


async def test_blocks_are_kept_per_pair_and_read_both_ways(store: Store) -> None:
    a, b, c = await users(store, "alice", "bob", "carol")
    assert await store.blockers_of([a, b]) == {a: set(), b: set()}
    assert await store.block(a, b) is True
    assert await store.block(a, b) is False  # already
    assert await store.block(c, b) is True
    assert await store.block(a, c) is True
    assert await store.blocked_by(a) == [b, c]
    assert await store.blockers_of([b, c, "nobody"]) == {b: {a, c}, c: {a}, "nobody": set()}
    assert await store.blockers_of([f"x{i}" for i in range(10)] + [b]) == {
        **{f"x{i}": set() for i in range(10)}, b: {a, c}}  # more than a handful: one query
    assert await store.unblock(a, b) is True
    assert await store.unblock(a, b) is False
    assert await store.blockers_of([b]) == {b: {c}}
    assert await store.blocked_by(a) == [c]


async def test_contact_lists_and_mutual_contacts(store: Store) -> None:
    a, b, c, d = await users(store, "alice", "bob", "carol", "dave")
    assert await store.add_contact(a, b) is True
    assert await store.add_contact(a, b) is False
    await store.add_contact(a, c)
    await store.add_contact(a, d)
    await store.add_contact(b, a)
    await store.add_contact(d, a)
    await store.add_contact(c, b)  # c has b, not a: not mutual with a
    assert [x.user_id for x in await store.contacts_of(a)] == [b, c, d]
    assert await store.mutual_contacts(a) == {b, d}
    assert await store.mutual_contacts(c) == set()
    assert await store.remove_contact(d, a) is True
    assert await store.remove_contact(d, a) is False
    assert await store.mutual_contacts(a) == {b}
    assert await store.mutual_contacts(b) == {a}


async def test_a_phone_number_belongs_to_one_user(store: Store) -> None:
    a, b = await users(store, "alice", "bob")
    await store.set_phone(a, "+4915100000001")
    await store.set_phone(a, "+4915100000001")  # again: no change
    with pytest.raises(ConflictError):
        await store.set_phone(b, "+4915100000001")
    assert await store.phone_of(a) == "+4915100000001"
    assert await store.phone_of(b) is None
    await store.set_phone(a, "+4915100000002")  # a new number replaces the old one
    assert await store.user_ids_by_phones(["+4915100000001", "+4915100000002"]) == {"+4915100000002": a}
    await store.set_phone(b, "+4915100000001")
    await store.set_phone(a, None)
    assert await store.phone_of(a) is None
    many = [f"+49151000000{i:02d}" for i in range(20)]
    assert await store.user_ids_by_phones(many) == {"+4915100000001": b}
    await store.delete_user(b)  # the number is free again
    await store.set_phone(a, "+4915100000001")
    assert await store.user_ids_by_phones(["+4915100000001"]) == {"+4915100000001": a}


async def test_phone_hashes_are_kept_once_each_in_order(store: Store) -> None:
    [a] = await users(store, "alice")
    await store.add_phone_hashes(a, ["h1", "h2", "h1"])
    await store.add_phone_hashes(a, ["h2", "h3"])
    await store.add_phone_hashes(a, [])
    assert await store.phone_hashes(a) == ["h1", "h2", "h3"]
    assert await store.phone_hashes("someone else") == []


async def test_deleting_a_user_removes_its_contacts_and_blocks_both_ways(store: Store) -> None:
    a, b, c = await users(store, "alice", "bob", "carol")
    await store.add_contact(a, b)
    await store.add_contact(b, a)
    await store.add_contact(c, b)
    await store.block(b, c)
    await store.block(c, b)
    await store.add_phone_hashes(b, ["h"])
    await store.delete_user(b)
    assert await store.contacts_of(a) == []
    assert await store.contacts_of(c) == []
    assert await store.blocked_by(c) == []
    assert await store.blockers_of([c]) == {c: set()}
    assert await store.phone_hashes(b) == []
