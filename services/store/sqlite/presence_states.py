"""SQLite store: the announced presence of users and their presence privacy (``presence_states``: one row
per user that was ever seen or set its visibility)."""

from __future__ import annotations

import sqlite3
from typing import cast

from chatmq.services.store.base import PresenceState, Visibility
from chatmq.services.store.sqlite.base import SQLiteBase, grouped_by_user, unique


class SQLitePresenceStates(SQLiteBase):
    """Each user's announced presence and whom it is shown to."""

    async def presence_states(self, user_ids: list[str]) -> dict[str, PresenceState]:
        ids = unique(user_ids)

        def op(conn: sqlite3.Connection) -> dict[str, PresenceState]:
            rows = grouped_by_user(conn, "SELECT user_id, state, since, visibility FROM presence_states"
                                         " WHERE user_id IN ({ids})", ids)
            found = {u: PresenceState(r[0][1], r[0][2], cast(Visibility, r[0][3])) for u, r in rows.items()}
            return {u: found.get(u, PresenceState()) for u in ids}

        return await self._run(op)

    async def set_presence_state(self, user_id: str, state: str, since: int) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO presence_states (user_id, state, since) VALUES (?, ?, ?) ON CONFLICT (user_id)"
            " DO UPDATE SET state = excluded.state, since = excluded.since", (user_id, state, since)))

    async def set_presence_visibility(self, user_id: str, visibility: Visibility) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO presence_states (user_id, visibility) VALUES (?, ?) ON CONFLICT (user_id)"
            " DO UPDATE SET visibility = excluded.visibility", (user_id, visibility)))

    async def present_users(self) -> list[str]:
        return await self._run(lambda conn: [r[0] for r in conn.execute(
            "SELECT user_id FROM presence_states WHERE state != 'offline'")])
