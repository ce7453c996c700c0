"""The SQLite implementation of ``Store``.

One ``sqlite3`` connection is owned by a dedicated single-thread executor: every
operation is a plain function run there through ``loop.run_in_executor``, so all SQLite
access happens on one thread and operations are serialized. Each write is one
transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``), rolled back on any error.

The chat's hot path (``commit_batch``: a router batch's messages and receipts) runs one statement per
table for the whole batch, over ``json_each`` of one JSON array made on the event loop, so the
store's thread takes Python's GIL a few times per batch rather than per row (the event loop's thread
holds it otherwise; see the ``switch_interval`` setting). The store remembers the user ids it found
(``existing_user_ids``) until ``delete_user`` starts: it is its database's only writer that deletes users.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatmq.services.store.base import AcceptResult, DeviceConfirm, NewMessage, Route
from chatmq.services.store.sqlite.actions import SQLiteActions
from chatmq.services.store.sqlite.base import SCHEMA_VERSION
from chatmq.services.store.sqlite.commands import SQLiteCommands
from chatmq.services.store.sqlite.conversations import SQLiteConversations
from chatmq.services.store.sqlite.device_owed import SQLiteDeviceOwed
from chatmq.services.store.sqlite.device_status import SQLiteDeviceStatus
from chatmq.services.store.sqlite.groups import SQLiteGroups
from chatmq.services.store.sqlite.jobs import SQLiteJobs
from chatmq.services.store.sqlite.messages import SQLiteMessages
from chatmq.services.store.sqlite.pending import SQLitePending
from chatmq.services.store.sqlite.presence import SQLitePresence
from chatmq.services.store.sqlite.presence_states import SQLitePresenceStates
from chatmq.services.store.sqlite.search import SQLiteSearch
from chatmq.services.store.sqlite.sessions import SQLiteSessions
from chatmq.services.store.sqlite.shadows import SQLiteShadows
from chatmq.services.store.sqlite.social import SQLiteSocial
from chatmq.services.store.sqlite.users import SQLiteUsers

__all__ = ['SCHEMA_VERSION', 'SQLiteStore']


class SQLiteStore(SQLiteUsers, SQLiteGroups, SQLiteMessages, SQLiteActions, SQLitePending, SQLiteSessions,
                  SQLitePresence, SQLitePresenceStates,
                  SQLiteShadows, SQLiteDeviceStatus, SQLiteDeviceOwed, SQLiteCommands, SQLiteJobs,
                  SQLiteSocial, SQLiteConversations, SQLiteSearch):
    """``Store`` on one SQLite database file (WAL journal, ``synchronous=FULL``).

    All SQLite work runs on a private single-thread executor that owns the connection,
    so the event loop never blocks on disk and operations never interleave. Methods
    called before ``start()`` or after ``stop()`` raise ``StoreError``; so does any
    SQLite failure (the operation's transaction is then rolled back).
    """

    async def commit_batch(self, messages: list[NewMessage], confirms: list[tuple[str, list[str]]],
                           device_confirms: Sequence[DeviceConfirm] = ()
                           ) -> tuple[list[AcceptResult], list[list[Route]]]:
        """All in one transaction, with one hand-off to the store's thread and one commit."""
        if not messages and not any(ids for _, ids in confirms) and not any(c.ids for c in device_confirms):
            return await self._run(lambda conn: ([], [[] for _ in [*confirms, *device_confirms]]))
        accept, take = self._accept_op(messages), self._routes_op(confirms, remove=True)
        if not device_confirms:
            return await self._write(lambda conn: (accept(conn), take(conn)))
        on_device = self._device_op(list(device_confirms))
        return await self._write(lambda conn: (accept(conn), take(conn) + on_device(conn)))
