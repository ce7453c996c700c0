"""SQLite store: what waits for a user: pending messages until its ``delivered`` receipt, and notices."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Literal, cast

import msgspec

from chatmq.services.store.base import (
    DeviceConfirm,
    PendingItem,
    Route,
)
from chatmq.services.store.common import chunks, in_order, route_of
from chatmq.services.store.sqlite.base import (
    CHUNK,
    SQLiteBase,
    columns,
    encode_rows,
    marks,
    unique,
)

_ROUTES = msgspec.json.Decoder(list[tuple[str, str, str, str | None, str | None]])

# a pending message's route (``route_of``'s arguments but the user): stored with it since schema version 6, else
# (an older row, an action's copy) read out of its stored envelope by SQLite
ROUTE_COLS = ("item_id, COALESCE(route_from, envelope ->> '$.from'),"
              " CASE WHEN route_from IS NULL THEN envelope ->> '$.to' ELSE route_to END,"
              " CASE WHEN route_from IS NULL THEN envelope ->> '$.group' ELSE route_group END")


class SQLitePending(SQLiteBase):
    """What waits for a user: pending messages until its ``delivered`` receipt, and notices."""

    async def add_notices(self, notices: list[tuple[str, str, bytes]]) -> None:
        """Append notice items in one transaction. An ``item_id`` the user already has pending
        (of either kind) is skipped, so re-adding the same notice is harmless."""
        rows = [(user, item_id, env.decode()) for user, item_id, env in notices]

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
                    envelope=r["envelope"].encode(),
                )
                for r in conn.execute(
                    "SELECT seq, item_id, kind, envelope FROM pending WHERE user_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (user_id, after_seq, limit),
                )
            ]

        return await self._run(op)

    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, bytes]]:
        ids = unique(server_ids)

        def op(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows: list[tuple[int, str, str]] = []
            for chunk in chunks(ids, CHUNK):
                rows.extend((r[0], r[1], r[2]) for r in conn.execute(
                    f"SELECT seq, user_id, envelope FROM pending WHERE kind = 'message'"
                    f" AND item_id IN ({marks(len(chunk))})", chunk).fetchall())
            return [(user, env.encode()) for _seq, user, env in sorted(rows)]

        return await self._run(op)

    async def take_pending(self, wanted: list[tuple[str, list[str]]]) -> list[list[Route]]:
        """Remove every user's items in one transaction (one hop to the store's thread); a user's
        notices with a matching item id are left alone."""
        return await self._routes(wanted, remove=True)

    async def held_routes(self, wanted: list[tuple[str, list[str]]]) -> list[list[Route]]:
        return await self._routes(wanted, remove=False)

    async def _routes(self, wanted: list[tuple[str, list[str]]], *, remove: bool) -> list[list[Route]]:
        if not any(ids for _, ids in wanted):
            return await self._run(lambda conn: [[] for _ in wanted])
        op = self._routes_op(wanted, remove=remove)
        return await (self._write(op) if remove else self._run(op))

    def _routes_op(self, wanted: list[tuple[str, list[str]]], *,
                   remove: bool) -> Callable[[sqlite3.Connection], list[list[Route]]]:
        """``take_pending`` (``remove``) or ``held_routes`` as a function of the connection: one statement
        reads every user's items (their routes as one JSON text: one row, whatever the batch), one removes
        them, so the store's thread takes Python's GIL a few times per batch."""
        asked = [(user, unique(server_ids)) for user, server_ids in wanted]
        pairs = encode_rows([(user, server_id) for user, ids in asked for server_id in ids])

        def op(conn: sqlite3.Connection) -> list[list[Route]]:
            where = ("WHERE kind = 'message' AND (user_id, item_id) IN"
                     f" (SELECT {columns(2)} FROM json_each(?))")
            found: dict[str, list[Route]] = {}
            text = conn.execute(f"SELECT json_group_array(json_array(user_id, {ROUTE_COLS})) FROM pending {where}",
                                (pairs,)).fetchone()[0]
            for user, server_id, sender, to, group in _ROUTES.decode(text):
                found.setdefault(user, []).append(route_of(user, server_id, sender, to, group))
            if remove and found:
                conn.execute(f"DELETE FROM pending {where}", (pairs,))
            return [in_order(ids, found.get(user, ())) for user, ids in asked]

        return op

    async def confirm_on_device(self, wanted: list[DeviceConfirm]) -> list[list[Route]]:
        if not any(c.ids for c in wanted):
            return await self._run(lambda conn: [[] for _ in wanted])
        return await self._write(self._device_op(wanted))

    def _device_op(self, wanted: list[DeviceConfirm]) -> Callable[[sqlite3.Connection], list[list[Route]]]:
        """``confirm_on_device`` as a function of the connection (``commit_batch`` runs it in its
        transaction)."""
        asked = [(c, unique(c.ids)) for c in wanted]

        def op(conn: sqlite3.Connection) -> list[list[Route]]:
            out: list[list[Route]] = []
            for c, ids in asked:
                found: list[Route] = []
                for chunk in chunks(ids, CHUNK):
                    found.extend(route_of(c.user, *r) for r in conn.execute(
                        f"SELECT {ROUTE_COLS} FROM pending WHERE user_id = ? AND kind = 'message'"
                        f" AND item_id IN ({marks(len(chunk))})", (c.user, *chunk)).fetchall())
                held = [r.server_id for r in found]
                conn.executemany("INSERT OR IGNORE INTO device_marks (user_id, item_id, client_id) VALUES (?, ?, ?)",
                                 [(c.user, sid, c.client) for sid in held])
                others = list(c.others)
                for chunk in chunks(held, CHUNK):
                    done = [r[0] for r in conn.execute(
                        f"SELECT item_id FROM device_marks WHERE user_id = ? AND item_id IN ({marks(len(chunk))})"
                        f" AND client_id IN ({marks(len(others))}) GROUP BY item_id HAVING COUNT(*) = ?",
                        (c.user, *chunk, *others, len(others)))] if others else list(chunk)
                    if done:
                        params = (c.user, *done)
                        conn.execute(f"DELETE FROM pending WHERE user_id = ? AND kind = 'message'"
                                     f" AND item_id IN ({marks(len(done))})", params)
                        conn.execute(f"DELETE FROM device_marks WHERE user_id = ? AND item_id IN ({marks(len(done))})",
                                     params)
                out.append(in_order(ids, found))
            return out

        return op

    async def device_has(self, user_id: str, client_id: str, item_ids: list[str]) -> set[str]:
        ids = unique(item_ids)

        def op(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in chunks(ids, CHUNK):
                found.update(r[0] for r in conn.execute(
                    f"SELECT item_id FROM device_marks WHERE user_id = ? AND client_id = ?"
                    f" AND item_id IN ({marks(len(chunk))})", (user_id, client_id, *chunk)))
            return found

        return await self._run(op) if ids else set()

    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        unique_seqs = unique(seqs)

        def op(conn: sqlite3.Connection) -> None:
            for chunk in chunks(unique_seqs, CHUNK):
                conn.execute(
                    f"DELETE FROM pending WHERE user_id = ? AND kind = 'notice'"
                    f" AND seq IN ({marks(len(chunk))})",
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
