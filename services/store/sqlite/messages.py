"""SQLite store: accepting messages (deduped by sender and client id) and reading history."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace

from chatmq.services.store.base import (
    AcceptResult,
    NewMessage,
    StoredMessage,
)
from chatmq.services.store.common import body_text, chunks
from chatmq.services.store.sqlite.base import (
    CHUNK,
    MESSAGE_COLS,
    MESSAGE_MARKS,
    STORED_COLS,
    SQLiteBase,
    columns,
    encode_rows,
    marks,
    message_row,
    unique,
)
from chatmq.services.store.sqlite.conversations import touch_heads

#: The most history rows a new device's first sync reads (``recent_messages``).
SYNC_SCAN = 100_000


def _claims(conn: sqlite3.Connection, messages: list[NewMessage]) -> list[AcceptResult]:
    """What each of ``messages`` came to after an insert that skipped some: stored (its own server id is
    the one stored for its sender and client id, first in the batch) or a duplicate of the stored one."""
    stored: dict[tuple[str, str], tuple[str, int]] = {}
    for r in conn.execute("SELECT sender, client_id, server_id, ts FROM messages WHERE (sender, client_id) IN"
                          f" (SELECT {columns(2)} FROM json_each(?))",
                          (encode_rows([(m.sender, m.client_id) for m in messages]),)):
        stored[(r[0], r[1])] = (r[2], r[3])
    results: list[AcceptResult] = []
    taken: set[str] = set()
    for m in messages:
        server_id, ts = stored[(m.sender, m.client_id)]
        duplicate = server_id != m.server_id or server_id in taken
        taken.add(server_id)
        results.append(AcceptResult(server_id=server_id, ts=ts, duplicate=duplicate))
    return results


def _followers(stored: list[NewMessage]) -> tuple[str, str]:
    """The pending items (each with its route) and the sending device's marks of ``stored``, newly stored
    messages, each as ``encode_rows``'s JSON ("" for none)."""
    pending = [(user, m.server_id, env.decode(), m.sender, m.to, m.group)
               for m in stored for user, env in m.envelopes.items()]
    marked = [(m.sender, m.server_id, m.device) for m in stored if m.device and m.sender in m.envelopes]
    return (encode_rows(pending) if pending else "", encode_rows(marked) if marked else "")


class SQLiteMessages(SQLiteBase):
    """Accepting messages (deduped by sender and client id) and reading history."""

    async def accept_messages(self, messages: list[NewMessage]) -> list[AcceptResult]:
        """Store a batch in one transaction (see ``Store.accept_messages``). A ``server_id``
        already used by a different message fails the whole batch with ``StoreError``."""
        if not messages:
            return await self._run(lambda conn: [])
        return await self._write(self._accept_op(messages))

    def _accept_op(self, messages: list[NewMessage]) -> Callable[[sqlite3.Connection], list[AcceptResult]]:
        """``accept_messages`` as a function of the connection, to run inside a write transaction.

        The batch goes to SQLite as a few statements, each over all its rows (``json_each`` of one JSON
        array made here, on the event loop): the store's thread takes Python's GIL a few times per batch
        instead of a few times per message, which the event loop would otherwise wait for."""
        rows = encode_rows([(m.server_id, m.client_id, m.sender, m.to, m.group, m.conversation, m.body.decode(),
                             m.ts, m.reply_to) for m in messages])
        all_stored = _followers(messages)  # what goes with the messages when none is a resend (the usual case)

        def op(conn: sqlite3.Connection) -> list[AcceptResult]:
            # the insert against UNIQUE (sender, client_id) is the dedupe decision: only when it skipped
            # some (a resend) are the earlier messages read
            inserted = conn.execute(f"INSERT INTO messages ({MESSAGE_COLS}) SELECT {columns(9)} FROM json_each(?)"
                                    " WHERE true ORDER BY key ON CONFLICT (sender, client_id) DO NOTHING",
                                    (rows,)).rowcount
            if inserted == len(messages):
                results = [AcceptResult(server_id=m.server_id, ts=m.ts, duplicate=False) for m in messages]
                claimed, (pending, marked) = messages, all_stored
            else:
                results = _claims(conn, messages)
                claimed = [m for m, r in zip(messages, results, strict=True) if not r.duplicate]
                pending, marked = _followers(claimed)
            if pending:  # with its route: a receipt takes it without parsing the envelope
                conn.execute("INSERT OR IGNORE INTO pending (user_id, item_id, kind, envelope, route_from, route_to,"
                             f" route_group) SELECT {columns(2)}, 'message', {columns(4, 2)} FROM json_each(?)"
                             " ORDER BY key", (pending,))
            if marked:  # the sender's copy is for its other devices: the sending one has it
                conn.execute("INSERT OR IGNORE INTO device_marks (user_id, item_id, client_id)"
                             f" SELECT {columns(3)} FROM json_each(?)", (marked,))
            touch_heads(conn, claimed)
            return results

        return op

    async def import_messages(self, messages: Sequence[StoredMessage]) -> None:
        """One ``executemany`` in one transaction (``UNIQUE (sender, client_id)`` is the claim)."""
        rows = [(m.server_id, m.client_id, m.sender, m.to, m.group, m.conversation, body_text(m.body), m.ts,
                 m.reply_to) for m in messages]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT INTO messages ({MESSAGE_COLS}) VALUES ({MESSAGE_MARKS})", rows)

        await self._write(op)

    async def get_messages(self, server_ids: list[str]) -> list[StoredMessage]:
        """The stored messages among ``server_ids``, in the order of ``server_ids`` (repeats once)."""
        ids = unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            found: dict[str, StoredMessage] = {}
            for chunk in chunks(ids, CHUNK):
                for r in conn.execute(
                    f"SELECT {STORED_COLS} FROM messages WHERE server_id IN ({marks(len(chunk))})", chunk
                ):
                    found[r["server_id"]] = message_row(r)
            return [found[i] for i in ids if i in found]

        return await self._run(op)

    async def history(self, conversation: str, before: str | None, limit: int,
                      viewer: str | None = None) -> list[StoredMessage]:
        """One query for the page (the messages ``viewer`` hid by the ``hidden`` primary key), one for
        the page's reactions."""
        where = "conversation = ?" + ("" if before is None else " AND server_id < ?")
        args: list[object] = [conversation] if before is None else [conversation, before]
        if viewer is not None:
            where += " AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.server_id = messages.server_id)"
            args.append(viewer)

        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            if limit <= 0:
                return []
            rows = [message_row(r) for r in conn.execute(
                f"SELECT {STORED_COLS} FROM messages WHERE {where} ORDER BY server_id DESC LIMIT ?", (*args, limit))]
            reactions: dict[str, dict[str, list[str]]] = {}
            for chunk in chunks([m.server_id for m in rows], CHUNK):
                for r in conn.execute(f"SELECT server_id, emoji, user_id FROM reactions WHERE server_id IN"
                                      f" ({marks(len(chunk))}) ORDER BY ts, user_id", chunk):
                    reactions.setdefault(r[0], {}).setdefault(r[1], []).append(r[2])
            return [replace(m, reactions=reactions[m.server_id]) if m.server_id in reactions else m for m in rows]

        return await self._run(op)

    async def recent_messages(self, user_id: str, groups: list[str], after: str, limit: int,
                              before: str | None = None) -> list[StoredMessage]:
        """By the primary key's range above ``after`` (server ids are time-ordered), newest first, over
        at most ``SYNC_SCAN`` rows: a bounded read whatever the history holds."""
        gids = unique(groups)[:CHUNK]

        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            in_groups = f" OR group_id IN ({marks(len(gids))})" if gids else ""
            rows = conn.execute(
                f"SELECT {STORED_COLS} FROM (SELECT {STORED_COLS} FROM messages WHERE server_id > ?"
                f" AND server_id < ? ORDER BY server_id DESC LIMIT ?) WHERE (group_id IS NULL AND (sender = ?"
                f" OR recipient = ?)){in_groups} ORDER BY server_id DESC LIMIT ?",
                (after, before or "g", SYNC_SCAN, user_id, user_id, *gids, limit)).fetchall()
            return [message_row(r) for r in reversed(rows)]

        return await self._run(op) if limit > 0 else []

    async def count_messages(self) -> int:
        return await self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]))
