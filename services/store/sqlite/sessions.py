"""SQLite store: the devices (MQTT client ids) each user connects with."""

from __future__ import annotations

import sqlite3

from chatmq.services.store.base import UserSession
from chatmq.services.store.common import chunks
from chatmq.services.store.sqlite.base import CHUNK, SQLiteBase, grouped_by_user, marks, unique

_COLS = "user_id, client_id, first_seen, last_seen"


def _session(row: sqlite3.Row) -> UserSession:
    return UserSession(row["user_id"], row["client_id"], int(row["first_seen"]), int(row["last_seen"]))


def _sessions(conn: sqlite3.Connection, user_id: str) -> list[UserSession]:
    return [_session(r) for r in conn.execute(
        f"SELECT {_COLS} FROM user_sessions WHERE user_id = ? ORDER BY first_seen, client_id", (user_id,))]


class SQLiteSessions(SQLiteBase):
    """The devices each user connects with (``user_sessions``)."""

    async def touch_session(self, user_id: str, client_id: str, now: int) -> tuple[bool, list[UserSession]]:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[UserSession]]:
            new = conn.execute(
                "INSERT INTO user_sessions (user_id, client_id, first_seen, last_seen) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, client_id) DO NOTHING RETURNING 1", (user_id, client_id, now, now),
            ).fetchone() is not None
            if not new:
                conn.execute("UPDATE user_sessions SET last_seen = MAX(last_seen, ?) WHERE user_id = ?"
                             " AND client_id = ?", (now, user_id, client_id))
            return new, _sessions(conn, user_id)

        return await self._write(op)

    async def sessions_of(self, user_ids: list[str]) -> dict[str, list[UserSession]]:
        ids = unique(user_ids)

        def op(conn: sqlite3.Connection) -> dict[str, list[UserSession]]:
            rows = grouped_by_user(conn, f"SELECT {_COLS} FROM user_sessions WHERE user_id IN ({{ids}})"
                                         " ORDER BY first_seen, client_id", ids)
            return {user: [_session(r) for r in found] for user, found in rows.items()}

        return await self._run(op)

    async def stale_sessions(self, before: int, limit: int) -> list[UserSession]:
        return await self._run(lambda conn: [_session(r) for r in conn.execute(
            f"SELECT {_COLS} FROM user_sessions WHERE last_seen < ? ORDER BY last_seen LIMIT ?", (before, limit))])

    async def remove_session(self, user_id: str, client_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            if conn.execute("DELETE FROM user_sessions WHERE user_id = ? AND client_id = ?",
                            (user_id, client_id)).rowcount == 0:
                return False
            conn.execute("DELETE FROM device_marks WHERE user_id = ? AND client_id = ?", (user_id, client_id))
            remaining = [s.client_id for s in _sessions(conn, user_id)]
            if not remaining:
                return True  # what is pending waits for the user's next device
            done = [r[0] for r in conn.execute(
                f"SELECT item_id FROM device_marks WHERE user_id = ? AND client_id IN ({marks(len(remaining))})"
                " GROUP BY item_id HAVING COUNT(*) = ?", (user_id, *remaining, len(remaining)))]
            for chunk in chunks(done, CHUNK):
                params = (user_id, *chunk)
                conn.execute(f"DELETE FROM pending WHERE user_id = ? AND kind = 'message'"
                             f" AND item_id IN ({marks(len(chunk))})", params)
                conn.execute(f"DELETE FROM device_marks WHERE user_id = ? AND item_id IN ({marks(len(chunk))})",
                             params)
            return True

        return await self._write(op)
