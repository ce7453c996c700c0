"""The MongoDB implementation of ``Store`` (cluster mode), for MongoDB and FerretDB 1.24.

It uses pymongo's asyncio client (``AsyncMongoClient``) with write concern
``w="majority", j=True`` (on a single node "majority" is that node; FerretDB accepts both).
Only features MongoDB and FerretDB 1.24 (SQLite or PostgreSQL backend) both support are
used: plain CRUD, ``$in``/``$or``/``$lt``/``$gt``, ``$set``/``$unset``/``$setOnInsert``/``$max``,
unique and compound indexes on top-level fields. Not used, because FerretDB 1.24 lacks them
or gets them wrong: transactions, ``$lookup``, ``$elemMatch`` with field conditions,
positional (``$``) updates and ``arrayFilters``, ``$pull`` with a condition (silently a
no-op), keys with ``.`` or a leading ``$`` inside documents, and atomic updates (below).

Collections
-----------
- ``users`` ``{_id: user_id, username, display_name, password_hash, created_at, disabled,
  is_admin[, token_version]}``; unique ``username``.
- ``devices`` ``{_id: device_id, owner_id, name, secret_hash, created_at, revoked, ord}``;
  ``(owner_id, created_at)``. ``push_tokens`` ``{_id: token, user_id, platform, created_at,
  ord}``; ``(user_id, created_at)``. ``ord`` is a time-ordered id that breaks ``created_at``
  ties in insertion order (SQLite's ``rowid``).
- ``groups`` ``{_id: group_id, name, created_by, created_at, v, members: [{user_id, role,
  joined_at, position}]}``: members are embedded, ordered by ``position`` (members written before it
  existed have none and go by ``joined_at``, then user id, until ``add_members`` numbers them all),
  so every group change rewrites one document and ``v`` (a version) makes it a compare-and-swap;
  ``members.user_id`` is indexed (multikey on MongoDB; on FerretDB's SQLite backend that index never
  matches an array and queries scan, which is correct, only slower).
- ``messages`` ``{_id: server_id, client_id, sender, to, group, conversation, body, ts[, text]}``;
  ``(conversation, _id)``, and on MongoDB a text index on ``text`` (the body's text, for search:
  ``chatmq.services.store.mongo.search``): history, only ever inserted into on the hot path. (Documents with
  ``committed: false`` from the earlier scheme are hidden from history.)
- ``accepting`` ``{_id: server_id, <the message's fields>, pending: [<its pending items>]}``: the
  messages being accepted right now, each deleted (by ``_id``) once stored: a small working set.
- ``client_ids`` ``{_id: "<len(sender)>:<sender>:<client_id>", sid, ts}``: the dedupe claims, one
  per stored (sender, client_id), naming the message's server id and ts. The sender's length
  first makes the key unambiguous whatever characters the ids hold. Never deleted.
- ``pending`` ``{_id: "<len(user)>:<user>:<item_id>", seq, user_id, item_id, kind, envelope}``;
  ``(user_id, seq)``, ``item_id``. The ``_id`` is the unique (user, item) key, so that a receipt
  finds and removes an item by ``_id`` alone. (Items of the earlier shape, ``_id`` = seq, are
  rewritten on ``start()``.)
- ``presence`` ``{_id: user_id, node, epoch}``; ``(node, epoch)``: the session registry.
- ``presence_states`` ``{_id: user_id, state, since, visibility}``: announced presence and its privacy.
- ``user_sessions`` ``{_id: user_id, clients: [{client_id, first_seen, last_seen}]}`` and ``device_marks``
  ``{_id: "<pending key>:<client_id>", user_id, item_id, client_id}``; ``(user_id, client_id)``: a user's
  devices and the pending items each device of a user with several has had
  (``chatmq.services.store.mongo.sessions``). Read and written by ``_id`` on the message path.
- ``shadow_versions`` ``{_id: "<len(device)>:<device>:<version>", desired, reported, version, updated_at}``
  and ``shadows`` ``{_id: device_id, <the same>}``: device shadows (JSON text), each version inserted once
  (the insert decides a compare-and-swap, across processes on FerretDB too), ``shadows`` a copy of the
  newest; ``_id`` lookups only (``chatmq.services.store.mongo.shadows``).
- ``commands`` ``{_id: command_id, device_id, name, params, persistent, status, created_at, expires_at, result,
  error, requester, client_id}``; ``(device_id, created_at)``: commands for devices
  (``chatmq.services.store.mongo.commands``).
- ``jobs`` ``{_id: job_id, owner_id, document, created_at, canceled}`` and ``job_executions`` ``{_id:
  "<len(job)>:<job>:<device>", job_id, device_id, status, progress, details, updated_at}``; ``job_id``
  (``chatmq.services.store.mongo.jobs``).
- ``device_status`` ``{_id: device_id, online, node, epoch, connected_at, last_seen, disconnect_reason}``.
- ``device_owed`` ``{_id: device_id, commands: [ids], jobs: [ids]}``: the persistent commands and jobs a
  device has not finished, read at its connect by ``_id`` (``chatmq.services.store.mongo.device_owed``).
- ``conversation_heads``, ``conversation_state``: each conversation's latest message (replaced once per
  conversation per accepted batch: the one write ``accept_messages`` adds) and users' read markers and
  mutes (``chatmq.services.store.mongo.conversations``).
- ``blocks``, ``contacts``, ``phones``, ``phone_hashes``: who blocks whom, contact lists, verified phone
  numbers and the keyed hashes of other numbers (``chatmq.services.store.mongo.social``).
- ``seq_blocks`` ``{_id: block (15-digit zero-padded text), n, at}`` and ``counters``
  ``{_id: "pending_seq", b}``: the seq allocator (below).
Message bodies and envelopes are stored as JSON text (as in SQLite): client JSON may hold keys
MongoDB documents cannot (``"a.b"``, ``"$x"``), and text round-trips exactly.

Atomicity on FerretDB 1.24
--------------------------
FerretDB 1.x has no multi-document transactions, and its updates are not atomic either: an
``update``/``findAndModify`` reads the matching documents, applies the operators in Go and
writes each one back with an unconditional ``UPDATE … WHERE _id = ?``. So ``$inc`` loses
increments under concurrency (50 concurrent ``$inc`` gave 3), and a filter such as
``{_id, v: 5}`` is not re-checked at write time, so several "compare-and-swap" writers all
win. What is atomic there, as on MongoDB: an insert against a unique index, and a delete
(each removed document is counted by exactly one caller). Hence:

- **Seqs** (strictly increasing per store, across processes) are not a ``$inc`` counter.
  A writer reserves a *block* ``b`` by inserting ``{_id: b}`` into ``seq_blocks`` and uses
  seqs ``b * 2**20 + 1 ..``. Blocks are taken in order: a writer tries one past the last block
  it saw (its own last one, or the ``counters`` hint when its memory is older than a minute);
  on a duplicate key it gallops up and binary-searches the first free block. Taken blocks
  are therefore always contiguous, so a new block is above every earlier one. The hint is
  kept with ``$max`` every 64 blocks (a lost hint update only costs a few probes); blocks
  more than 65,536 behind and ten minutes old are pruned, which keeps the hint above them.
- **Group changes, user flags, device revocation, push-token upserts** are read-modify-write
  under the store's ``asyncio.Lock``, and group changes compare-and-swap on ``v``. With one
  writer process (or any number of processes on real MongoDB, where the CAS holds) they are
  exact. Races with several writer processes on FerretDB: two concurrent changes of one group
  may lose one (an added member missing, a removed member back, a promotion lost, or a
  deletion of an emptied group racing an ``add_members`` that then writes to nothing); two
  concurrent flag changes of one user may lose one; two processes revoking one device may
  both get True. Renames use ``find_one_and_update`` (atomic on MongoDB).
- **Accepting messages** writes, per new message, a *record* first: the message with the pending
  items it owes (each with its reserved seq), inserted into ``accepting``. Then it *claims* the
  message's (sender, client_id) by inserting its ``client_ids`` document: that insert against the
  unique ``_id`` is the dedupe decision, atomic across processes. Then the pending items are
  inserted, then the history row into ``messages`` (``insert_many(ordered=False)``, duplicate keys
  skipped, so re-inserting is harmless), then the record is deleted from ``accepting``. A lost
  claim (duplicate key) means another writer stored that (sender, client_id) first: its claim names
  the winner's server id and ts, which are the result, as a duplicate; if the winner's record is
  still in ``accepting`` the loser finishes it (the same steps, from the record). The loser's own
  record, which nothing points to, is deleted. There is no lookup before the inserts, and nothing
  reads or updates ``messages``: a resend costs a claim read and a record inserted and deleted
  again, a new message nothing extra. The record goes before the claim, so a claim always names a
  record that is either in ``accepting`` or finished; the claim goes before the pending items
  because a retried message gets a *new* server id (``chatmq.services.chat.acceptance`` makes one
  per attempt): pending items written before the claim could be orphans no retry finds or removes.

Crash windows of ``accept_messages`` (the process dies, or the connection fails and
``StoreError`` is raised, between steps):

1. Before any record is inserted: nothing was stored; a retry starts over.
2. After some records, before their claims: the records sit in ``accepting``, unclaimed and
   invisible; no pending item exists for them. A retry starts over with new server ids; the
   orphaned records stay behind (garbage a crash leaves in a small collection, no harm).
3. After the claims, before or during the pending inserts: some pending items may already be in
   recipients' queues, nothing is in history. A retry of the same (sender, client_id) (the
   router's, or the client's resend) loses the claim, finds the record in ``accepting`` through it,
   inserts its pending items (the same ``_id``; those already there are skipped), its history row,
   deletes the record, and returns it as a duplicate: the sender is acked with the first server
   id, recipients get the message from their pending queue (replayed on their next subscribe, not
   live). Nothing is lost and nothing is stored twice; if no retry ever comes (the client is gone
   for good) the message stays out of history while recipients whose items were written see it.
4. After the pending inserts, before the history row or the record's deletion: as 3.
5. After the deletion: done; a retry is a plain duplicate.
A server id already used by another message (the history insert hits the ``_id``) fails the
batch with ``StoreError``; everything the call inserted (claims, pending items, history rows,
records) is deleted again by ``_id``.

``StoreError`` therefore does not always mean "no effect" here: it means "not done yet; a
retry with the same (sender, client_id) completes it" (the worker retries retriable errors, and
a client with no ``ack`` resends). ``add_notices`` is idempotent per ``(user_id, item_id)`` in
the same way.

Speed on FerretDB 1.24 (SQLite backend)
----------------------------------------
FerretDB pushes a filter down to SQLite only when it is exactly ``{_id: <string or
ObjectId>}``, and never a sort. Any other filter (``{_id: {$in: ...}}``, ``{_id: x,
committed: true}``, ``{sender, client_id}``, an integer ``_id``) reads and decodes the whole
collection in Go: 40 ms at 1,000 documents, 645 ms at 20,000. Even the pushed-down filter is a
scan, only a cheaper one: FerretDB's query says ``_ferretdb_sjson->'$._id'`` while its ``_id``
index is on ``_ferretdb_sjson->"_id"``, so SQLite does not use the index (``explain`` shows
``SCAN``) and a ``find_one`` by ``_id`` of a recent document took 115 ms at 20,000 documents
(1 ms when the document is among the first rows). What does not scan: inserts (the unique
indexes are checked through the index). So the hot path touches only inserts, and reads and
deletes by ``_id`` in the small working sets:

- ``accept_messages`` decides duplicates by inserting ``client_ids`` documents (no query); it
  reads only for lost claims (resends: the claim, and the winner's record in ``accepting``). It
  inserts into ``messages`` and never reads or updates it, so its cost does not grow with history.
- Receipts (``take_pending``, ``held_routes``) find and delete pending items by their ``_id``, the
  (user, item) key; the routes come from the items, not from ``messages``. Up to ``BY_ID`` ids one
  operation per id, more with one ``$in`` (a scan of ``pending`` in Go: the undelivered items).
- ``existing_user_ids`` and ``user_nodes`` use one operation by ``_id`` per id for up to ``SHORT``
  ids, one ``$in`` operation for more (per id, SQLite scans at ~6 µs a document; ``$in``, one Go
  scan at ~32 µs a document).
- seq blocks have text ids, so probing for a free block is a SQLite scan, not a Go scan.
The single-document reads of one call are issued together (``each``): pymongo runs them on
separate pooled connections. Writes go one after another: FerretDB makes each a SQLite write
transaction, and concurrent ones contend for the write lock (twenty ``update_one`` took
120 ms at once, 14 ms in turn). So the hot-path writes of one store object (the record, claim,
pending and history inserts, the pending, record and notice deletes) take turns on an
``asyncio.Lock``.
Still scanning, off the hot path: ``get_messages`` and ``history`` (the history API, and receipts
for messages no longer pending that the router does not remember), the replay's ``pending``
queries (``pending``, ``remove_notices``, ``pending_copies`` for resends, ``count_pending``: the
collection holds undelivered items only, small while users are online), the group, device and
push-token queries, ``set_offline`` and ``forget_node`` on ``presence``. Real MongoDB uses the
indexes created in ``start()`` for all of them.

On FerretDB 1.24's PostgreSQL backend (``CHATMQ_FERRETDB_BACKEND=postgresql scripts/services.sh
up mongo``) every scalar equality on a top-level field is pushed down (``{_id: x}``, ``{_id: x,
committed: true}``, ``{user_id: u}``; also ``$eq``/``$ne``) as ``_jsonb->'f' @> value``: still a
sequential scan, since the btree indexes FerretDB creates serve ``=`` and not ``@>``, but one in
PostgreSQL on jsonb, without decoding in Go: a ``find_one`` by ``_id`` or by two fields took
1.3–1.9 ms at 1,000 documents and 7 ms at 20,000. ``$in``, ``$lt``/``$gt``, ``$or`` and sorts are
not pushed down and decode the whole collection in Go, slower than on SQLite (an ``$in`` of two
ids: 56 ms at 1,000 documents, 1.1 s at 20,000), so there the per-``_id`` path pays off for far
more than ``SHORT`` ids. Both backends pass the store contract suite and the cluster tests.

Databases written before the ``client_ids`` scheme (with a unique ``(sender, client_id)`` index
on ``messages``, integer seq block ids) are not migrated: a resend of a message stored then is
not recognised, and seq blocks start over at text ids (their seqs would not be above the old
ones). Start such a deployment on a fresh database.
"""

from __future__ import annotations

from chatmq.services.store.mongo.actions import MongoActions
from chatmq.services.store.mongo.commands import MongoCommands
from chatmq.services.store.mongo.device_owed import MongoDeviceOwed
from chatmq.services.store.mongo.device_status import MongoDeviceStatus
from chatmq.services.store.mongo.groups import MongoGroups
from chatmq.services.store.mongo.jobs import MongoJobs
from chatmq.services.store.mongo.messages import MongoMessages
from chatmq.services.store.mongo.pending import MongoPending
from chatmq.services.store.mongo.presence import MongoPresence
from chatmq.services.store.mongo.presence_states import MongoPresenceStates
from chatmq.services.store.mongo.search import MongoSearch
from chatmq.services.store.mongo.shadows import MongoShadows
from chatmq.services.store.mongo.social import MongoSocial
from chatmq.services.store.mongo.users import MongoUsers

__all__ = ['MongoStore']


class MongoStore(MongoUsers, MongoGroups, MongoMessages, MongoActions, MongoPending, MongoPresence, MongoPresenceStates,
                 MongoShadows,
                 MongoDeviceStatus, MongoDeviceOwed, MongoCommands, MongoJobs, MongoSocial, MongoSearch):
    """``Store`` on one MongoDB (or FerretDB 1.24) database.

    ``url`` is a MongoDB connection string; ``database`` the database to use (created on
    first write). ``timeout_ms`` bounds server selection and connecting, so ``start()`` and
    operations against an unreachable server fail with ``StoreError`` instead of hanging.
    Writes always use ``w="majority", j=True`` (overriding ``w``/``journal`` in the URL): an
    ``ack`` means durable. Methods called before ``start()`` or after ``stop()`` raise ``StoreError``; so does any
    MongoDB failure. See the module docstring for atomicity, crash windows and races.
    """
