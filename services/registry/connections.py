"""``ConnectionFollower``: keeps a ``ConnectionTable`` of live connections from ``chat.connections``."""

from __future__ import annotations

import logging

from chatmq.core.bus.base import Bus, Record
from chatmq.core.records import CONNECTION_RECORDS, BadRecord
from chatmq.core.topics import CONNECTIONS
from chatmq.core.worker import BusWorker
from chatmq.services.registry.sessions import ConnectionTable

log = logging.getLogger(__name__)


class ConnectionFollower(BusWorker):
    def __init__(self, bus: Bus, table: ConnectionTable, group: str = "connections") -> None:
        super().__init__(bus, group, [CONNECTIONS])
        self.table = table

    async def process(self, records: list[Record]) -> None:
        for record in records:
            try:
                self.table.apply(CONNECTION_RECORDS.read(record))
            except BadRecord as exc:
                log.warning("ignoring a connections record (%s)", exc)
