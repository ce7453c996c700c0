"""``PresenceWorker``: follows ``chat.presence`` (the nodes' ``online``/``offline`` records and the users'
``presence`` envelopes as ``StateSet``) and tells each user's mutual contacts that are online of a change
(``{"type":"presence","user","state","last_seen"}``), after the rules of ``chatmq.services.chat.presence``.
Messages never pass here. The announced state is kept in the store (``GET /presence`` reads it).

A user's ``offline`` waits ``OFFLINE_GRACE_MS`` (a tick checks once a second): then, if the session
registry has no node of the user (a device of it may be on another node), it is announced. A node that
starts (``node_started``) puts every user shown online or away through the same check (the node's users
are gone; the stored states of an embedded server that stopped are stale).
"""

from __future__ import annotations

import asyncio
import logging

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import presence_envelope
from chatmq.core.errors import ChatMQError
from chatmq.core.ids import now_ms
from chatmq.core.records import PRESENCE_RECORDS, NodeStarted, Offline, Online, StateSet, VisibilitySet
from chatmq.core.topics import PRESENCE
from chatmq.core.worker import BusWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.chat.presence import OFFLINE_GRACE_MS, Debounce
from chatmq.services.registry.sessions import Registry
from chatmq.services.store import Store

log = logging.getLogger(__name__)

#: Seconds between two checks for offline users whose grace ran out.
TICK = 1.0


class PresenceWorker(BusWorker):

    def __init__(self, bus: Bus, store: Store, registry: Registry, outlet: Outlet,
                 grace_ms: int = OFFLINE_GRACE_MS) -> None:
        super().__init__(bus, "presence", [PRESENCE])
        self._store = store
        self._registry = registry
        self._outlet = outlet
        self._debounce = Debounce(grace_ms)

    async def start(self) -> None:
        await super().start()
        self._tasks.spawn(self._ticks(), "offline-ticks")

    async def process(self, records: list[Record]) -> None:
        for event in PRESENCE_RECORDS.read_all(records):
            if isinstance(event, Online):
                if not self._debounce.came_back(event.user):
                    await self._change(event.user, "online", only_from={"offline"})
            elif isinstance(event, Offline):
                self._debounce.went_away(event.user, now_ms())
            elif isinstance(event, StateSet):
                await self._change(event.user, event.state, only_from={"online", "away"})
            elif isinstance(event, VisibilitySet):
                await self._shown(event.user)
            elif isinstance(event, NodeStarted):  # whoever was on it is gone, unless online elsewhere or again
                at = now_ms()
                for user in await self._store.present_users():
                    self._debounce.went_away(user, at)

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self.flush(now_ms())
            except ChatMQError as exc:  # the store or bus is away: the next tick tries the rest
                log.warning("presence: offline check failed: %s", exc)

    async def flush(self, now: int) -> None:
        """Announce ``offline`` for the users away for the grace by ``now`` that no node has."""
        due = self._debounce.due(now)
        if not due:
            return
        online = await self._registry.user_nodes([u for u, _ in due])
        for user, at in due:
            if user not in online:
                await self._change(user, "offline", only_from={"online", "away"}, at=at)

    async def _shown(self, user: str) -> None:
        """``user`` changed its visibility (stored already): its contacts now see it ``offline`` with
        ``last_seen`` null (``nobody``), or as it is (``contacts``); nothing when it is offline."""
        stored = (await self._store.presence_states([user]))[user]
        if stored.state == "offline":
            return
        hidden = stored.visibility == "nobody"
        env = presence_envelope(user, "offline" if hidden else stored.state, None if hidden else stored.since)
        await self._tell(user, env)

    async def _tell(self, user: str, env: bytes) -> None:
        """Send ``env`` to ``user``'s mutual contacts that are online."""
        contacts = await self._store.mutual_contacts(user)
        if contacts:
            await self._outlet.deliver([(c, env) for c in sorted(contacts)])

    async def _change(self, user: str, state: str, only_from: set[str], at: int | None = None) -> None:
        """Record and announce ``user``'s ``state`` if its stored state is one of ``only_from``."""
        stored = (await self._store.presence_states([user]))[user]
        if stored.state == state or stored.state not in only_from:
            return
        since = now_ms() if at is None else at
        await self._store.set_presence_state(user, state, since)
        if stored.visibility != "nobody":
            await self._tell(user, presence_envelope(user, state, since))
