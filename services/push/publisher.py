"""``PushPublisher``: the routers' side of push. Puts a ``PushRecord`` on ``chat.push`` for each offline
recipient, after the messages were committed, acked and delivered to those online.

One bus write per call (keyed by user). It never raises: a failed write is logged and counted in
``chatmq_push_unpublished_total``, and the messages it was for are still in their recipients'
inboxes (a push is a hint; delivery never waits on it). Group events are pushed only when
``group_events`` is on; receipts never are.
"""

from __future__ import annotations

import logging

from chatmq.core.bus.base import Bus, Value
from chatmq.core.metrics import PUSH_UNPUBLISHED
from chatmq.core.settings import Settings
from chatmq.core.topics import PUSH
from chatmq.services.push.records import PushRecord, for_event, for_message

log = logging.getLogger(__name__)


class PushPublisher:
    def __init__(self, bus: Bus, *, preview_length: int | None = None, group_events: bool = False) -> None:
        """``preview_length``: characters of message text in a push (None: no text at all)."""
        self._bus = bus
        self._preview_length = preview_length
        self._group_events = group_events

    @classmethod
    def from_settings(cls, bus: Bus, settings: Settings) -> PushPublisher | None:
        """The publisher the settings ask for; None when ``push_provider`` is ``none``."""
        if settings.push_provider == "none":
            return None
        return cls(bus, preview_length=settings.push_preview_length if settings.push_preview else None,
                   group_events=settings.push_group_events)

    async def messages(self, items: list[tuple[str, bytes]]) -> None:
        """Pushes for inbox ``message`` envelopes ``(offline user, envelope bytes)``."""
        await self._publish([for_message(user, env, self._preview_length) for user, env in items])

    async def events(self, items: list[tuple[str, bytes]]) -> None:
        """Pushes for the group events among ``(offline user, envelope bytes)`` (only with ``group_events``)."""
        if self._group_events:
            await self._publish([r for user, env in items if (r := for_event(user, env)) is not None])

    async def _publish(self, records: list[PushRecord]) -> None:
        if not records:
            return
        try:
            items: list[tuple[bytes, Value]] = [(r.user.encode(), r) for r in records]
            await self._bus.publish_many(PUSH, items)
        except Exception as exc:  # a push must never fail the delivery that asked for it
            PUSH_UNPUBLISHED.inc(len(records))
            log.warning("could not publish %d push notifications (the messages are delivered anyway): %s",
                        len(records), exc)
