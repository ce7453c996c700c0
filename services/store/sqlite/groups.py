"""SQLite store: groups and their members."""

from __future__ import annotations

import sqlite3

from chatmq.core.errors import ConflictError, NotFoundError
from chatmq.core.ids import now_ms
from chatmq.services.store.base import (
    Group,
)
from chatmq.services.store.common import Joining, founders, newcomers, successor
from chatmq.services.store.sqlite.base import (
    MEMBER_ORDER,
    SQLiteBase,
    load_group,
    require_group,
    unique,
)


def insert_members(conn: sqlite3.Connection, group_id: str, members: list[Joining]) -> None:
    conn.executemany(
        "INSERT INTO group_members (group_id, user_id, role, joined_at, position) VALUES (?, ?, ?, ?, ?)",
        [(group_id, m.user_id, m.role, m.joined_at, m.position) for m in members],
    )


class SQLiteGroups(SQLiteBase):
    """Groups and their members."""

    async def create_group(self, group_id: str, name: str, creator: str, members: list[str]) -> Group:
        def op(conn: sqlite3.Connection) -> Group:
            created_at = now_ms()
            try:
                conn.execute(
                    "INSERT INTO groups (group_id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
                    (group_id, name, creator, created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"group {group_id!r} exists") from exc
            insert_members(conn, group_id, founders(creator, members, created_at))
            return require_group(conn, group_id)

        return await self._write(op)

    async def get_group(self, group_id: str) -> Group | None:
        return await self._run(lambda conn: load_group(conn, group_id))

    async def get_groups(self, group_ids: list[str]) -> dict[str, Group]:
        """One hand-off to the store's thread for all of them."""
        ids = unique(group_ids)

        def op(conn: sqlite3.Connection) -> dict[str, Group]:
            return {g.group_id: g for g in (load_group(conn, gid) for gid in ids) if g is not None}

        return await self._run(op) if ids else {}

    async def groups_of(self, user_id: str) -> list[Group]:
        def op(conn: sqlite3.Connection) -> list[Group]:
            ids = [
                r["group_id"]
                for r in conn.execute(
                    "SELECT g.group_id FROM group_members m JOIN groups g ON g.group_id = m.group_id"
                    " WHERE m.user_id = ? ORDER BY g.created_at, g.group_id",
                    (user_id,),
                )
            ]
            return [g for g in (load_group(conn, gid) for gid in ids) if g is not None]

        return await self._run(op)

    async def rename_group(self, group_id: str, name: str) -> Group:
        def op(conn: sqlite3.Connection) -> Group:
            cur = conn.execute("UPDATE groups SET name = ? WHERE group_id = ?", (name, group_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"no group {group_id!r}")
            return require_group(conn, group_id)

        return await self._write(op)

    async def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            group = require_group(conn, group_id)
            last = conn.execute(
                "SELECT COALESCE(MAX(position), -1) FROM group_members WHERE group_id = ?", (group_id,)
            ).fetchone()[0]
            new = newcomers(group.member_ids(), user_ids, last, now_ms())
            insert_members(conn, group_id, new)
            return [m.user_id for m in new]

        return await self._write(op)

    async def list_groups(self, after: str | None = None, limit: int = 100) -> list[Group]:
        def op(conn: sqlite3.Connection) -> list[Group]:
            ids = [r["group_id"] for r in conn.execute(
                "SELECT group_id FROM groups WHERE group_id > ? ORDER BY group_id LIMIT ?", (after or "", limit))]
            return [g for g in (load_group(conn, gid) for gid in ids) if g is not None]

        return await self._run(op)

    async def delete_group(self, group_id: str) -> Group:
        def op(conn: sqlite3.Connection) -> Group:
            group = require_group(conn, group_id)
            conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))  # members cascade
            return group

        return await self._write(op)

    async def remove_member(self, group_id: str, user_id: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            cur = conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"{user_id!r} is not a member of {group_id!r}")
            remaining = conn.execute(
                f"SELECT user_id, role FROM group_members WHERE group_id = ? ORDER BY {MEMBER_ORDER}",
                (group_id,),
            ).fetchall()
            if not remaining:
                conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
                return None
            promoted = successor((r["user_id"], r["role"]) for r in remaining)
            if promoted is not None:
                conn.execute(
                    "UPDATE group_members SET role = 'admin' WHERE group_id = ? AND user_id = ?",
                    (group_id, promoted),
                )
            return promoted

        return await self._write(op)
