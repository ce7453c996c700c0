"""``PresenceWorker``: presence changes from ``chat.presence`` go to the user's online mutual contacts; an
``offline`` only once the grace passed and no node has the user (``flush`` is given the time)."""

from __future__ import annotations

from chatmq.core.ids import now_ms
from chatmq.core.records import NodeStarted, Offline, Online, StateSet, VisibilitySet
from chatmq.core.topics import PRESENCE
from chatmq.services.chat.presence_worker import PresenceWorker
from tests.unit.chat_fixtures import NODE, OTHER_NODE, Chat, envs_of, record


async def contacts(chat: Chat, a: str, b: str) -> None:
    await chat.store.add_contact(a, b)
    await chat.store.add_contact(b, a)


def states(chat_envs: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["user"], e["state"]) for e in chat_envs]


async def test_offline_waits_for_the_users_last_node_and_the_grace(chat: Chat) -> None:
    a, b, stranger = await chat.user(), await chat.user(), await chat.user()
    await contacts(chat, a, b)
    await chat.store.add_contact(stranger, a)  # one-sided
    chat.online(b)
    chat.online(stranger)
    worker = PresenceWorker(chat.bus, chat.store, chat.registry, chat.outlet, grace_ms=5000)
    chat.online(a, NODE, 1)
    chat.online(a, OTHER_NODE, 2)
    await worker.process([record(PRESENCE, a, Online(a, NODE, 1)), record(PRESENCE, a, Online(a, OTHER_NODE, 2))])
    assert states(envs_of(await chat.deliveries(), b)) == [(a, "online")]  # once, for two devices

    chat.registry.apply(Offline(a, NODE, 1))
    await worker.process([record(PRESENCE, a, Offline(a, NODE, 1))])
    await worker.flush(now_ms() + 60_000)  # its device on the other node is still there
    chat.registry.apply(Offline(a, OTHER_NODE, 2))
    await worker.process([record(PRESENCE, a, Offline(a, OTHER_NODE, 2))])
    await worker.flush(now_ms() - 1)  # within the grace
    assert await chat.deliveries() == []
    await worker.flush(now_ms() + 5000)
    deliveries = await chat.deliveries()
    [offline] = envs_of(deliveries, b)
    assert (offline["user"], offline["state"]) == (a, "offline")
    assert envs_of(deliveries, stranger) == []
    assert (await chat.store.presence_states([a]))[a].state == "offline"


async def test_away_and_back_are_changes_a_hidden_user_announces_to_no_one(chat: Chat) -> None:
    a, b = await chat.user(), await chat.user()
    await contacts(chat, a, b)
    chat.online(b)
    worker = PresenceWorker(chat.bus, chat.store, chat.registry, chat.outlet)
    await worker.process([record(PRESENCE, a, Online(a, NODE, 1)), record(PRESENCE, a, StateSet(a, "away")),
                          record(PRESENCE, a, StateSet(a, "away")), record(PRESENCE, a, StateSet(a, "online"))])
    assert states(envs_of(await chat.deliveries(), b)) == [(a, "online"), (a, "away"), (a, "online")]
    await chat.store.set_presence_visibility(a, "nobody")
    await worker.process([record(PRESENCE, a, StateSet(a, "away"))])
    assert await chat.deliveries() == []
    assert (await chat.store.presence_states([a]))[a].state == "away"


async def test_a_node_that_starts_takes_the_users_shown_present_offline_unless_online(chat: Chat) -> None:
    a, b, c = await chat.user(), await chat.user(), await chat.user()
    await contacts(chat, a, c)
    await contacts(chat, b, c)
    chat.online(c, OTHER_NODE)
    await chat.store.set_presence_state(a, "online", 1)  # stale: the node it was on restarted
    await chat.store.set_presence_state(b, "away", 1)
    await chat.store.set_presence_state(c, "online", 1)
    worker = PresenceWorker(chat.bus, chat.store, chat.registry, chat.outlet, grace_ms=5000)
    chat.online(b, NODE, 3)
    await worker.process([record(PRESENCE, NODE, NodeStarted(NODE, 2, 0)), record(PRESENCE, b, Online(b, NODE, 3))])
    await worker.flush(now_ms() + 5000)
    assert states(envs_of(await chat.deliveries(), c)) == [(a, "offline")]  # b came back, c is elsewhere
    shown = await chat.store.presence_states([a, b, c])
    assert [shown[u].state for u in (a, b, c)] == ["offline", "away", "online"]


async def test_hiding_shows_contacts_offline_never_seen_and_showing_again_the_state(chat: Chat) -> None:
    a, b, gone = await chat.user(), await chat.user(), await chat.user()
    await contacts(chat, a, b)
    await contacts(chat, gone, b)
    chat.online(b)
    await chat.store.set_presence_state(a, "away", 1000)
    worker = PresenceWorker(chat.bus, chat.store, chat.registry, chat.outlet)
    await chat.store.set_presence_visibility(a, "nobody")
    await chat.store.set_presence_visibility(gone, "nobody")  # offline: nothing to hide
    await worker.process([record(PRESENCE, a, VisibilitySet(a, "nobody")),
                          record(PRESENCE, gone, VisibilitySet(gone, "nobody"))])
    await chat.store.set_presence_visibility(a, "contacts")
    await worker.process([record(PRESENCE, a, VisibilitySet(a, "contacts"))])
    got = [(e["user"], e["state"], e["last_seen"]) for e in envs_of(await chat.deliveries(), b)]
    assert got == [(a, "offline", None), (a, "away", 1000)]
