"""``BusChatFeed``: what the API tells the routers on the bus: changed blocks (``chatmq.services.chat.blocks``)
and ``read`` receipts of conversations marked read over REST; and the presence worker: a changed
``presence_visibility``."""

from __future__ import annotations

from typing import Literal

from chatmq.core.bus.base import Bus
from chatmq.core.envelopes import MAX_RECEIPT_IDS, ReceiptIn
from chatmq.core.ids import conversation_key
from chatmq.core.records import BlocksChanged, Outbox, VisibilitySet
from chatmq.core.topics import GROUP_OUTBOX, OUTBOX, PRESENCE


class BusChatFeed:
    """The API's ``ChatFeed``, on the bus."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def blocks_changed(self, blocker: str, blocked: str, groups: list[str]) -> None:
        """``BlocksChanged`` on the pair's conversation and on each of ``groups`` (the blocker's), so that
        the routers of each meet it in order before what follows."""
        record = Outbox(blocker, "", BlocksChanged(blocked))
        await self._bus.publish(OUTBOX, conversation_key(blocker, blocked).encode(), record)
        if groups:
            await self._bus.publish_many(GROUP_OUTBOX, [(g.encode(), record) for g in groups])

    async def presence_visibility(self, user: str, visibility: Literal["contacts", "nobody"]) -> None:
        """``VisibilitySet`` on ``chat.presence`` keyed by the user, in order with its presence changes."""
        await self._bus.publish(PRESENCE, user.encode(), VisibilitySet(user, visibility))

    async def read(self, user: str, server_ids: list[str]) -> None:
        """A ``read`` receipt from ``user`` for ``server_ids``, as if its client had sent it: the router
        checks and routes it to the messages' senders."""
        chunks = [tuple(server_ids[i:i + MAX_RECEIPT_IDS]) for i in range(0, len(server_ids), MAX_RECEIPT_IDS)]
        await self._bus.publish_many(OUTBOX, [(user.encode(), Outbox(user, "", ReceiptIn("read", c)))
                                              for c in chunks])
