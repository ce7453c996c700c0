"""SQLite store: each device's connection status, one row per device."""

from __future__ import annotations

import sqlite3

from chatmq.services.store.base import DeviceStatus
from chatmq.services.store.sqlite.base import SQLiteBase


class SQLiteDeviceStatus(SQLiteBase):
    """``device_status``: ``device_id`` primary key."""

    async def get_device_status(self, device_id: str) -> DeviceStatus:
        def op(conn: sqlite3.Connection) -> DeviceStatus:
            row = conn.execute("SELECT online, node, epoch, connected_at, last_seen, disconnect_reason"
                               " FROM device_status WHERE device_id = ?", (device_id,)).fetchone()
            if row is None:
                return DeviceStatus(device_id)
            return DeviceStatus(device_id, bool(row[0]), row[1], int(row[2]), row[3], row[4], row[5])

        return await self._run(op)

    async def put_device_status(self, status: DeviceStatus) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO device_status (device_id, online, node, epoch, connected_at,"
                         " last_seen, disconnect_reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (status.device_id, int(status.online), status.node, status.epoch, status.connected_at,
                          status.last_seen, status.disconnect_reason))

        await self._write(op)
