"""SQLite store: commands for devices, one row per command id."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from chatmq.core.errors import ConflictError
from chatmq.services.store.base import CommandStatus, DeviceCommand
from chatmq.services.store.sqlite.base import SQLiteBase, marks

_COLS = ("command_id, device_id, name, params, persistent, status, created_at, expires_at, result, error, requester,"
         " client_id")


def _row(row: Any) -> DeviceCommand:
    return DeviceCommand(row[0], row[1], row[2], json.loads(row[3]), bool(row[4]), row[5], int(row[6]),
                         int(row[7]), None if row[8] is None else json.loads(row[8]), row[9], row[10], row[11])


def _values(c: DeviceCommand) -> tuple[Any, ...]:
    return (c.command_id, c.device_id, c.name, json.dumps(c.params), int(c.persistent), c.status, c.created_at,
            c.expires_at, None if c.result is None else json.dumps(c.result), c.error, c.requester, c.client_id)


class SQLiteCommands(SQLiteBase):
    """``commands``: ``command_id`` primary key; ``(device_id, created_at)`` indexed."""

    async def add_command(self, command: DeviceCommand) -> None:
        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(f"INSERT INTO commands ({_COLS}) VALUES ({marks(12)})", _values(command))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"command id {command.command_id} is taken") from exc

        await self._write(op)

    async def get_command(self, command_id: str) -> DeviceCommand | None:
        def op(conn: sqlite3.Connection) -> DeviceCommand | None:
            row = conn.execute(f"SELECT {_COLS} FROM commands WHERE command_id = ?", (command_id,)).fetchone()
            return None if row is None else _row(row)

        return await self._run(op)

    async def put_command(self, command: DeviceCommand) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO commands ({_COLS}) VALUES ({marks(12)})", _values(command))

        await self._write(op)

    async def device_commands(self, device_id: str, statuses: Sequence[CommandStatus] | None = None,
                              limit: int = 100) -> list[DeviceCommand]:
        def op(conn: sqlite3.Connection) -> list[DeviceCommand]:
            where, args = "device_id = ?", [device_id]
            if statuses is not None:
                where += f" AND status IN ({marks(len(statuses))})"
                args += list(statuses)
            rows = conn.execute(f"SELECT {_COLS} FROM commands WHERE {where} ORDER BY created_at DESC, rowid DESC"
                                " LIMIT ?", (*args, limit))
            return [_row(r) for r in rows]

        return await self._run(op)
