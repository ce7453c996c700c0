"""The ``Store``'s announced presence and presence privacy (``PresenceStateStore``), on every store in
``tests.unit.test_store.STORE_FACTORIES`` (MongoDB when ``CHATMQ_MONGO_URL`` is set)."""

from __future__ import annotations

from chatmq.services.store.base import PresenceState, Store
from tests.unit.test_store import make_store, store

__all__ = ["make_store", "store"]  # the fixtures, used by name below


async def test_a_user_never_seen_is_offline_never_seen_shown_to_contacts(store: Store) -> None:
    assert await store.presence_states(["ua", "ub"]) == {"ua": PresenceState(), "ub": PresenceState()}


async def test_state_and_visibility_are_set_apart_and_kept_together(store: Store) -> None:
    await store.set_presence_visibility("ua", "nobody")
    await store.set_presence_state("ua", "online", 1000)
    await store.set_presence_state("ub", "away", 2000)
    await store.set_presence_state("ua", "offline", 3000)
    assert await store.presence_states(["ua", "ub"]) == {"ua": PresenceState("offline", 3000, "nobody"),
                                                         "ub": PresenceState("away", 2000, "contacts")}
    await store.set_presence_visibility("ua", "contacts")
    assert (await store.presence_states(["ua"]))["ua"] == PresenceState("offline", 3000, "contacts")
    await store.set_presence_state("ua", "offline", 1_767_225_600_000)  # ms of 2026: beyond 32 bits
    since = (await store.presence_states(["ua"]))["ua"].since
    assert since == 1_767_225_600_000
    assert type(since) is int  # a plain int (not a BSON Int64), which every encoder takes
    await store.set_presence_state("uc", "online", 4000)
    assert sorted(await store.present_users()) == ["ub", "uc"]
