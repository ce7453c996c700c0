"""SQLite store: blocks, contact lists, verified phone numbers and the hashes of other numbers."""

from __future__ import annotations

import sqlite3

from chatmq.core.errors import ConflictError
from chatmq.core.ids import now_ms
from chatmq.services.store.base import Contact
from chatmq.services.store.sqlite.base import CHUNK, SQLiteBase, marks, unique


class SQLiteSocial(SQLiteBase):
    """``blocks`` (blocker, blocked), ``contacts`` (owner, contact), ``phones`` (phone, unique user_id),
    ``phone_hashes`` (owner, hash): each keyed by its pair, the reverse lookups indexed."""

    async def block(self, blocker: str, blocked: str) -> bool:
        return await self._write(lambda conn: conn.execute(
            "INSERT OR IGNORE INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?)",
            (blocker, blocked, now_ms())).rowcount == 1)

    async def unblock(self, blocker: str, blocked: str) -> bool:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked)).rowcount == 1)

    async def blocked_by(self, blocker: str) -> list[str]:
        return await self._run(lambda conn: [row[0] for row in conn.execute(
            "SELECT blocked FROM blocks WHERE blocker = ? ORDER BY created_at, rowid", (blocker,))])

    async def blockers_of(self, users: list[str]) -> dict[str, set[str]]:
        wanted = unique(users)

        def op(conn: sqlite3.Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {u: set() for u in wanted}
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i:i + CHUNK]
                for blocker, blocked in conn.execute(
                        f"SELECT blocker, blocked FROM blocks WHERE blocked IN ({marks(len(chunk))})", chunk):
                    out[blocked].add(blocker)
            return out

        return await self._run(op)

    async def add_contact(self, owner: str, contact: str) -> bool:
        return await self._write(lambda conn: conn.execute(
            "INSERT OR IGNORE INTO contacts (owner, contact, added_at) VALUES (?, ?, ?)",
            (owner, contact, now_ms())).rowcount == 1)

    async def remove_contact(self, owner: str, contact: str) -> bool:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM contacts WHERE owner = ? AND contact = ?", (owner, contact)).rowcount == 1)

    async def contacts_of(self, owner: str) -> list[Contact]:
        return await self._run(lambda conn: [Contact(row[0], row[1]) for row in conn.execute(
            "SELECT contact, added_at FROM contacts WHERE owner = ? ORDER BY added_at, rowid", (owner,))])

    async def mutual_contacts(self, user_id: str) -> set[str]:
        return await self._run(lambda conn: {row[0] for row in conn.execute(
            "SELECT mine.contact FROM contacts AS mine JOIN contacts AS theirs"
            " ON theirs.owner = mine.contact AND theirs.contact = mine.owner WHERE mine.owner = ?", (user_id,))})

    async def set_phone(self, user_id: str, phone: str | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if phone is not None:
                holder = conn.execute("SELECT user_id FROM phones WHERE phone = ?", (phone,)).fetchone()
                if holder is not None and holder[0] != user_id:
                    raise ConflictError("another user has this phone number")
            conn.execute("DELETE FROM phones WHERE user_id = ?", (user_id,))
            if phone is not None:
                conn.execute("INSERT INTO phones (phone, user_id) VALUES (?, ?)", (phone, user_id))

        await self._write(op)

    async def phone_of(self, user_id: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT phone FROM phones WHERE user_id = ?", (user_id,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(op)

    async def user_ids_by_phones(self, phones: list[str]) -> dict[str, str]:
        wanted = unique(phones)

        def op(conn: sqlite3.Connection) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i:i + CHUNK]
                out.update(conn.execute(
                    f"SELECT phone, user_id FROM phones WHERE phone IN ({marks(len(chunk))})", chunk).fetchall())
            return out

        return await self._run(op)

    async def add_phone_hashes(self, owner: str, hashes: list[str]) -> None:
        if hashes:
            await self._write(lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO phone_hashes (owner, hash) VALUES (?, ?)", [(owner, h) for h in unique(hashes)]))

    async def phone_hashes(self, owner: str) -> list[str]:
        return await self._run(lambda conn: [row[0] for row in conn.execute(
            "SELECT hash FROM phone_hashes WHERE owner = ? ORDER BY rowid", (owner,))])
