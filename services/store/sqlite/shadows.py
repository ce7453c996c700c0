"""SQLite store: device shadows, one row per device, written by compare-and-swap on its version."""

from __future__ import annotations

import json
import sqlite3

from chatmq.services.store.base import Shadow
from chatmq.services.store.sqlite.base import SQLiteBase


class SQLiteShadows(SQLiteBase):
    """Device shadows (``shadows``: ``device_id`` primary key, ``desired``/``reported`` JSON text)."""

    async def get_shadow(self, device_id: str) -> Shadow:
        def op(conn: sqlite3.Connection) -> Shadow:
            row = conn.execute("SELECT desired, reported, version, updated_at FROM shadows WHERE device_id = ?",
                               (device_id,)).fetchone()
            if row is None:
                return Shadow(device_id)
            return Shadow(device_id, json.loads(row[0]), json.loads(row[1]), int(row[2]), int(row[3]))

        return await self._run(op)

    async def swap_shadow(self, shadow: Shadow) -> bool:
        desired, reported = json.dumps(shadow.desired), json.dumps(shadow.reported)

        def op(conn: sqlite3.Connection) -> bool:
            if shadow.version == 1:
                cur = conn.execute("INSERT INTO shadows (device_id, desired, reported, version, updated_at)"
                                   " VALUES (?, ?, ?, 1, ?) ON CONFLICT (device_id) DO NOTHING",
                                   (shadow.device_id, desired, reported, shadow.updated_at))
            else:
                cur = conn.execute("UPDATE shadows SET desired = ?, reported = ?, version = ?, updated_at = ?"
                                   " WHERE device_id = ? AND version = ?",
                                   (desired, reported, shadow.version, shadow.updated_at, shadow.device_id,
                                    shadow.version - 1))
            return cur.rowcount == 1

        return await self._write(op)
