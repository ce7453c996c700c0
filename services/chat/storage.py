"""The storage service: follows presence and replays pending inbox items.

On every ``online`` record it first updates the session registry (so that messages
committed from now on are delivered live), then sends the user's pending items in
order, in pages, to the user's node, and ends with a ``done`` record carrying the
epoch; the node holds live deliveries back until then (see ``NodeGateway``).
Messages stay pending until the user's ``delivered`` receipt; notices are removed
once replayed. A pending item's envelope goes out as the bytes stored at accept time.
"""

from __future__ import annotations

import msgspec

from chatmq.core.bus.base import Bus, Record
from chatmq.core.records import PRESENCE_RECORDS, Delivery, Online
from chatmq.core.topics import PRESENCE, deliver_topic
from chatmq.core.worker import BusWorker
from chatmq.services.registry.sessions import Registry
from chatmq.services.store import Store


class ReplayService(BusWorker):

    def __init__(self, bus: Bus, store: Store, registry: Registry, page: int) -> None:
        super().__init__(bus, "storage", [PRESENCE])
        self._store = store
        self._registry = registry
        self._page = page

    async def process(self, records: list[Record]) -> None:
        for event in PRESENCE_RECORDS.read_all(records):
            await self._registry.update(event)
            if isinstance(event, Online):
                await self.replay(event.user, event.node, event.epoch)

    async def replay(self, user: str, node: str, epoch: int) -> None:
        topic, key = deliver_topic(node), user.encode()
        after = 0
        while True:
            items = await self._store.pending(user, after, self._page)
            if not items:
                break
            page = Delivery.page(user, [msgspec.Raw(i.envelope) for i in items], epoch)
            await self._bus.publish(topic, key, page)
            notices = [i.seq for i in items if i.kind == "notice"]
            if notices:
                await self._store.remove_notices(user, notices)
            after = items[-1].seq
            if len(items) < self._page:
                break
        await self._bus.publish(topic, key, Delivery.done(user, epoch))
