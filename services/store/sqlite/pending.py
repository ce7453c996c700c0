"""SQLite store: what waits for a user: pending messages until its ``delivered`` receipt, and notices."""

from __future__ import annotations

import sqlite3
from typing import Literal, cast

from chatmq.services.store.base import (
    PendingItem,
)
from chatmq.services.store.common import chunks
from chatmq.services.store.sqlite.base import (
    CHUNK,
    SQLiteBase,
    marks,
    unique,
)


class SQLitePending(SQLiteBase):
    """What waits for a user: pending messages until its ``delivered`` receipt, and notices."""

    async def add_notices(self, notices: list[tuple[str, str, bytes]]) -> None:
        """Append notice items in one transaction. An ``item_id`` the user already has pending
        (of either kind) is skipped, so re-adding the same notice is harmless."""
        rows = [(user, item_id, env.decode()) for user, item_id, env in notices]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO pending (user_id, item_id, kind, envelope) VALUES (?, ?, 'notice', ?)",
                rows,
            )

        if not rows:
            await self._run(lambda conn: None)
            return
        await self._write(op)

    async def pending(self, user_id: str, after_seq: int, limit: int) -> list[PendingItem]:
        def op(conn: sqlite3.Connection) -> list[PendingItem]:
            if limit <= 0:
                return []
            return [
                PendingItem(
                    seq=r["seq"],
                    item_id=r["item_id"],
                    kind=cast(Literal["message", "notice"], r["kind"]),
                    envelope=r["envelope"].encode(),
                )
                for r in conn.execute(
                    "SELECT seq, item_id, kind, envelope FROM pending WHERE user_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (user_id, after_seq, limit),
                )
            ]

        return await self._run(op)

    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, bytes]]:
        ids = unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows: list[tuple[int, str, str]] = []
            for chunk in chunks(ids, CHUNK):
                rows.extend((r[0], r[1], r[2]) for r in conn.execute(
                    f"SELECT seq, user_id, envelope FROM pending WHERE kind = 'message'"
                    f" AND item_id IN ({marks(len(chunk))})", chunk).fetchall())
            return [(user, env.encode()) for _seq, user, env in sorted(rows)]

        return await self._run(op)

    async def remove_pending(self, user_id: str, server_ids: list[str]) -> list[str]:
        """Remove the user's ``message`` items among ``server_ids``; returns the removed ids in
        the order of ``server_ids`` (notices with a matching item id are left alone)."""
        ids = unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[str]:
            removed: set[str] = set()
            for chunk in chunks(ids, CHUNK):
                removed.update(
                    r[0]
                    for r in conn.execute(
                        f"DELETE FROM pending WHERE user_id = ? AND kind = 'message'"
                        f" AND item_id IN ({marks(len(chunk))}) RETURNING item_id",
                        (user_id, *chunk),
                    ).fetchall()
                )
            return [i for i in ids if i in removed]

        if not ids:
            return await self._run(lambda conn: [])
        return await self._write(op)

    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        unique_seqs = unique(seqs)

        def op(conn: sqlite3.Connection) -> None:
            for chunk in chunks(unique_seqs, CHUNK):
                conn.execute(
                    f"DELETE FROM pending WHERE user_id = ? AND kind = 'notice'"
                    f" AND seq IN ({marks(len(chunk))})",
                    (user_id, *chunk),
                )

        if not unique_seqs:
            await self._run(lambda conn: None)
            return
        await self._write(op)

    async def count_pending(self, user_id: str | None = None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            if user_id is None:
                row = conn.execute("SELECT COUNT(*) FROM pending WHERE kind = 'message'").fetchone()
            else:
                row = conn.execute(
                    "SELECT COUNT(*) FROM pending WHERE user_id = ? AND kind = 'message'", (user_id,)
                ).fetchone()
            return int(row[0])

        return await self._run(op)
