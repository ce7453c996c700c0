"""The SQLite store's shared machinery: the schema and its migrations, the connection on its own
thread, row conversions. ``chatmq.services.store.sqlite``'s docstring describes the store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec

from chatmq.core.errors import NotFoundError, StoreError
from chatmq.services.store.base import (
    Device,
    Group,
    GroupMember,
    Store,
    StoredMessage,
    User,
)
from chatmq.services.store.common import json_object
from chatmq.services.store.common import unique as unique  # the store modules import it from here
from chatmq.services.store.sqlite.checkpoint import Checkpointer

T = TypeVar("T")

_ROWS = msgspec.json.Encoder()

#: The schema version this module creates (kept in ``PRAGMA user_version``). 2 added
#: ``users.token_version`` (a version 1 database gets the column on start); 3 the tables of
#: refresh token rotation, ``refresh_spent`` and ``refresh_revoked`` (created on start, empty); 4 message
#: actions: ``messages.reply_to``, ``edited_at``, ``deleted`` (added on start) and the tables ``actions``,
#: ``reactions``, ``hidden`` (created on start, empty); the tables of blocks, contact lists and phone numbers
#: (``blocks``, ``contacts``, ``phones``, ``phone_hashes``) and of the conversation list
#: (``conversation_heads``, ``conversation_state``; heads of messages stored before are not made: those
#: conversations show once they have a new message), and the FTS5 index of message texts (``message_text``,
#: filled by the first search: ``search_position``); the devices of a user (``user_sessions``,
#: ``device_marks``) and the registry's ``presence_nodes`` (an entry per user and node), which replaces
#: ``presence``, and the announced presence of users, ``presence_states`` (created on start); 5
#: ``group_members.position``, the members' explicit order (added on start, numbered in the earlier order:
#: by ``joined_at``, then user id); 6 a pending message's route (``pending.route_from``, ``route_to``,
#: ``route_group``, added on start: a receipt takes the item without parsing its envelope; older rows, and
#: actions' copies, keep them NULL and are read out of the envelope).
SCHEMA_VERSION = 6

#: Host parameters per ``IN (...)`` chunk, well below SQLite's variable limit.
CHUNK = 500

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
    position  INTEGER NOT NULL DEFAULT 0,
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
    reply_to     TEXT,
    edited_at    INTEGER,
    deleted      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sender, client_id)
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, server_id);
CREATE TABLE IF NOT EXISTS actions (
    server_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    sender    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    target    TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    UNIQUE (sender, client_id)
);
CREATE INDEX IF NOT EXISTS actions_target ON actions (target, kind);
CREATE TABLE IF NOT EXISTS reactions (
    server_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    emoji     TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (server_id, user_id, emoji)
);
CREATE TABLE IF NOT EXISTS hidden (
    user_id   TEXT NOT NULL,
    server_id TEXT NOT NULL,
    PRIMARY KEY (user_id, server_id)
);
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
CREATE TABLE IF NOT EXISTS shadows (
    device_id  TEXT PRIMARY KEY,
    desired    TEXT NOT NULL,
    reported   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    params     TEXT NOT NULL,
    persistent INTEGER NOT NULL,
    status     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    result     TEXT,
    error      TEXT,
    requester  TEXT,
    client_id  TEXT
);
CREATE INDEX IF NOT EXISTS commands_device ON commands (device_id, created_at);
CREATE TABLE IF NOT EXISTS jobs (
    job_id     TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    canceled   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_executions (
    job_id     TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    status     TEXT NOT NULL,
    progress   INTEGER,
    details    TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, device_id)
);
CREATE TABLE IF NOT EXISTS device_owed (
    device_id TEXT PRIMARY KEY,
    commands  TEXT NOT NULL,
    jobs      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_status (
    device_id         TEXT PRIMARY KEY,
    online            INTEGER NOT NULL,
    node              TEXT,
    epoch             INTEGER NOT NULL,
    connected_at      INTEGER,
    last_seen         INTEGER,
    disconnect_reason TEXT
);
CREATE TABLE IF NOT EXISTS refresh_spent (
    token_id   TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    spent_at   INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refresh_spent_expiry ON refresh_spent (expires_at);
CREATE TABLE IF NOT EXISTS refresh_revoked (
    family     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refresh_revoked_expiry ON refresh_revoked (expires_at);
CREATE TABLE IF NOT EXISTS blocks (
    blocker    TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX IF NOT EXISTS blocks_blocked ON blocks (blocked);
CREATE TABLE IF NOT EXISTS contacts (
    owner    TEXT NOT NULL,
    contact  TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (owner, contact)
);
CREATE INDEX IF NOT EXISTS contacts_contact ON contacts (contact);
CREATE TABLE IF NOT EXISTS phones (
    phone   TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS conversation_heads (
    conversation TEXT PRIMARY KEY,
    a            TEXT,
    b            TEXT,
    group_id     TEXT,
    last_id      TEXT NOT NULL,
    last_sender  TEXT NOT NULL,
    last_body    TEXT NOT NULL,
    last_ts      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_heads_a ON conversation_heads (a, last_id);
CREATE INDEX IF NOT EXISTS conversation_heads_b ON conversation_heads (b, last_id);
CREATE TABLE IF NOT EXISTS conversation_state (
    user_id      TEXT NOT NULL,
    conversation TEXT NOT NULL,
    read_up_to   TEXT,
    muted        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation)
);
CREATE INDEX IF NOT EXISTS conversation_state_conversation ON conversation_state (conversation);
CREATE VIRTUAL TABLE IF NOT EXISTS message_text USING fts5 (text, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS search_position (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_rowid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS phone_hashes (
    owner TEXT NOT NULL,
    hash  TEXT NOT NULL,
    PRIMARY KEY (owner, hash)
);
CREATE TABLE IF NOT EXISTS presence_nodes (
    user_id TEXT NOT NULL,
    node    TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    PRIMARY KEY (user_id, node)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS presence_nodes_node ON presence_nodes (node, epoch);
CREATE TABLE IF NOT EXISTS presence_states (
    user_id    TEXT PRIMARY KEY,
    state      TEXT NOT NULL DEFAULT 'offline',
    since      INTEGER,
    visibility TEXT NOT NULL DEFAULT 'contacts'
);
CREATE TABLE IF NOT EXISTS user_sessions (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX IF NOT EXISTS user_sessions_last_seen ON user_sessions (last_seen);
CREATE TABLE IF NOT EXISTS device_marks (
    user_id   TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    client_id TEXT NOT NULL,
    PRIMARY KEY (user_id, item_id, client_id)
) WITHOUT ROWID;
"""

USER_COLS = "user_id, username, display_name, password_hash, created_at, disabled, is_admin, token_version"
DEVICE_COLS = "device_id, owner_id, name, secret_hash, created_at, revoked"
#: the columns a new message is inserted with (``MESSAGE_MARKS`` placeholders) ...
MESSAGE_COLS = "server_id, client_id, sender, recipient, group_id, conversation, body, ts, reply_to"
MESSAGE_MARKS = "?, ?, ?, ?, ?, ?, ?, ?, ?"
#: ... and those read back (``message_row``): with what message actions changed
STORED_COLS = f"{MESSAGE_COLS}, edited_at, deleted"




def marks(n: int) -> str:
    return ",".join("?" * n)


def encode_rows(rows: Sequence[Sequence[object]]) -> str:
    """``rows`` as one JSON array of arrays: one parameter for a statement over all of them (``columns``)."""
    return _ROWS.encode(rows).decode()


def columns(n: int, first: int = 0) -> str:
    """The select list ``value ->> first, …`` of ``n`` columns of ``json_each`` over ``encode_rows``'s array:
    JSON strings come out as TEXT, integers as INTEGER, null as NULL."""
    return ", ".join(f"value ->> {i}" for i in range(first, first + n))


def grouped_by_user(conn: sqlite3.Connection, sql: str, user_ids: list[str]) -> dict[str, list[sqlite3.Row]]:
    """The rows of ``sql`` (its ``{ids}`` an ``IN`` list of user ids, its first column the user id) for
    ``user_ids``, run in chunks, by user, in the query's order."""
    found: dict[str, list[sqlite3.Row]] = {}
    for start in range(0, len(user_ids), CHUNK):
        chunk = user_ids[start:start + CHUNK]
        for r in conn.execute(sql.format(ids=marks(len(chunk))), chunk):
            found.setdefault(r[0], []).append(r)
    return found


def user_row(row: sqlite3.Row) -> User:
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


def device_row(row: sqlite3.Row) -> Device:
    return Device(
        device_id=row["device_id"],
        owner_id=row["owner_id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        revoked=bool(row["revoked"]),
    )


def message_row(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        server_id=row["server_id"],
        client_id=row["client_id"],
        sender=row["sender"],
        to=row["recipient"],
        group=row["group_id"],
        conversation=row["conversation"],
        body=json_object(row["body"]),
        ts=row["ts"],
        reply_to=row["reply_to"],
        edited_at=row["edited_at"],
        deleted=bool(row["deleted"]),
    )


def add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> list[str]:
    """Add those of ``columns`` (name: type and constraints) that ``table`` lacks (a database of an earlier
    version); returns their names."""
    have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
    missing = [name for name in columns if name not in have]
    for name in missing:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {columns[name]}")
    return missing


def write_txn(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
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


#: The members' order: by ``position`` (increasing per group as members join), ties (none are made) by user id.
MEMBER_ORDER = "position, user_id"


def load_group(conn: sqlite3.Connection, group_id: str) -> Group | None:
    row = conn.execute(
        "SELECT group_id, name, created_by, created_at FROM groups WHERE group_id = ?", (group_id,)
    ).fetchone()
    if row is None:
        return None
    members = tuple(
        GroupMember(user_id=m["user_id"], role=m["role"], joined_at=m["joined_at"])
        for m in conn.execute(
            f"SELECT user_id, role, joined_at FROM group_members WHERE group_id = ? ORDER BY {MEMBER_ORDER}",
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


def require_group(conn: sqlite3.Connection, group_id: str) -> Group:
    group = load_group(conn, group_id)
    if group is None:
        raise NotFoundError(f"no group {group_id!r}")
    return group


class SQLiteBase(Store):
    """``Store`` on one SQLite database file (WAL journal, ``synchronous=FULL``).

    All SQLite work runs on a private single-thread executor that owns the connection,
    so the event loop never blocks on disk and operations never interleave; checkpoints run on a
    thread of their own (``Checkpointer``), never inside a commit. Methods
    called before ``start()`` or after ``stop()`` raise ``StoreError``; so does any
    SQLite failure (the operation's transaction is then rolled back).
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        # Only touched on the executor's thread (and by ``start``/``stop`` through it).
        self._conn: sqlite3.Connection | None = None
        self._checkpointer = Checkpointer(self._path)
        self._known_users: set[str] = set()
        """User ids seen to exist (``SQLiteUsers.existing_user_ids``), until ``delete_user`` starts."""
        self._deletions = 0
        """``delete_user`` calls begun: a lookup begun before one is not remembered."""

    @property
    def path(self) -> Path:
        return self._path

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
        self._checkpointer.start()

    async def stop(self) -> None:
        """Close the connection (after operations already queued) and the executor; idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._checkpointer.stop)
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
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's thread does them
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
            add_columns(conn, "users", {"token_version": "INTEGER NOT NULL DEFAULT 0"})  # a version 1 database
            # commands sent by users over MQTT (issue 14)
            add_columns(conn, "commands", {"requester": "TEXT", "client_id": "TEXT"})
            add_columns(conn, "messages", {"reply_to": "TEXT", "edited_at": "INTEGER",  # a database before version 4
                                           "deleted": "INTEGER NOT NULL DEFAULT 0"})
            add_columns(conn, "pending", {"route_from": "TEXT", "route_to": "TEXT", "route_group": "TEXT"})  # before 6
            if add_columns(conn, "group_members", {"position": "INTEGER NOT NULL DEFAULT 0"}):
                # a database before version 5: number the members in their order until then
                conn.execute(
                    "UPDATE group_members SET position = (SELECT COUNT(*) FROM group_members e"
                    " WHERE e.group_id = group_members.group_id AND (e.joined_at < group_members.joined_at"
                    " OR (e.joined_at = group_members.joined_at AND e.user_id < group_members.user_id)))"
                )
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
        return await self._run(lambda conn: write_txn(conn, fn))

    async def ping(self) -> None:
        """``SELECT 1`` on the store's connection (waits behind the operations queued before it)."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())
