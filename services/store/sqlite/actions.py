"""SQLite store: message actions (edit, delete, reaction), deduped by sender and client id."""

from __future__ import annotations

import sqlite3

from chatmq.services.store.base import AcceptResult, NewAction
from chatmq.services.store.sqlite.base import SQLiteBase
from chatmq.services.store.sqlite.search import reindex


class SQLiteActions(SQLiteBase):
    """Message actions: a claim in ``actions``, the effect on ``messages`` / ``reactions`` / ``hidden``,
    and the pending items, in one transaction per batch."""

    async def apply_actions(self, actions: list[NewAction]) -> list[AcceptResult]:
        if not actions:
            return []

        def op(conn: sqlite3.Connection) -> list[AcceptResult]:
            results: list[AcceptResult] = []
            for a in actions:
                claimed = conn.execute(
                    "INSERT INTO actions (server_id, client_id, sender, kind, target, ts) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (sender, client_id) DO NOTHING RETURNING 1",
                    (a.server_id, a.client_id, a.sender, a.kind, a.target, a.ts)).fetchone()
                if claimed is None:
                    earlier = conn.execute("SELECT server_id, ts FROM actions WHERE sender = ? AND client_id = ?",
                                           (a.sender, a.client_id)).fetchone()
                    results.append(AcceptResult(earlier["server_id"], earlier["ts"], duplicate=True))
                    continue
                _effect(conn, a)
                conn.executemany(
                    "INSERT OR IGNORE INTO pending (user_id, item_id, kind, envelope) VALUES (?, ?, 'message', ?)",
                    [(user, a.server_id, env.decode()) for user, env in a.envelopes.items()])
                if a.device and a.sender in a.envelopes:  # the sending device has it: only the others get it
                    conn.execute("INSERT OR IGNORE INTO device_marks (user_id, item_id, client_id) VALUES (?, ?, ?)",
                                 (a.sender, a.server_id, a.device))
                results.append(AcceptResult(a.server_id, a.ts, duplicate=False))
            return results

        return await self._write(op)


def _effect(conn: sqlite3.Connection, a: NewAction) -> None:
    """What ``a`` does to its target (every statement by primary key or the ``actions_target`` index)."""
    if a.kind == "edit":
        conn.execute("UPDATE messages SET body = ?, edited_at = ? WHERE server_id = ? AND deleted = 0",
                     (a.body.decode(), a.ts, a.target))
        reindex(conn, a.target)
    elif a.kind == "delete":
        conn.execute("UPDATE messages SET body = '{}', deleted = 1 WHERE server_id = ?", (a.target,))
        reindex(conn, a.target)
        conn.execute("DELETE FROM reactions WHERE server_id = ?", (a.target,))
        # the bodies still waiting in inboxes go too: the message's copies and its edits'
        conn.execute("DELETE FROM pending WHERE kind = 'message' AND (item_id = ? OR item_id IN"
                     " (SELECT server_id FROM actions WHERE target = ? AND kind = 'edit'))", (a.target, a.target))
    elif a.kind == "hide":
        conn.execute("INSERT OR IGNORE INTO hidden (user_id, server_id) VALUES (?, ?)", (a.sender, a.target))
    elif a.kind == "react":
        conn.execute("INSERT OR IGNORE INTO reactions (server_id, user_id, emoji, ts) SELECT ?, ?, ?, ?"
                     " WHERE EXISTS (SELECT 1 FROM messages WHERE server_id = ? AND deleted = 0)",
                     (a.target, a.sender, a.emoji, a.ts, a.target))
    else:
        conn.execute("DELETE FROM reactions WHERE server_id = ? AND user_id = ? AND emoji = ?",
                     (a.target, a.sender, a.emoji))
