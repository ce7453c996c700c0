"""The storage service: follows presence and replays pending inbox items.

On every ``online`` record it first updates the session registry (so that messages
committed from now on are delivered live), then sends the user's pending items in
order, in pages, to the user's node, and ends with a ``done`` record carrying the
epoch; the node holds live deliveries back until then (see ``NodeGateway``).
Messages stay pending until the user's ``delivered`` receipt (each device's, for a user with
several); notices are removed once replayed. A pending item's envelope goes out as the bytes stored
at accept time. A presence record naming the device (its MQTT client id) records the device's
connect; a device not seen before, of a user with other devices, first gets the last ``sync_window``
days of its user's conversations from history, and a user's device gets only what it has not confirmed yet.
"""

from __future__ import annotations

import logging

import msgspec
import orjson

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import message_envelope
from chatmq.core.ids import now_ms
from chatmq.core.metrics import DEVICES_FORGOTTEN
from chatmq.core.records import PRESENCE_RECORDS, Delivery, Online, StateSet, VisibilitySet
from chatmq.core.topics import PRESENCE, deliver_topic
from chatmq.core.worker import BusWorker
from chatmq.services.chat.devices import DeviceBook
from chatmq.services.registry.sessions import Registry
from chatmq.services.store import Store
from chatmq.services.store.base import StoredMessage, UserSession

log = logging.getLogger(__name__)

#: The most messages a new device's first sync sends (the newest of the window).
SYNC_MAX = 1000
_DAY_MS = 86_400_000


class ReplayService(BusWorker):

    def __init__(self, bus: Bus, store: Store, registry: Registry, page: int, sync_window: float = 7.0,
                 devices: DeviceBook | None = None, max_devices: int = 32) -> None:
        """``sync_window``: days of its conversations a user's new device gets first (0: none);
        ``devices``: the routers' book of devices when they share this process (told of new ones);
        ``max_devices``: devices kept per user (a new one beyond forgets the least recently seen)."""
        super().__init__(bus, "storage", [PRESENCE])
        self._store = store
        self._registry = registry
        self._page = page
        self._sync_ms = int(sync_window * _DAY_MS)
        self._devices = devices
        self._max_devices = max_devices

    async def process(self, records: list[Record]) -> None:
        for event in PRESENCE_RECORDS.read_all(records):
            if isinstance(event, StateSet | VisibilitySet):  # the presence worker's
                continue
            await self._registry.update(event)
            if isinstance(event, Online):
                await self.replay(event.user, event.node, event.epoch, event.client)

    async def _forget_oldest(self, user: str, client: str, sessions: list[UserSession]) -> None:
        """Sign out ``user``'s least recently seen devices beyond ``max_devices`` (never ``client``, which
        just connected)."""
        older = sorted((s for s in sessions if s.client_id != client), key=lambda s: (s.last_seen, s.client_id))
        for gone in older[:len(sessions) - self._max_devices]:
            await self._store.remove_session(user, gone.client_id)
        DEVICES_FORGOTTEN.inc(max(0, len(sessions) - self._max_devices))
        log.debug("user %s: a device beyond max_devices_per_user (%d): forgot the least recently seen",
                  user, self._max_devices)

    async def replay(self, user: str, node: str, epoch: int, client: str = "") -> None:
        """Send ``user``'s pending items to ``node`` (to device ``client`` there, when named: those it
        has not had yet, after the last ``sync_window`` of its conversations when it is new and the user
        has other devices), then the replay's end."""
        topic, key = deliver_topic(node), user.encode()
        peers, synced = False, set[str]()
        if client:
            new, sessions = await self._store.touch_session(user, client, now_ms())
            if new and len(sessions) > self._max_devices:
                await self._forget_oldest(user, client, sessions)
            peers = len(sessions) > 1
            if new and self._devices is not None:
                self._devices.forget(user)
            if new and peers and self._sync_ms > 0:  # a user's only device is owed just what is pending
                synced = await self._sync(user, client, epoch, topic, key)
        after = 0
        while True:
            items = await self._store.pending(user, after, self._page)
            if not items:
                break
            had = synced
            if peers:  # what this device confirmed already stays pending for the others only
                had = synced | await self._store.device_has(user, client, [i.item_id for i in items
                                                                           if i.kind == "message"])
            envs = [msgspec.Raw(i.envelope) for i in items if i.kind == "notice" or i.item_id not in had]
            if envs:
                await self._bus.publish(topic, key, Delivery.page(user, envs, epoch, client or None))
            notices = [i.seq for i in items if i.kind == "notice"]
            if notices:
                await self._store.remove_notices(user, notices)
            after = items[-1].seq
            if len(items) < self._page:
                break
        await self._bus.publish(topic, key, Delivery.done(user, epoch, client or None))

    async def _sync(self, user: str, client: str, epoch: int, topic: str, key: bytes) -> set[str]:
        """A new device's first sync: the newest ``SYNC_MAX`` messages of the last ``sync_window`` before it
        subscribed that ``user`` sent or got (1:1, or in a group it is in now), oldest first; returns their ids (the
        pending replay that follows skips them)."""
        groups = [g.group_id for g in await self._store.groups_of(user)]
        cutoff = f"{max(0, now_ms() - self._sync_ms):012x}"
        # what came after the device subscribed (``epoch``: ns) it gets live or pending, not here
        until = f"{epoch // 1_000_000 + 1:012x}"
        found = await self._store.recent_messages(user, groups, cutoff, SYNC_MAX, until)
        messages = [m for m in found if not m.deleted]  # a message deleted for everyone is not sent again
        for start in range(0, len(messages), self._page):
            envs = [msgspec.Raw(_envelope(m, user)) for m in messages[start:start + self._page]]
            await self._bus.publish(topic, key, Delivery.page(user, envs, epoch, client))
        return {m.server_id for m in found}


def _envelope(m: StoredMessage, user: str) -> bytes:
    """A stored message's inbox envelope as ``user`` gets it (a group message ``to`` the member, or
    ``null`` for its sender's own)."""
    to = m.to if m.group is None else (None if m.sender == user else user)
    return message_envelope(m.server_id, m.client_id, m.sender, to, m.group, msgspec.Raw(orjson.dumps(m.body)), m.ts,
                            m.reply_to)
