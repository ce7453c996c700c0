"""``ConnectionFollower``: keeps a ``ConnectionTable`` of live connections from ``chat.connections``."""

from __future__ import annotations

from chatmq.core.bus.base import Bus, Record
from chatmq.core.records import CONNECTION_RECORDS
from chatmq.core.topics import CONNECTIONS
from chatmq.core.worker import BusWorker
from chatmq.services.registry.sessions import ConnectionTable


class ConnectionFollower(BusWorker):
    def __init__(self, bus: Bus, table: ConnectionTable, group: str = "connections") -> None:
        super().__init__(bus, group, [CONNECTIONS])
        self.table = table

    async def process(self, records: list[Record]) -> None:
        for event in CONNECTION_RECORDS.read_all(records):
            self.table.apply(event)
