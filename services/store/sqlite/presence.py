"""SQLite store: the session registry: which node each online user is on."""

from __future__ import annotations

import sqlite3

from chatmq.services.store.common import chunks
from chatmq.services.store.sqlite.base import (
    CHUNK,
    SQLiteBase,
    marks,
    unique,
)


class SQLitePresence(SQLiteBase):
    """The session registry: which node each online user is on."""

    async def set_online(self, user_id: str, node: str, epoch: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "INSERT INTO presence (user_id, node, epoch) VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE"
                " SET node = excluded.node, epoch = excluded.epoch WHERE excluded.epoch >= presence.epoch"
                " RETURNING user_id",
                (user_id, node, epoch),
            ).fetchone()
            return row is not None

        return await self._write(op)

    async def set_offline(self, user_id: str, node: str, epoch: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM presence WHERE user_id = ? AND node = ? AND epoch <= ?",
                               (user_id, node, epoch))
            return cur.rowcount == 1

        return await self._write(op)

    async def nodes_of(self, user_ids: list[str]) -> dict[str, str]:
        ids = unique(user_ids)

        def op(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in chunks(ids, CHUNK):
                found.update((r[0], r[1]) for r in conn.execute(
                    f"SELECT user_id, node FROM presence WHERE user_id IN ({marks(len(chunk))})", chunk))
            return found

        return await self._run(op)

    async def forget_node(self, node: str, before_epoch: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM presence WHERE node = ? AND epoch < ?", (node, before_epoch)).rowcount

        return await self._write(op)

    async def count_online(self) -> int:
        return await self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM presence").fetchone()[0]))
