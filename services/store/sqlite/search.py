"""SQLite store: full-text search over message texts with FTS5.

``message_text`` (an FTS5 table, ``rowid`` = the message's ``rowid`` in ``messages``) holds each message's
``body.text`` string. It is filled off the hot path: accepting a message writes nothing here; each search
first indexes the messages stored since the last one (``search_position``), ``CATCH_UP`` at a time, each
chunk its own transaction so that accepting goes on in between. An edit or a delete of a message already
indexed replaces or removes its row in the same transaction (``reindex``), so a search finds the new text,
not the old; a message whose text was removed (``body.text`` no longer a string) is not returned either.
"""

from __future__ import annotations

import sqlite3

from chatmq.services.store.base import StoredMessage
from chatmq.services.store.sqlite.base import STORED_COLS, SQLiteBase, marks, message_row, unique

#: messages indexed per transaction while a search catches up: 20,000 took 0.26 s of the store's one
#: thread (accepting waits meanwhile), 2,000 about a tenth of that
CATCH_UP = 2_000


def match_query(words: list[str]) -> str:
    """An FTS5 query for every one of ``words``, each quoted (no operator of FTS5's syntax gets through)."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def reindex(conn: sqlite3.Connection, server_id: str) -> None:
    """Index message ``server_id``'s current text again, when it was indexed already (a later catch-up
    indexes the others as they are then): inside the transaction that changed its body."""
    row = conn.execute("SELECT m.rowid FROM messages AS m JOIN search_position AS p ON p.id = 1"
                       " WHERE m.server_id = ? AND m.rowid <= p.last_rowid", (server_id,)).fetchone()
    if row is None:
        return
    conn.execute("DELETE FROM message_text WHERE rowid = ?", (row[0],))
    conn.execute("INSERT INTO message_text (rowid, text) SELECT rowid, json_extract(body, '$.text')"
                 " FROM messages WHERE rowid = ? AND json_type(body, '$.text') = 'text'", (row[0],))


class SQLiteSearch(SQLiteBase):
    """``message_text`` and ``search_position`` (module docstring)."""

    async def _catch_up(self) -> None:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT last_rowid FROM search_position WHERE id = 1").fetchone()
            last = 0 if row is None else int(row[0])
            top = conn.execute("SELECT max(rowid) FROM (SELECT rowid FROM messages WHERE rowid > ? ORDER BY rowid"
                               " LIMIT ?)", (last, CATCH_UP)).fetchone()[0]
            if top is None:
                return 0
            conn.execute("INSERT INTO message_text (rowid, text) SELECT rowid, json_extract(body, '$.text')"
                         " FROM messages WHERE rowid > ? AND rowid <= ? AND json_type(body, '$.text') = 'text'",
                         (last, top))
            conn.execute("INSERT INTO search_position (id, last_rowid) VALUES (1, ?)"
                         " ON CONFLICT (id) DO UPDATE SET last_rowid = excluded.last_rowid", (top,))
            return int(top) - last

        while await self._write(op):
            pass

    async def search_messages(self, user_id: str, groups: list[str], words: list[str], conversation: str | None,
                              limit: int) -> list[StoredMessage]:
        await self._catch_up()
        wanted = unique(groups)
        cols = ", ".join(f"m.{c.strip()}" for c in STORED_COLS.split(","))
        mine = "(m.group_id IS NULL AND (m.sender = ? OR m.recipient = ?))"
        where = f"({mine} OR m.group_id IN ({marks(len(wanted))}))" if wanted else mine
        params: list[object] = [match_query(words), user_id, user_id, *wanted]
        if conversation is not None:
            where += " AND m.conversation = ?"
            params.append(conversation)

        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            rows = conn.execute(
                f"SELECT {cols} FROM message_text AS f JOIN messages AS m ON m.rowid = f.rowid"
                f" WHERE message_text MATCH ? AND {where} AND json_type(m.body, '$.text') = 'text'"
                " ORDER BY m.server_id DESC LIMIT ?", (*params, limit))
            return [message_row(r) for r in rows]

        return await self._run(op)
