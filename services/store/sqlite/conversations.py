"""SQLite store: the conversation list (``conversation_heads``: each conversation's latest message, one
upsert per conversation per accepted batch, in the batch's transaction) and users' read markers and
mutes (``conversation_state``)."""

from __future__ import annotations

import sqlite3

from chatmq.services.store.base import ConversationHead, ConversationState, NewMessage
from chatmq.services.store.common import json_object
from chatmq.services.store.sqlite.base import CHUNK, SQLiteBase, columns, encode_rows, marks, unique


def touch_heads(conn: sqlite3.Connection, messages: list[NewMessage]) -> None:
    """Make each conversation's newest message among ``messages`` (newly stored ones) its head, unless a
    newer one is its head already. Runs inside the accepting transaction."""
    newest: dict[str, NewMessage] = {}
    for m in messages:
        if m.conversation not in newest or m.server_id > newest[m.conversation].server_id:
            newest[m.conversation] = m
    rows = []
    for m in newest.values():
        a, b = sorted((m.sender, m.to)) if m.to is not None else (None, None)
        rows.append((m.conversation, a, b, m.group, m.server_id, m.sender, m.body.decode(), m.ts))
    if not rows:
        return
    conn.execute(
        "INSERT INTO conversation_heads (conversation, a, b, group_id, last_id, last_sender, last_body, last_ts)"
        f" SELECT {columns(8)} FROM json_each(?) WHERE true ON CONFLICT (conversation) DO UPDATE SET"
        " last_id = excluded.last_id, last_sender = excluded.last_sender, last_body = excluded.last_body,"
        " last_ts = excluded.last_ts WHERE excluded.last_id > conversation_heads.last_id", (encode_rows(rows),))


def _head(row: sqlite3.Row) -> ConversationHead:
    return ConversationHead(row["conversation"], row["a"], row["b"], row["group_id"], row["last_id"],
                            row["last_sender"], json_object(row["last_body"]), row["last_ts"])


class SQLiteConversations(SQLiteBase):
    """``conversation_heads`` (conversation key; ``(a, last_id)``, ``(b, last_id)`` indexed) and
    ``conversation_state`` (user, conversation)."""

    async def conversation_heads(self, user_id: str, groups: list[str], before: str | None,
                                 limit: int) -> list[ConversationHead]:
        below = before or "\U0010ffff"

        def op(conn: sqlite3.Connection) -> list[ConversationHead]:
            found = [_head(r) for r in conn.execute(
                "SELECT * FROM conversation_heads WHERE a = ? AND last_id < ? UNION"
                " SELECT * FROM conversation_heads WHERE b = ? AND last_id < ? ORDER BY last_id DESC LIMIT ?",
                (user_id, below, user_id, below, limit))]
            wanted = unique(groups)
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i:i + CHUNK]
                found += [_head(r) for r in conn.execute(
                    f"SELECT * FROM conversation_heads WHERE conversation IN ({marks(len(chunk))}) AND last_id < ?"
                    " ORDER BY last_id DESC LIMIT ?", (*chunk, below, limit))]
            return sorted(found, key=lambda h: h.last_id, reverse=True)[:limit]

        return await self._run(op)

    async def conversation_states(self, user_id: str, conversations: list[str]) -> dict[str, ConversationState]:
        wanted = unique(conversations)

        def op(conn: sqlite3.Connection) -> dict[str, ConversationState]:
            out: dict[str, ConversationState] = {}
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i:i + CHUNK]
                for row in conn.execute(
                        "SELECT conversation, read_up_to, muted FROM conversation_state WHERE user_id = ?"
                        f" AND conversation IN ({marks(len(chunk))})", (user_id, *chunk)):
                    out[row[0]] = ConversationState(row[1], bool(row[2]))
            return out

        return await self._run(op)

    async def readers(self, conversation: str) -> dict[str, str]:
        return await self._run(lambda conn: dict(conn.execute(
            "SELECT user_id, read_up_to FROM conversation_state WHERE conversation = ? AND read_up_to IS NOT NULL",
            (conversation,)).fetchall()))

    async def mark_read(self, user_id: str, conversation: str, up_to: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT read_up_to FROM conversation_state WHERE user_id = ? AND conversation = ?",
                               (user_id, conversation)).fetchone()
            before: str | None = None if row is None else row[0]
            conn.execute("INSERT INTO conversation_state (user_id, conversation, read_up_to) VALUES (?, ?, ?)"
                         " ON CONFLICT (user_id, conversation) DO UPDATE SET read_up_to = excluded.read_up_to"
                         " WHERE read_up_to IS NULL OR excluded.read_up_to > read_up_to",
                         (user_id, conversation, up_to))
            return before

        return await self._write(op)

    async def set_muted(self, user_id: str, conversation: str, muted: bool) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO conversation_state (user_id, conversation, muted) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id, conversation) DO UPDATE SET muted = excluded.muted",
            (user_id, conversation, int(muted))))

    async def unread(self, conversation: str, user_id: str, after: str | None, up_to: str | None,
                     limit: int) -> list[tuple[str, str]]:
        return await self._run(lambda conn: [(r[0], r[1]) for r in conn.execute(
            "SELECT server_id, sender FROM messages WHERE conversation = ? AND server_id > ? AND server_id <= ?"
            " AND sender != ? ORDER BY server_id LIMIT ?",
            (conversation, after or "", up_to or "\U0010ffff", user_id, limit))])
