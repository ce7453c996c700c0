"""Device expiry (``DeviceExpiry``, ``Store.stale_sessions``) on every store of ``tests.unit.test_store``
(SQLite; MongoDB when ``CHATMQ_MONGO_URL`` is set): a device not seen for ``device_expiry_days`` is forgotten
as a sign-out is, so the user's pending messages stop waiting for it."""

from __future__ import annotations

import asyncio

from chatmq.services.chat.devices import DeviceBook
from chatmq.services.chat.housekeeping import DeviceExpiry, Housekeeping
from chatmq.services.store.base import DeviceConfirm, Store
from tests.unit.test_store import make_store, new_message, store

__all__ = ["make_store", "store"]  # the fixtures, run here

DAY_MS = 86_400_000
NOW = 1_800_000_000.0  # s


async def test_stale_sessions_are_those_last_seen_before_oldest_first(store: Store) -> None:
    await store.touch_session("u1", "old", 10)
    await store.touch_session("u2", "older", 5)
    await store.touch_session("u1", "fresh", 100)
    await store.touch_session("u2", "older", 50)  # seen again
    assert [(s.user_id, s.client_id) for s in await store.stale_sessions(60, 10)] == [("u1", "old"), ("u2", "older")]
    assert [s.client_id for s in await store.stale_sessions(60, 1)] == ["old"]
    assert await store.stale_sessions(10, 10) == []


async def test_a_device_not_seen_for_the_expiry_is_forgotten_with_what_it_owed(store: Store) -> None:
    now_ms = int(NOW * 1000)
    await store.touch_session("b", "tab", now_ms - 31 * DAY_MS)  # a browser tab that never came back
    await store.touch_session("b", "phone", now_ms - 31 * DAY_MS)
    await store.touch_session("b", "phone", now_ms - DAY_MS)
    had, owed = new_message("a", to="b"), new_message("a", to="b")
    await store.accept_messages([had, owed])
    await store.confirm_on_device([DeviceConfirm("b", "phone", [had.server_id], ("tab",))])
    assert await store.count_pending("b") == 2  # the tab has had neither

    book = DeviceBook(store)
    assert set((await book.of([("b", "phone")]))["b"]) == {"tab", "phone"}
    gone = await DeviceExpiry(store, 30, book, batch=1, clock=lambda: NOW).expire()
    assert [(s.user_id, s.client_id) for s in gone] == [("b", "tab")]
    assert [s.client_id for s in (await store.sessions_of(["b"]))["b"]] == ["phone"]
    # what the phone had is gone; what it still owes stays, for the phone only
    assert [i.item_id for i in await store.pending("b", 0, 10)] == [owed.server_id]
    assert (await book.of([("b", "phone")]))["b"] == ("phone",)  # the routers' book was told
    assert await DeviceExpiry(store, 30, clock=lambda: NOW).expire() == []
    # 0: never
    assert await DeviceExpiry(store, 0, clock=lambda: NOW + 1000 * DAY_MS).expire() == []
    assert [s.client_id for s in (await store.sessions_of(["b"]))["b"]] == ["phone"]


async def test_a_users_last_device_expiring_leaves_the_users_pending_messages(store: Store) -> None:
    await store.touch_session("b", "phone", int(NOW * 1000) - 40 * DAY_MS)
    m = new_message("a", to="b")
    await store.accept_messages([m])
    assert [s.client_id for s in await DeviceExpiry(store, 30, clock=lambda: NOW).expire()] == ["phone"]
    assert await store.sessions_of(["b"]) == {}
    # the user's inbox, as before devices existed: its next device gets it
    assert [i.item_id for i in await store.pending("b", 0, 10)] == [m.server_id]


async def test_housekeeping_runs_every_pass_each_interval_past_a_failing_one() -> None:
    runs: list[str] = []
    done = asyncio.Event()

    async def failing() -> None:
        runs.append("failing")
        raise RuntimeError("store down")

    async def counting() -> None:
        runs.append("counting")
        if runs.count("counting") == 2:
            done.set()

    job = Housekeeping([failing, counting], interval=0.01)
    await job.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await job.stop()
    assert runs[:4] == ["failing", "counting", "failing", "counting"]
