"""``ConnectionFollower``: keeps a ``ConnectionTable`` of live connections from ``chat.connections``."""

from __future__ import annotations

import orjson

from chatmq.bus.base import Bus, Record
from chatmq.services.sessions import ConnectionTable
from chatmq.services.worker import BusWorker
from chatmq.topics import CONNECTIONS


class ConnectionFollower(BusWorker):
    def __init__(self, bus: Bus, table: ConnectionTable, group: str = "connections") -> None:
        super().__init__(bus, group, [CONNECTIONS])
        self.table = table

    async def process(self, records: list[Record]) -> None:
        for record in records:
            self.table.apply(orjson.loads(record.value))
