"""SQLite store: the session registry: which nodes each online user is on (``presence_nodes``: one row
per user and node)."""

from __future__ import annotations

import sqlite3

from chatmq.services.store.sqlite.base import SQLiteBase, grouped_by_user, unique


class SQLitePresence(SQLiteBase):
    """The session registry: which nodes each online user is on."""

    async def set_online(self, user_id: str, node: str, epoch: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "INSERT INTO presence_nodes (user_id, node, epoch) VALUES (?, ?, ?) ON CONFLICT (user_id, node)"
                " DO UPDATE SET epoch = excluded.epoch WHERE excluded.epoch >= presence_nodes.epoch"
                " RETURNING user_id",
                (user_id, node, epoch),
            ).fetchone()
            return row is not None

        return await self._write(op)

    async def set_offline(self, user_id: str, node: str, epoch: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM presence_nodes WHERE user_id = ? AND node = ? AND epoch <= ?",
                               (user_id, node, epoch))
            return cur.rowcount == 1

        return await self._write(op)

    async def user_nodes(self, user_ids: list[str]) -> dict[str, list[str]]:
        ids = unique(user_ids)

        def op(conn: sqlite3.Connection) -> dict[str, list[str]]:
            rows = grouped_by_user(conn, "SELECT user_id, node FROM presence_nodes WHERE user_id IN ({ids})"
                                         " ORDER BY epoch DESC", ids)
            return {user: [r[1] for r in found] for user, found in rows.items()}

        return await self._run(op)

    async def forget_node(self, node: str, before_epoch: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM presence_nodes WHERE node = ? AND epoch < ?",
                                (node, before_epoch)).rowcount

        return await self._write(op)

    async def count_online(self) -> int:
        return await self._run(lambda conn: int(conn.execute(
            "SELECT COUNT(DISTINCT user_id) FROM presence_nodes").fetchone()[0]))
