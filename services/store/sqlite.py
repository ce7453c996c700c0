"""The SQLite implementation of ``Store``.

One ``sqlite3`` connection is owned by a dedicated single-thread executor: every
operation is a plain function run there through ``loop.run_in_executor``, so all SQLite
access happens on one thread and operations are serialized. Each write is one
transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``), rolled back on any error.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from chatmq.core.errors import ConflictError, NotFoundError, StoreError
from chatmq.core.ids import now_ms
from chatmq.services.store.base import (
    AcceptResult,
    Device,
    Group,
    GroupMember,
    NewMessage,
    PendingItem,
    PushToken,
    Store,
    StoredMessage,
    User,
)
from chatmq.services.store.common import chunks, json_object, json_text

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

#: The schema version this module creates (kept in ``PRAGMA user_version``). 2 added
#: ``users.token_version`` (a version 1 database gets the column on start).
SCHEMA_VERSION = 2

#: Host parameters per ``IN (...)`` chunk, well below SQLite's variable limit.
_CHUNK = 500

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    token_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS devices_owner ON devices (owner_id, created_at);
CREATE TABLE IF NOT EXISTS push_tokens (
    token      TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    platform   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS push_tokens_user ON push_tokens (user_id);
CREATE TABLE IF NOT EXISTS groups (
    group_id   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_id  TEXT NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX IF NOT EXISTS group_members_user ON group_members (user_id);
CREATE TABLE IF NOT EXISTS messages (
    server_id    TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    sender       TEXT NOT NULL,
    recipient    TEXT,
    group_id     TEXT,
    conversation TEXT NOT NULL,
    body         TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    UNIQUE (sender, client_id)
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, server_id);
CREATE TABLE IF NOT EXISTS pending (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id  TEXT NOT NULL,
    item_id  TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('message', 'notice')),
    envelope TEXT NOT NULL,
    UNIQUE (user_id, item_id)
);
CREATE INDEX IF NOT EXISTS pending_user_seq ON pending (user_id, seq);
CREATE INDEX IF NOT EXISTS pending_item ON pending (item_id);
CREATE TABLE IF NOT EXISTS presence (
    user_id TEXT PRIMARY KEY,
    node    TEXT NOT NULL,
    epoch   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS presence_node ON presence (node, epoch);
"""

_USER_COLS = "user_id, username, display_name, password_hash, created_at, disabled, is_admin, token_version"
_DEVICE_COLS = "device_id, owner_id, name, secret_hash, created_at, revoked"
_MESSAGE_COLS = "server_id, client_id, sender, recipient, group_id, conversation, body, ts"




def _marks(n: int) -> str:
    return ",".join("?" * n)


def _unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(items))


def _user(row: sqlite3.Row) -> User:
    return User(
        user_id=row["user_id"],
        username=row["username"],
        display_name=row["display_name"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
        is_admin=bool(row["is_admin"]),
        token_version=int(row["token_version"]),
    )


def _device(row: sqlite3.Row) -> Device:
    return Device(
        device_id=row["device_id"],
        owner_id=row["owner_id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        revoked=bool(row["revoked"]),
    )


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        server_id=row["server_id"],
        client_id=row["client_id"],
        sender=row["sender"],
        to=row["recipient"],
        group=row["group_id"],
        conversation=row["conversation"],
        body=json_object(row["body"]),
        ts=row["ts"],
    )


def _write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` in one write transaction: committed when it returns, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _load_group(conn: sqlite3.Connection, group_id: str) -> Group | None:
    row = conn.execute(
        "SELECT group_id, name, created_by, created_at FROM groups WHERE group_id = ?", (group_id,)
    ).fetchone()
    if row is None:
        return None
    members = tuple(
        GroupMember(user_id=m["user_id"], role=m["role"], joined_at=m["joined_at"])
        for m in conn.execute(
            "SELECT user_id, role, joined_at FROM group_members WHERE group_id = ?"
            " ORDER BY joined_at, user_id",
            (group_id,),
        )
    )
    return Group(
        group_id=row["group_id"],
        name=row["name"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        members=members,
    )


def _require_group(conn: sqlite3.Connection, group_id: str) -> Group:
    group = _load_group(conn, group_id)
    if group is None:
        raise NotFoundError(f"no group {group_id!r}")
    return group


class SQLiteStore(Store):
    """``Store`` on one SQLite database file (WAL journal, ``synchronous=FULL``).

    All SQLite work runs on a private single-thread executor that owns the connection,
    so the event loop never blocks on disk and operations never interleave. Methods
    called before ``start()`` or after ``stop()`` raise ``StoreError``; so does any
    SQLite failure (the operation's transaction is then rolled back).
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        # Only touched on the executor's thread (and by ``start``/``stop`` through it).
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self._path

    # lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Create the parent folder, open the database and create or migrate the schema.

        Starting a started store does nothing.
        """
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatmq-sqlite")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._open)
        except BaseException as exc:
            executor.shutdown(wait=False)
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreError(f"cannot open {self._path}: {exc}") from exc
            raise
        self._executor = executor

    async def stop(self) -> None:
        """Close the connection (after operations already queued) and the executor; idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=True)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this chatmq ({SCHEMA_VERSION})"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA_V1.split(";"):
                if statement.strip():
                    conn.execute(statement)
            user_cols = {row["name"] for row in conn.execute("PRAGMA table_info(users)")}
            if "token_version" not in user_cols:  # a version 1 database
                conn.execute("ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run on the executor thread: apply ``fn`` to the connection, mapping SQLite errors."""
        conn = self._conn
        if conn is None:
            raise StoreError("the store is closed")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        executor = self._executor
        if executor is None:
            raise StoreError("the store is not started")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, self._call, fn)
        except RuntimeError as exc:  # the executor was shut down meanwhile
            raise StoreError("the store is closed") from exc
        return await future

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda conn: _write(conn, fn))

    # users ----------------------------------------------------------------------
    async def create_user(
        self,
        user_id: str,
        username: str,
        password_hash: str,
        display_name: str | None,
        is_admin: bool = False,
    ) -> User:
        """Insert a user; ``ConflictError`` when the username (or the user id) is taken."""
        user = User.new(user_id, username, password_hash, display_name, is_admin)

        def op(conn: sqlite3.Connection) -> User:
            try:
                conn.execute(
                    f"INSERT INTO users ({_USER_COLS}) VALUES (?, ?, ?, ?, ?, 0, ?, 0)",
                    (user_id, username, display_name, password_hash, user.created_at, int(is_admin)),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"username {username!r} or user id {user_id!r} is taken") from exc
            return user

        return await self._write(op)

    async def get_user(self, user_id: str) -> User | None:
        def op(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
            return None if row is None else _user(row)

        return await self._run(op)

    async def get_user_by_username(self, username: str) -> User | None:
        def op(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE username = ?", (username,)).fetchone()
            return None if row is None else _user(row)

        return await self._run(op)

    async def user_ids_by_usernames(self, usernames: list[str]) -> dict[str, str]:
        names = _unique(usernames)

        def op(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in chunks(names, _CHUNK):
                for row in conn.execute(
                    f"SELECT username, user_id FROM users WHERE username IN ({_marks(len(chunk))})", chunk
                ):
                    found[row["username"]] = row["user_id"]
            return found

        return await self._run(op)

    async def existing_user_ids(self, user_ids: list[str]) -> set[str]:
        ids = _unique(user_ids)

        def op(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in chunks(ids, _CHUNK):
                found.update(
                    row["user_id"]
                    for row in conn.execute(
                        f"SELECT user_id FROM users WHERE user_id IN ({_marks(len(chunk))})", chunk
                    )
                )
            return found

        return await self._run(op)

    async def set_user_flags(
        self, user_id: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> None:
        """Change the given flags (``None`` leaves one as is); ``NotFoundError`` for an unknown user."""

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

    async def ping(self) -> None:
        """``SELECT 1`` on the store's connection (waits behind the operations queued before it)."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

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

    async def list_users(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[User]:
        def op(conn: sqlite3.Connection) -> list[User]:
            rows = conn.execute(
                f"SELECT {_USER_COLS} FROM users WHERE username >= ? AND username > ? AND substr(username, 1, ?) = ?"
                " ORDER BY username LIMIT ?",
                (prefix, after or "", len(prefix), prefix, limit),
            )
            return [_user(row) for row in rows]

        return await self._run(op)

    # push tokens ----------------------------------------------------------------
    async def add_push_token(self, user_id: str, platform: str, token: str) -> PushToken:
        """Register ``token`` for ``user_id``; a token held by anyone (even another user) is
        re-registered: it moves to ``user_id`` with the new platform and a fresh ``created_at``."""
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
        """The user's tokens, oldest registration first."""

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

    # devices --------------------------------------------------------------------
    async def create_device(self, device_id: str, owner_id: str, name: str, secret_hash: str) -> Device:
        """Insert a device; ``ConflictError`` when ``device_id`` exists."""
        device = Device(
            device_id=device_id, owner_id=owner_id, name=name, secret_hash=secret_hash, created_at=now_ms()
        )

        def op(conn: sqlite3.Connection) -> Device:
            try:
                conn.execute(
                    f"INSERT INTO devices ({_DEVICE_COLS}) VALUES (?, ?, ?, ?, ?, 0)",
                    (device_id, owner_id, name, secret_hash, device.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"device {device_id!r} exists") from exc
            return device

        return await self._write(op)

    async def get_device(self, device_id: str) -> Device | None:
        """The device, revoked or not."""

        def op(conn: sqlite3.Connection) -> Device | None:
            row = conn.execute(
                f"SELECT {_DEVICE_COLS} FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            return None if row is None else _device(row)

        return await self._run(op)

    async def list_devices(self, owner_id: str) -> list[Device]:
        def op(conn: sqlite3.Connection) -> list[Device]:
            return [
                _device(r)
                for r in conn.execute(
                    f"SELECT {_DEVICE_COLS} FROM devices WHERE owner_id = ? AND revoked = 0"
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

    # groups ---------------------------------------------------------------------
    async def create_group(self, group_id: str, name: str, creator: str, members: list[str]) -> Group:
        """Create a group: ``creator`` is admin (joined first), ``members`` follow in the given
        order with strictly increasing ``joined_at``; repeats and the creator are skipped.
        ``ConflictError`` when ``group_id`` exists."""
        others = [m for m in _unique(members) if m != creator]

        def op(conn: sqlite3.Connection) -> Group:
            created_at = now_ms()
            try:
                conn.execute(
                    "INSERT INTO groups (group_id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
                    (group_id, name, creator, created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"group {group_id!r} exists") from exc
            rows = [(group_id, creator, "admin", created_at)]
            rows += [(group_id, m, "member", created_at + 1 + i) for i, m in enumerate(others)]
            conn.executemany(
                "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)", rows
            )
            return _require_group(conn, group_id)

        return await self._write(op)

    async def get_group(self, group_id: str) -> Group | None:
        return await self._run(lambda conn: _load_group(conn, group_id))

    async def groups_of(self, user_id: str) -> list[Group]:
        """The user's groups, oldest (by the group's ``created_at``) first."""

        def op(conn: sqlite3.Connection) -> list[Group]:
            ids = [
                r["group_id"]
                for r in conn.execute(
                    "SELECT g.group_id FROM group_members m JOIN groups g ON g.group_id = m.group_id"
                    " WHERE m.user_id = ? ORDER BY g.created_at, g.group_id",
                    (user_id,),
                )
            ]
            return [g for g in (_load_group(conn, gid) for gid in ids) if g is not None]

        return await self._run(op)

    async def rename_group(self, group_id: str, name: str) -> Group:
        def op(conn: sqlite3.Connection) -> Group:
            cur = conn.execute("UPDATE groups SET name = ? WHERE group_id = ?", (name, group_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"no group {group_id!r}")
            return _require_group(conn, group_id)

        return await self._write(op)

    async def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add plain members in the given order, after everyone already in the group (strictly
        later ``joined_at``); returns those added. ``NotFoundError`` when there is no such group."""
        wanted = _unique(user_ids)

        def op(conn: sqlite3.Connection) -> list[str]:
            group = _require_group(conn, group_id)
            present = set(group.member_ids())
            new = [u for u in wanted if u not in present]
            last = max((m.joined_at for m in group.members), default=0)
            base = max(now_ms(), last + 1)
            conn.executemany(
                "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, 'member', ?)",
                [(group_id, u, base + i) for i, u in enumerate(new)],
            )
            return new

        return await self._write(op)

    async def list_groups(self, after: str | None = None, limit: int = 100) -> list[Group]:
        def op(conn: sqlite3.Connection) -> list[Group]:
            ids = [r["group_id"] for r in conn.execute(
                "SELECT group_id FROM groups WHERE group_id > ? ORDER BY group_id LIMIT ?", (after or "", limit))]
            return [g for g in (_load_group(conn, gid) for gid in ids) if g is not None]

        return await self._run(op)

    async def delete_group(self, group_id: str) -> Group:
        def op(conn: sqlite3.Connection) -> Group:
            group = _require_group(conn, group_id)
            conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))  # members cascade
            return group

        return await self._write(op)

    async def remove_member(self, group_id: str, user_id: str) -> str | None:
        """Remove a member. When the last admin leaves and members remain, the member with the
        earliest ``joined_at`` (tie: smallest user id) becomes admin and its id is returned;
        otherwise None. An emptied group is deleted. ``NotFoundError`` when not a member."""

        def op(conn: sqlite3.Connection) -> str | None:
            cur = conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"{user_id!r} is not a member of {group_id!r}")
            remaining = conn.execute(
                "SELECT user_id, role FROM group_members WHERE group_id = ? ORDER BY joined_at, user_id",
                (group_id,),
            ).fetchall()
            if not remaining:
                conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
                return None
            if any(r["role"] == "admin" for r in remaining):
                return None
            promoted: str = remaining[0]["user_id"]
            conn.execute(
                "UPDATE group_members SET role = 'admin' WHERE group_id = ? AND user_id = ?",
                (group_id, promoted),
            )
            return promoted

        return await self._write(op)

    # messages and pending -------------------------------------------------------
    async def accept_messages(self, messages: list[NewMessage]) -> list[AcceptResult]:
        """Store a batch in one transaction (see ``Store.accept_messages``). A ``server_id``
        already used by a different message fails the whole batch with ``StoreError``."""
        rows = [
            (
                (m.server_id, m.client_id, m.sender, m.to, m.group, m.conversation, json_text(m.body), m.ts),
                [(user, m.server_id, json_text(env)) for user, env in m.envelopes.items()],
            )
            for m in messages
        ]

        def op(conn: sqlite3.Connection) -> list[AcceptResult]:
            results: list[AcceptResult] = []
            for msg, (row, pending_rows) in zip(messages, rows, strict=True):
                earlier = conn.execute(
                    "SELECT server_id, ts FROM messages WHERE sender = ? AND client_id = ?",
                    (msg.sender, msg.client_id),
                ).fetchone()
                if earlier is not None:
                    results.append(
                        AcceptResult(server_id=earlier["server_id"], ts=earlier["ts"], duplicate=True)
                    )
                    continue
                conn.execute(f"INSERT INTO messages ({_MESSAGE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
                conn.executemany(
                    "INSERT OR IGNORE INTO pending (user_id, item_id, kind, envelope)"
                    " VALUES (?, ?, 'message', ?)",
                    pending_rows,
                )
                results.append(AcceptResult(server_id=msg.server_id, ts=msg.ts, duplicate=False))
            return results

        if not messages:
            return await self._run(lambda conn: [])
        return await self._write(op)

    async def get_messages(self, server_ids: list[str]) -> list[StoredMessage]:
        """The stored messages among ``server_ids``, in the order of ``server_ids`` (repeats once)."""
        ids = _unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            found: dict[str, StoredMessage] = {}
            for chunk in chunks(ids, _CHUNK):
                for r in conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE server_id IN ({_marks(len(chunk))})", chunk
                ):
                    found[r["server_id"]] = _message(r)
            return [found[i] for i in ids if i in found]

        return await self._run(op)

    async def history(self, conversation: str, before: str | None, limit: int) -> list[StoredMessage]:
        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            if limit <= 0:
                return []
            if before is None:
                cur = conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE conversation = ?"
                    " ORDER BY server_id DESC LIMIT ?",
                    (conversation, limit),
                )
            else:
                cur = conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE conversation = ? AND server_id < ?"
                    " ORDER BY server_id DESC LIMIT ?",
                    (conversation, before, limit),
                )
            return [_message(r) for r in cur]

        return await self._run(op)

    async def add_notices(self, notices: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Append notice items in one transaction. An ``item_id`` the user already has pending
        (of either kind) is skipped, so re-adding the same notice is harmless."""
        rows = [(user, item_id, json_text(env)) for user, item_id, env in notices]

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
                    envelope=json_object(r["envelope"]),
                )
                for r in conn.execute(
                    "SELECT seq, item_id, kind, envelope FROM pending WHERE user_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (user_id, after_seq, limit),
                )
            ]

        return await self._run(op)

    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        ids = _unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
            rows: list[tuple[int, str, str]] = []
            for chunk in chunks(ids, _CHUNK):
                rows.extend((r[0], r[1], r[2]) for r in conn.execute(
                    f"SELECT seq, user_id, envelope FROM pending WHERE kind = 'message'"
                    f" AND item_id IN ({_marks(len(chunk))})", chunk).fetchall())
            return [(user, json_object(env)) for _seq, user, env in sorted(rows)]

        return await self._run(op)

    async def remove_pending(self, user_id: str, server_ids: list[str]) -> list[str]:
        """Remove the user's ``message`` items among ``server_ids``; returns the removed ids in
        the order of ``server_ids`` (notices with a matching item id are left alone)."""
        ids = _unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[str]:
            removed: set[str] = set()
            for chunk in chunks(ids, _CHUNK):
                removed.update(
                    r[0]
                    for r in conn.execute(
                        f"DELETE FROM pending WHERE user_id = ? AND kind = 'message'"
                        f" AND item_id IN ({_marks(len(chunk))}) RETURNING item_id",
                        (user_id, *chunk),
                    ).fetchall()
                )
            return [i for i in ids if i in removed]

        if not ids:
            return await self._run(lambda conn: [])
        return await self._write(op)

    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        unique_seqs = _unique(seqs)

        def op(conn: sqlite3.Connection) -> None:
            for chunk in chunks(unique_seqs, _CHUNK):
                conn.execute(
                    f"DELETE FROM pending WHERE user_id = ? AND kind = 'notice'"
                    f" AND seq IN ({_marks(len(chunk))})",
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

    async def count_messages(self) -> int:
        return await self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]))

    async def count_devices(self) -> int:
        return await self._run(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM devices WHERE revoked = 0").fetchone()[0]))

    # presence -------------------------------------------------------------------
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
        ids = _unique(user_ids)

        def op(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in chunks(ids, _CHUNK):
                found.update((r[0], r[1]) for r in conn.execute(
                    f"SELECT user_id, node FROM presence WHERE user_id IN ({_marks(len(chunk))})", chunk))
            return found

        return await self._run(op)

    async def forget_node(self, node: str, before_epoch: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM presence WHERE node = ? AND epoch < ?", (node, before_epoch)).rowcount

        return await self._write(op)

    async def count_online(self) -> int:
        return await self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM presence").fetchone()[0]))
