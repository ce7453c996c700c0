"""SQLite store: users, their push tokens and devices."""

from __future__ import annotations

import sqlite3

from chatmq.core.errors import ConflictError, NotFoundError
from chatmq.core.ids import now_ms
from chatmq.services.store.base import (
    Device,
    PushToken,
    User,
)
from chatmq.services.store.common import chunks
from chatmq.services.store.sqlite.base import (
    CHUNK,
    DEVICE_COLS,
    USER_COLS,
    SQLiteBase,
    device_row,
    marks,
    unique,
    user_row,
)

#: How many existing user ids ``existing_user_ids`` remembers at most (then it starts again).
KNOWN_USERS = 100_000


class SQLiteUsers(SQLiteBase):
    """Users, their push tokens and devices."""

    async def create_user(
        self,
        user_id: str,
        username: str,
        password_hash: str,
        display_name: str | None,
        is_admin: bool = False,
    ) -> User:
        user = User.new(user_id, username, password_hash, display_name, is_admin)

        def op(conn: sqlite3.Connection) -> User:
            try:
                conn.execute(
                    f"INSERT INTO users ({USER_COLS}) VALUES (?, ?, ?, ?, ?, 0, ?, 0)",
                    (user_id, username, display_name, password_hash, user.created_at, int(is_admin)),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"username {username!r} or user id {user_id!r} is taken") from exc
            return user

        return await self._write(op)

    async def get_user(self, user_id: str) -> User | None:
        def op(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(f"SELECT {USER_COLS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
            return None if row is None else user_row(row)

        return await self._run(op)

    async def get_user_by_username(self, username: str) -> User | None:
        def op(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(f"SELECT {USER_COLS} FROM users WHERE username = ?", (username,)).fetchone()
            return None if row is None else user_row(row)

        return await self._run(op)

    async def user_ids_by_usernames(self, usernames: list[str]) -> dict[str, str]:
        names = unique(usernames)

        def op(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in chunks(names, CHUNK):
                for row in conn.execute(
                    f"SELECT username, user_id FROM users WHERE username IN ({marks(len(chunk))})", chunk
                ):
                    found[row["username"]] = row["user_id"]
            return found

        return await self._run(op)

    async def existing_user_ids(self, user_ids: list[str]) -> set[str]:
        """Ids seen to exist before are answered from memory (the chat router asks this for every batch,
        and the API for every request): only the others are looked up, and remembered when found. The
        store is the only writer of its database that deletes users (``delete_user`` forgets the id first,
        and a lookup begun before that is not remembered), so the answer is as exact as the table's."""
        known = self._known_users
        ids = unique(user_ids)
        missing = [i for i in ids if i not in known]
        if not missing:
            return set(ids)

        def op(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in chunks(missing, CHUNK):
                found.update(
                    row["user_id"]
                    for row in conn.execute(
                        f"SELECT user_id FROM users WHERE user_id IN ({marks(len(chunk))})", chunk
                    )
                )
            return found

        deletions = self._deletions
        found = await self._run(op)
        if deletions == self._deletions:
            if len(known) + len(found) > KNOWN_USERS:
                known.clear()
            known.update(found)
        return found | (set(ids) - set(missing))

    async def set_user_flags(
        self, user_id: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE users SET disabled = COALESCE(?, disabled), is_admin = COALESCE(?, is_admin)"
                " WHERE user_id = ?",
                (
                    None if disabled is None else int(disabled),
                    None if is_admin is None else int(is_admin),
                    user_id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no user {user_id!r}")

        await self._write(op)

    async def count_users(self) -> int:
        return await self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]))

    async def revoke_tokens(self, user_id: str) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE users SET token_version = token_version + 1 WHERE user_id = ? RETURNING token_version",
                (user_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no user {user_id!r}")
            return int(row[0])

        return await self._write(op)

    async def spend_refresh_token(self, token_id: str, family: str, user_id: str, expires_at: int,
                                  grace_ms: int = 0) -> bool:
        """One transaction: forget expired records, then record ``token_id`` as spent unless it was."""

        def op(conn: sqlite3.Connection) -> bool:
            now = now_ms()
            conn.execute("DELETE FROM refresh_spent WHERE expires_at < ?", (now,))
            conn.execute("DELETE FROM refresh_revoked WHERE expires_at < ?", (now,))
            row = conn.execute("SELECT family, spent_at FROM refresh_spent WHERE token_id = ?",
                               (token_id,)).fetchone()
            if row is not None and grace_ms > 0 and now - row["spent_at"] <= grace_ms:  # again at once: same client
                return conn.execute("SELECT 1 FROM refresh_revoked WHERE family = ?",
                                    (row["family"],)).fetchone() is None
            if row is not None:  # spent before: a copy of the token is in other hands
                conn.executemany(
                    "INSERT INTO refresh_revoked (family, user_id, expires_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (family) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
                    [(fam, user_id, expires_at) for fam in unique([row["family"], family])],
                )
                return False
            conn.execute("INSERT INTO refresh_spent (token_id, family, user_id, spent_at, expires_at)"
                         " VALUES (?, ?, ?, ?, ?)", (token_id, family, user_id, now, expires_at))
            revoked = conn.execute("SELECT 1 FROM refresh_revoked WHERE family = ?", (family,)).fetchone()
            return revoked is None

        return await self._write(op)

    async def delete_user(self, user_id: str) -> None:
        """One transaction: the user's devices, push tokens, pending items, phone number, contacts (both
        ways), blocks (both ways), phone hashes, conversation states, and the user. The id is forgotten
        by ``existing_user_ids`` first."""
        self._deletions += 1
        self._known_users.discard(user_id)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM devices WHERE owner_id = ?", (user_id,))
            conn.execute("DELETE FROM push_tokens WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM pending WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM phones WHERE user_id = ?", (user_id,))  # the number is free again
            for table, column in (("contacts", "owner"), ("contacts", "contact"), ("blocks", "blocker"),
                                  ("blocks", "blocked"), ("phone_hashes", "owner"), ("conversation_state", "user_id")):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (user_id,))
            conn.execute("DELETE FROM user_sessions WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM device_marks WHERE user_id = ?", (user_id,))
            if conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount == 0:
                raise NotFoundError(f"no user {user_id!r}")

        await self._write(op)

    async def list_users(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[User]:
        def op(conn: sqlite3.Connection) -> list[User]:
            rows = conn.execute(
                f"SELECT {USER_COLS} FROM users WHERE username >= ? AND username > ? AND substr(username, 1, ?) = ?"
                " ORDER BY username LIMIT ?",
                (prefix, after or "", len(prefix), prefix, limit),
            )
            return [user_row(row) for row in rows]

        return await self._run(op)

    async def add_push_token(self, user_id: str, platform: str, token: str) -> PushToken:
        pt = PushToken(user_id=user_id, platform=platform, token=token, created_at=now_ms())

        def op(conn: sqlite3.Connection) -> PushToken:
            conn.execute(
                "INSERT INTO push_tokens (token, user_id, platform, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id,"
                " platform = excluded.platform, created_at = excluded.created_at",
                (token, user_id, platform, pt.created_at),
            )
            return pt

        return await self._write(op)

    async def remove_push_token(self, user_id: str, token: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM push_tokens WHERE token = ? AND user_id = ?", (token, user_id))
            return cur.rowcount > 0

        return await self._write(op)

    async def push_tokens(self, user_id: str) -> list[PushToken]:
        def op(conn: sqlite3.Connection) -> list[PushToken]:
            return [
                PushToken(
                    user_id=r["user_id"], platform=r["platform"], token=r["token"], created_at=r["created_at"]
                )
                for r in conn.execute(
                    "SELECT token, user_id, platform, created_at FROM push_tokens WHERE user_id = ?"
                    " ORDER BY created_at, rowid",
                    (user_id,),
                )
            ]

        return await self._run(op)

    async def create_device(self, device_id: str, owner_id: str, name: str, secret_hash: str) -> Device:
        device = Device(
            device_id=device_id, owner_id=owner_id, name=name, secret_hash=secret_hash, created_at=now_ms()
        )

        def op(conn: sqlite3.Connection) -> Device:
            try:
                conn.execute(
                    f"INSERT INTO devices ({DEVICE_COLS}) VALUES (?, ?, ?, ?, ?, 0)",
                    (device_id, owner_id, name, secret_hash, device.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"device {device_id!r} exists") from exc
            return device

        return await self._write(op)

    async def get_device(self, device_id: str) -> Device | None:
        def op(conn: sqlite3.Connection) -> Device | None:
            row = conn.execute(
                f"SELECT {DEVICE_COLS} FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            return None if row is None else device_row(row)

        return await self._run(op)

    async def list_devices(self, owner_id: str) -> list[Device]:
        def op(conn: sqlite3.Connection) -> list[Device]:
            return [
                device_row(r)
                for r in conn.execute(
                    f"SELECT {DEVICE_COLS} FROM devices WHERE owner_id = ? AND revoked = 0"
                    " ORDER BY created_at, rowid",
                    (owner_id,),
                )
            ]

        return await self._run(op)

    async def revoke_device(self, owner_id: str, device_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE devices SET revoked = 1 WHERE device_id = ? AND owner_id = ? AND revoked = 0",
                (device_id, owner_id),
            )
            return cur.rowcount > 0

        return await self._write(op)

    async def count_devices(self) -> int:
        return await self._run(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM devices WHERE revoked = 0").fetchone()[0]))
