"""Notices from the API (group events) onto users' inboxes, and the API's notifier that sends them."""

from __future__ import annotations

from typing import Any

import msgspec

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import encode_event
from chatmq.core.records import NOTICES as NOTICE_RECORDS
from chatmq.core.records import Notice
from chatmq.core.topics import NOTICES
from chatmq.core.worker import BusWorker
from chatmq.services.chat.outlet import Outlet


class BusNotifier:
    """The API's ``Notifier``: puts an envelope (encoded here, once) for some users on ``chat.notices``."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def notify(self, user_ids: list[str], envelope: dict[str, Any]) -> None:
        if user_ids:
            notice = Notice(user_ids, msgspec.Raw(encode_event(envelope)))
            await self._bus.publish(NOTICES, user_ids[0].encode(), notice)


class NoticeWorker(BusWorker):
    """Delivers ``chat.notices`` to online users and keeps them pending for offline ones."""

    def __init__(self, bus: Bus, outlet: Outlet) -> None:
        super().__init__(bus, "notices", [NOTICES])
        self._outlet = outlet

    async def process(self, records: list[Record]) -> None:
        for notice in NOTICE_RECORDS.read_all(records):
            await self._outlet.notify(notice.users, bytes(notice.env))
