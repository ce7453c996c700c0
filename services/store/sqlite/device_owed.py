"""SQLite store: what each device is owed at its next connect, one row per device."""

from __future__ import annotations

import json
import sqlite3

from chatmq.services.store.base import DeviceOwed
from chatmq.services.store.sqlite.base import SQLiteBase


class SQLiteDeviceOwed(SQLiteBase):
    """``device_owed``: ``device_id`` primary key, ``commands`` and ``jobs`` as JSON arrays of ids."""

    async def get_owed(self, device_id: str) -> DeviceOwed:
        def op(conn: sqlite3.Connection) -> DeviceOwed:
            row = conn.execute("SELECT commands, jobs FROM device_owed WHERE device_id = ?", (device_id,)).fetchone()
            if row is None:
                return DeviceOwed(device_id)
            return DeviceOwed(device_id, tuple(json.loads(row[0])), tuple(json.loads(row[1])))

        return await self._run(op)

    async def put_owed(self, owed: DeviceOwed) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if not owed.commands and not owed.jobs:
                conn.execute("DELETE FROM device_owed WHERE device_id = ?", (owed.device_id,))
                return
            conn.execute("INSERT OR REPLACE INTO device_owed (device_id, commands, jobs) VALUES (?, ?, ?)",
                         (owed.device_id, json.dumps(owed.commands), json.dumps(owed.jobs)))

        await self._write(op)
