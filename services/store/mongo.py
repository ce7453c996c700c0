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
  joined_at}]}``: members are embedded, so every group change rewrites one document and
  ``v`` (a version) makes it a compare-and-swap; ``members.user_id`` is indexed (multikey on
  MongoDB; on FerretDB's SQLite backend that index never matches an array and queries scan,
  which is correct, only slower).
- ``messages`` ``{_id: server_id, client_id, sender, to, group, conversation, body, ts,
  committed[, pending]}``; ``(conversation, _id)``. ``_id`` is its only unique key.
- ``client_ids`` ``{_id: "<len(sender)>:<sender>:<client_id>", sid}``: the dedupe claims, one
  per stored (sender, client_id), pointing at the message's server id. The sender's length
  first makes the key unambiguous whatever characters the ids hold. Never deleted.
- ``pending`` ``{_id: seq, user_id, item_id, kind, envelope}``; unique ``(user_id, item_id)``,
  ``(user_id, _id)`` (the ``_id`` is the seq).
- ``presence`` ``{_id: user_id, node, epoch}``; ``(node, epoch)``: the session registry.
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
- **Accepting messages** writes, per new message, a *commit record* first: the message
  document with ``committed: false`` and, inside it, the pending items it owes (each with
  its reserved seq). Then it *claims* the message's (sender, client_id) by inserting its
  ``client_ids`` document: that insert against the unique ``_id`` is the dedupe decision,
  atomic across processes. Then the pending items are inserted (``insert_many(ordered=False)``,
  duplicate keys ignored, so re-inserting is harmless), then ``committed`` is set and the
  embedded list dropped (one ``update_one`` by ``_id`` per message). History and
  ``get_messages`` show committed messages only. A lost claim (duplicate key) means another
  writer stored that (sender, client_id) first: its ``client_ids`` document names the winner,
  which is the result, as a duplicate (and is finished if still uncommitted); the loser's own
  record, which nothing points to, is deleted. There is no lookup before the inserts: a resend
  costs a record inserted and deleted again, a new message nothing extra. The record goes
  before the claim, so a claim always names an existing record; the claim goes before the
  pending items because a retried message gets a *new* server id
  (``chatmq.services.chat.acceptance`` makes one per attempt): pending items written before the
  claim could be orphans no retry finds or removes.

Crash windows of ``accept_messages`` (the process dies, or the connection fails and
``StoreError`` is raised, between steps):

1. Before any record is inserted: nothing was stored; a retry starts over.
2. After some records, before their claims: the records are invisible (not committed) and
   unclaimed; no pending item exists for them. A retry starts over with new server ids; the
   orphaned records stay behind, invisible (garbage a crash leaves, no harm).
3. After the claims, before or during the pending inserts: the records are invisible and some
   pending items may already be in recipients' queues. A retry of the same (sender, client_id)
   (the router's, or the client's resend) loses the claim, finds the record through it,
   inserts its pending items (the same seqs; those already there are skipped), commits it, and
   returns it as a duplicate: the sender is acked with the first server id, recipients get the
   message from their pending queue (replayed on their next subscribe, not live). Nothing is
   lost and nothing is stored twice; if no retry ever comes (the client is gone for good) the
   message stays invisible in history while recipients whose items were written still see it.
4. After the pending inserts, before the commit: as 3, with every pending item present.
5. After the commit: done; a retry is a plain duplicate.
A server id already used by another message (the record insert hits the ``_id``) fails the
batch with ``StoreError``; the records this call inserted are deleted first (no claim points
to them yet), so nothing visible was written.

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
indexes are checked through the index). So the hot path:

- ``accept_messages`` decides duplicates by inserting ``client_ids`` documents (no query; the
  old ``{sender, client_id}``/``$in`` lookup scanned ``messages`` in Go once per batch); it
  reads only for lost claims (resends).
- The commit, ``get_messages``, ``existing_user_ids`` and ``nodes_of`` use one operation by
  ``_id`` per id for up to ``_SHORT`` ids, one ``$in`` operation for more (per id, SQLite scans
  at ~6 µs a document; ``$in``, one Go scan at ~32 µs a document).
- seq blocks have text ids, so probing for a free block is a SQLite scan, not a Go scan.
The single-document reads of one call are issued together (``_each``): pymongo runs them on
separate pooled connections. Writes go one after another: FerretDB makes each a SQLite write
transaction, and concurrent ones contend for the write lock (twenty ``update_one`` took
120 ms at once, 14 ms in turn). So the hot-path writes of one store object (the message,
claim and pending inserts, the commits, the pending and notice deletes) take turns on an
``asyncio.Lock``, also across concurrent calls: the router issues one ``remove_pending`` per
user of a batch at once.
Still scanning: the commit and ``get_messages`` (``messages`` grows without bound, so their
cost still grows with it), the ``pending`` queries (``pending``, ``remove_pending``,
``pending_copies``, ``remove_notices``, ``count_pending``: the collection holds undelivered items
only, small while users are online), ``history`` and the group, device and push-token queries,
``set_offline`` and ``forget_node`` on ``presence``. Real MongoDB uses the indexes created in
``start()`` for all of them. Making the commit and ``get_messages`` independent of the size of
``messages`` takes keeping uncommitted records and recently accepted messages in small
collections of their own (not done).

On FerretDB 1.24's PostgreSQL backend (``CHATMQ_FERRETDB_BACKEND=postgresql scripts/services.sh
up mongo``) every scalar equality on a top-level field is pushed down (``{_id: x}``, ``{_id: x,
committed: true}``, ``{user_id: u}``; also ``$eq``/``$ne``) as ``_jsonb->'f' @> value``: still a
sequential scan, since the btree indexes FerretDB creates serve ``=`` and not ``@>``, but one in
PostgreSQL on jsonb, without decoding in Go: a ``find_one`` by ``_id`` or by two fields took
1.3–1.9 ms at 1,000 documents and 7 ms at 20,000. ``$in``, ``$lt``/``$gt``, ``$or`` and sorts are
not pushed down and decode the whole collection in Go, slower than on SQLite (an ``$in`` of two
ids: 56 ms at 1,000 documents, 1.1 s at 20,000), so there the per-``_id`` path pays off for far
more than ``_SHORT`` ids. Both backends pass the store contract suite and the cluster tests.

Databases written before the ``client_ids`` scheme (with a unique ``(sender, client_id)`` index
on ``messages``, integer seq block ids) are not migrated: a resend of a message stored then is
not recognised, and seq blocks start over at text ids (their seqs would not be above the old
ones). Start such a deployment on a fresh database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar, cast

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from chatmq.core.errors import ConflictError, NotFoundError, StoreError
from chatmq.core.ids import now_ms, server_id
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

__all__ = ["MongoStore"]

T = TypeVar("T")
Doc = dict[str, Any]

_DUPLICATE_KEY = 11000
#: Values per ``$in`` list / documents per ``$or``.
_CHUNK = 500
#: Seqs of block ``b`` are ``b << _BLOCK_BITS`` + 1 .. + ``_BLOCK_SIZE - 1``.
_BLOCK_BITS = 20
_BLOCK_SIZE = 1 << _BLOCK_BITS
#: How long a writer trusts its own memory of the next free block before re-reading the hint.
_BLOCK_MEMORY_MS = 60_000
#: The hint is raised every this many blocks (and whenever a writer had to probe).
_HINT_EVERY = 64
#: Pruning runs every ``_PRUNE_EVERY`` blocks and removes blocks that are both more than
#: ``_PRUNE_KEEP`` blocks behind and older than ``_PRUNE_AGE_MS``.
_PRUNE_EVERY = 4096
_PRUNE_KEEP = 65_536
_PRUNE_AGE_MS = 600_000
#: Compare-and-swap attempts on a group before giving up with ``StoreError``.
_CAS_ATTEMPTS = 50
_SEQ_KEY = "pending_seq"
#: Single-document reads in flight at once (``_each``); pymongo's pool holds 100.
_CONCURRENT = 64
#: Lists of ids up to this long are read (and messages committed) with one operation by
#: ``_id`` each instead of one ``{_id: {$in: ...}}``. On FerretDB's SQLite backend the first is
#: a scan inside SQLite (its ``_id`` index is not used), about 6 µs a document; the second a
#: scan decoding every document in Go, about 32 µs a document: the crossover is near 5.
_SHORT = 4




def _unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(items))


async def _each(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await ``calls`` concurrently, at most ``_CONCURRENT`` at a time, and return their results
    in order. pymongo's pool runs them on separate connections: twenty ``find_one`` by ``_id``
    took 9 ms on FerretDB-on-SQLite, against 1 ms for one. For reads only: concurrent writes
    contend for SQLite's write lock and are slower than one after another. Every call runs to
    its end; the first failure is then raised."""
    results: list[T] = []
    it = iter(calls)
    while batch := list(itertools.islice(it, _CONCURRENT)):
        done = await asyncio.gather(*batch, return_exceptions=True)
        for r in done:
            if isinstance(r, BaseException):
                raise r
        results += cast(list[T], done)
    return results


def _claim_key(sender: str, client_id: str) -> str:
    """The ``_id`` of the ``client_ids`` document of (sender, client_id): the sender's length
    first, so that no two pairs give the same key whatever characters the ids hold."""
    return f"{len(sender)}:{sender}:{client_id}"


def _block_id(block: int) -> str:
    """The ``_id`` of seq block ``block`` in ``seq_blocks``: zero-padded text, so that blocks
    sort as numbers and a probe is a string ``_id`` lookup (FerretDB's SQLite backend pushes
    down ``_id`` equality only for strings and ObjectIds; an integer ``_id`` scans)."""
    return f"{block:015d}"


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


@contextlib.contextmanager
def _mongo_errors() -> Iterator[None]:
    """Turn pymongo failures (connection, timeout, server errors) into ``StoreError``."""
    try:
        yield
    except PyMongoError as exc:
        raise StoreError(f"mongodb: {exc}") from exc


def _write_errors(exc: BulkWriteError) -> list[Mapping[str, Any]]:
    return list(exc.details.get("writeErrors", []))


def _user(doc: Doc) -> User:
    return User(
        user_id=doc["_id"],
        username=doc["username"],
        display_name=doc.get("display_name"),
        password_hash=doc["password_hash"],
        created_at=int(doc["created_at"]),
        disabled=bool(doc.get("disabled", False)),
        is_admin=bool(doc.get("is_admin", False)),
        token_version=int(doc.get("token_version", 0)),
    )


def _device(doc: Doc) -> Device:
    return Device(
        device_id=doc["_id"],
        owner_id=doc["owner_id"],
        name=doc["name"],
        secret_hash=doc["secret_hash"],
        created_at=int(doc["created_at"]),
        revoked=bool(doc.get("revoked", False)),
    )


def _push_token(doc: Doc) -> PushToken:
    return PushToken(
        user_id=doc["user_id"], platform=doc["platform"], token=doc["_id"], created_at=int(doc["created_at"])
    )


def _member_docs(doc: Doc) -> list[Doc]:
    """The group document's members, by ``joined_at`` then user id."""
    return sorted(doc.get("members", []), key=lambda m: (int(m["joined_at"]), str(m["user_id"])))


def _group(doc: Doc) -> Group:
    return Group(
        group_id=doc["_id"],
        name=doc["name"],
        created_by=doc["created_by"],
        created_at=int(doc["created_at"]),
        members=tuple(
            GroupMember(
                user_id=m["user_id"],
                role=cast(Literal["admin", "member"], m["role"]),
                joined_at=int(m["joined_at"]),
            )
            for m in _member_docs(doc)
        ),
    )


def _message(doc: Doc) -> StoredMessage:
    return StoredMessage(
        server_id=doc["_id"],
        client_id=doc["client_id"],
        sender=doc["sender"],
        to=doc.get("to"),
        group=doc.get("group"),
        conversation=doc["conversation"],
        body=json_object(doc["body"]),
        ts=int(doc["ts"]),
    )


def _pending_item(doc: Doc) -> PendingItem:
    return PendingItem(
        seq=int(doc["_id"]),
        item_id=doc["item_id"],
        kind=cast(Literal["message", "notice"], doc["kind"]),
        envelope=json_object(doc["envelope"]),
    )


class MongoStore(Store):
    """``Store`` on one MongoDB (or FerretDB 1.24) database.

    ``url`` is a MongoDB connection string; ``database`` the database to use (created on
    first write). ``timeout_ms`` bounds server selection and connecting, so ``start()`` and
    operations against an unreachable server fail with ``StoreError`` instead of hanging.
    Writes always use ``w="majority", j=True`` (overriding ``w``/``journal`` in the URL): an
    ``ack`` means durable. Methods called before ``start()`` or after ``stop()`` raise ``StoreError``; so does any
    MongoDB failure. See the module docstring for atomicity, crash windows and races.
    """

    def __init__(self, url: str, database: str = "chatmq", *, timeout_ms: int = 10_000) -> None:
        self._url = url
        self._database = database
        self._timeout_ms = timeout_ms
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None
        # Serializes read-modify-write operations (see the module docstring).
        self._lock = asyncio.Lock()
        # Serializes seq block reservations of this store object.
        self._seq_lock = asyncio.Lock()
        # Serializes this store object's hot-path writes (see "Speed" in the module docstring).
        self._writes = asyncio.Lock()
        self._next_block: int | None = None
        self._next_block_at = 0

    @property
    def database(self) -> str:
        return self._database

    # lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, ping and create the indexes. Starting a started store does nothing.

        ``StoreError`` (naming the URL, without its password) when the server cannot be
        reached or the URL is invalid.
        """
        if self._client is not None:
            return
        where = _redact(self._url)
        try:
            client: AsyncMongoClient[Doc] = AsyncMongoClient(
                self._url,
                w="majority",
                journal=True,
                serverSelectionTimeoutMS=self._timeout_ms,
                connectTimeoutMS=self._timeout_ms,
                appname="chatmq",
            )
        except (PyMongoError, ValueError, TypeError) as exc:
            raise StoreError(f"invalid MongoDB URL {where}: {exc}") from exc
        try:
            await client.admin.command("ping")
        except PyMongoError as exc:
            await client.close()
            raise StoreError(f"cannot reach MongoDB at {where}: {exc}") from exc
        db = client[self._database]
        try:
            await self._create_indexes(db)
        except PyMongoError as exc:
            await client.close()
            raise StoreError(f"cannot create indexes in {self._database!r} at {where}: {exc}") from exc
        except BaseException:
            await client.close()
            raise
        self._lock = asyncio.Lock()
        self._seq_lock = asyncio.Lock()
        self._writes = asyncio.Lock()
        self._next_block = None
        self._client, self._db = client, db

    @staticmethod
    async def _create_indexes(db: AsyncDatabase[Doc]) -> None:
        await db.users.create_index([("username", ASCENDING)], unique=True, name="username_unique")
        await db.devices.create_index([("owner_id", ASCENDING), ("created_at", ASCENDING)], name="owner")
        await db.push_tokens.create_index([("user_id", ASCENDING), ("created_at", ASCENDING)], name="user")
        await db.groups.create_index([("members.user_id", ASCENDING)], name="member")
        await db.messages.create_index([("conversation", ASCENDING), ("_id", ASCENDING)], name="conversation")
        await db.pending.create_index(
            [("user_id", ASCENDING), ("item_id", ASCENDING)], unique=True, name="user_item_unique"
        )
        await db.pending.create_index([("user_id", ASCENDING), ("_id", ASCENDING)], name="user_seq")
        await db.pending.create_index([("item_id", ASCENDING)], name="item")
        await db.presence.create_index([("node", ASCENDING), ("epoch", ASCENDING)], name="node_epoch")

    async def stop(self) -> None:
        """Close the connection pool; idempotent. Operations still running fail with ``StoreError``."""
        client, self._client, self._db = self._client, None, None
        if client is not None:
            await client.close()

    def _coll(self, name: str) -> AsyncCollection[Doc]:
        db = self._db
        if db is None:
            raise StoreError("the store is not started")
        return db[name]

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
        users = self._coll("users")
        with _mongo_errors():
            try:
                await users.insert_one(
                    {
                        "_id": user_id,
                        "username": username,
                        "display_name": display_name,
                        "password_hash": password_hash,
                        "created_at": user.created_at,
                        "disabled": False,
                        "is_admin": is_admin,
                    }
                )
            except DuplicateKeyError as exc:
                raise ConflictError(f"username {username!r} or user id {user_id!r} is taken") from exc
        return user

    async def get_user(self, user_id: str) -> User | None:
        users = self._coll("users")
        with _mongo_errors():
            doc = await users.find_one({"_id": user_id})
        return None if doc is None else _user(doc)

    async def get_user_by_username(self, username: str) -> User | None:
        users = self._coll("users")
        with _mongo_errors():
            doc = await users.find_one({"username": username})
        return None if doc is None else _user(doc)

    async def user_ids_by_usernames(self, usernames: list[str]) -> dict[str, str]:
        users = self._coll("users")
        found: dict[str, str] = {}
        with _mongo_errors():
            for chunk in chunks(_unique(usernames), _CHUNK):
                async for doc in users.find({"username": {"$in": list(chunk)}}, {"username": 1}):
                    found[doc["username"]] = doc["_id"]
        return found

    async def existing_user_ids(self, user_ids: list[str]) -> set[str]:
        users = self._coll("users")
        found: set[str] = set()
        ids = _unique(user_ids)
        with _mongo_errors():
            if len(ids) <= _SHORT:
                docs = await _each(users.find_one({"_id": u}, {"_id": 1}) for u in ids)
                return {d["_id"] for d in docs if d is not None}
            for chunk in chunks(ids, _CHUNK):
                async for doc in users.find({"_id": {"$in": list(chunk)}}, {"_id": 1}):
                    found.add(doc["_id"])
        return found

    async def set_user_flags(
        self, user_id: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> None:
        """Change the given flags (``None`` leaves one as is); ``NotFoundError`` for an unknown user."""
        users = self._coll("users")
        changes: Doc = {}
        if disabled is not None:
            changes["disabled"] = disabled
        if is_admin is not None:
            changes["is_admin"] = is_admin
        with _mongo_errors():
            async with self._lock:
                if changes:
                    found = (await users.update_one({"_id": user_id}, {"$set": changes})).matched_count > 0
                else:
                    found = await users.find_one({"_id": user_id}, {"_id": 1}) is not None
        if not found:
            raise NotFoundError(f"no user {user_id!r}")

    async def ping(self) -> None:
        """The server's ``ping`` command; ``StoreError`` when it does not answer or the store is closed."""
        if self._client is None:
            raise StoreError("the store is not started")
        with _mongo_errors():
            await self._client.admin.command("ping")

    async def count_users(self) -> int:
        users = self._coll("users")
        with _mongo_errors():
            return await users.count_documents({})

    async def revoke_tokens(self, user_id: str) -> int:
        """``$inc`` under the store's lock: on FerretDB two processes revoking at once may raise the
        version once instead of twice, which still revokes every token issued before either."""
        users = self._coll("users")
        with _mongo_errors():
            async with self._lock:
                doc = await users.find_one_and_update(
                    {"_id": user_id}, {"$inc": {"token_version": 1}}, return_document=ReturnDocument.AFTER,
                )  # no projection: FerretDB 1.24's findAndModify does not take one
        if doc is None:
            raise NotFoundError(f"no user {user_id!r}")
        return int(doc["token_version"])

    async def list_users(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[User]:
        users = self._coll("users")
        query: Doc = {"username": {"$gt": after or ""}}
        if prefix:
            query = {"$and": [query, {"username": {"$regex": "^" + re.escape(prefix)}}]}
        with _mongo_errors():
            cursor = users.find(query).sort([("username", ASCENDING)]).limit(limit)
            return [_user(doc) async for doc in cursor]

    # push tokens ----------------------------------------------------------------
    async def add_push_token(self, user_id: str, platform: str, token: str) -> PushToken:
        """Register ``token`` for ``user_id``; a token held by anyone (even another user) is
        re-registered: it moves to ``user_id`` with the new platform and a fresh ``created_at``."""
        tokens = self._coll("push_tokens")
        pt = PushToken(user_id=user_id, platform=platform, token=token, created_at=now_ms())
        update = {
            "$set": {"user_id": user_id, "platform": platform, "created_at": pt.created_at},
            "$setOnInsert": {"ord": server_id()},
        }
        with _mongo_errors():
            async with self._lock:
                try:
                    await tokens.update_one({"_id": token}, update, upsert=True)
                except DuplicateKeyError:
                    # another process inserted the token between our lookup and insert: update it
                    await tokens.update_one({"_id": token}, update, upsert=True)
        return pt

    async def remove_push_token(self, user_id: str, token: str) -> bool:
        tokens = self._coll("push_tokens")
        with _mongo_errors():
            return (await tokens.delete_one({"_id": token, "user_id": user_id})).deleted_count > 0

    async def push_tokens(self, user_id: str) -> list[PushToken]:
        """The user's tokens, oldest registration first."""
        tokens = self._coll("push_tokens")
        with _mongo_errors():
            cursor = tokens.find({"user_id": user_id}).sort([("created_at", ASCENDING), ("ord", ASCENDING)])
            return [_push_token(doc) async for doc in cursor]

    # devices --------------------------------------------------------------------
    async def create_device(self, device_id: str, owner_id: str, name: str, secret_hash: str) -> Device:
        """Insert a device; ``ConflictError`` when ``device_id`` exists."""
        devices = self._coll("devices")
        device = Device(
            device_id=device_id, owner_id=owner_id, name=name, secret_hash=secret_hash, created_at=now_ms()
        )
        with _mongo_errors():
            try:
                await devices.insert_one(
                    {
                        "_id": device_id,
                        "owner_id": owner_id,
                        "name": name,
                        "secret_hash": secret_hash,
                        "created_at": device.created_at,
                        "revoked": False,
                        "ord": server_id(),
                    }
                )
            except DuplicateKeyError as exc:
                raise ConflictError(f"device {device_id!r} exists") from exc
        return device

    async def get_device(self, device_id: str) -> Device | None:
        """The device, revoked or not."""
        devices = self._coll("devices")
        with _mongo_errors():
            doc = await devices.find_one({"_id": device_id})
        return None if doc is None else _device(doc)

    async def list_devices(self, owner_id: str) -> list[Device]:
        devices = self._coll("devices")
        with _mongo_errors():
            cursor = devices.find({"owner_id": owner_id, "revoked": False}).sort(
                [("created_at", ASCENDING), ("ord", ASCENDING)]
            )
            return [_device(doc) async for doc in cursor]

    async def revoke_device(self, owner_id: str, device_id: str) -> bool:
        devices = self._coll("devices")
        with _mongo_errors():
            async with self._lock:
                result = await devices.update_one(
                    {"_id": device_id, "owner_id": owner_id, "revoked": False}, {"$set": {"revoked": True}}
                )
        return result.matched_count > 0

    # groups ---------------------------------------------------------------------
    async def create_group(self, group_id: str, name: str, creator: str, members: list[str]) -> Group:
        """Create a group: ``creator`` is admin (joined first), ``members`` follow in the given
        order with strictly increasing ``joined_at``; repeats and the creator are skipped.
        ``ConflictError`` when ``group_id`` exists."""
        groups = self._coll("groups")
        others = [m for m in _unique(members) if m != creator]
        created_at = now_ms()
        doc: Doc = {
            "_id": group_id,
            "name": name,
            "created_by": creator,
            "created_at": created_at,
            "v": 0,
            "members": [
                {"user_id": creator, "role": "admin", "joined_at": created_at},
                *({"user_id": m, "role": "member", "joined_at": created_at + 1 + i} for i, m in enumerate(others)),
            ],
        }
        with _mongo_errors():
            try:
                await groups.insert_one(doc)
            except DuplicateKeyError as exc:
                raise ConflictError(f"group {group_id!r} exists") from exc
        return _group(doc)

    async def get_group(self, group_id: str) -> Group | None:
        groups = self._coll("groups")
        with _mongo_errors():
            doc = await groups.find_one({"_id": group_id})
        return None if doc is None else _group(doc)

    async def groups_of(self, user_id: str) -> list[Group]:
        """The user's groups, oldest (by the group's ``created_at``) first."""
        groups = self._coll("groups")
        with _mongo_errors():
            cursor = groups.find({"members.user_id": user_id}).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            return [_group(doc) async for doc in cursor]

    async def rename_group(self, group_id: str, name: str) -> Group:
        groups = self._coll("groups")
        with _mongo_errors():
            async with self._lock:
                doc = await groups.find_one_and_update(
                    {"_id": group_id},
                    {"$set": {"name": name}, "$inc": {"v": 1}},
                    return_document=ReturnDocument.AFTER,
                )
        if doc is None:
            raise NotFoundError(f"no group {group_id!r}")
        return _group(doc)

    async def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add plain members in the given order, after everyone already in the group (strictly
        later ``joined_at``); returns those added. ``NotFoundError`` when there is no such group."""
        groups = self._coll("groups")
        wanted = _unique(user_ids)
        with _mongo_errors():
            async with self._lock:
                for _ in range(_CAS_ATTEMPTS):
                    doc = await groups.find_one({"_id": group_id})
                    if doc is None:
                        raise NotFoundError(f"no group {group_id!r}")
                    members = _member_docs(doc)
                    present = {m["user_id"] for m in members}
                    new = [u for u in wanted if u not in present]
                    if not new:
                        return []
                    last = max((int(m["joined_at"]) for m in members), default=0)
                    base = max(now_ms(), last + 1)
                    members += [{"user_id": u, "role": "member", "joined_at": base + i} for i, u in enumerate(new)]
                    version = int(doc.get("v", 0))
                    result = await groups.update_one(
                        {"_id": group_id, "v": version}, {"$set": {"members": members, "v": version + 1}}
                    )
                    if result.matched_count:
                        return new
        raise StoreError(f"group {group_id!r} kept changing; try again")

    async def list_groups(self, after: str | None = None, limit: int = 100) -> list[Group]:
        groups = self._coll("groups")
        with _mongo_errors():
            cursor = groups.find({"_id": {"$gt": after or ""}}).sort([("_id", ASCENDING)]).limit(limit)
            return [_group(doc) async for doc in cursor]

    async def delete_group(self, group_id: str) -> Group:
        """Read, then delete by ``_id`` under the store's lock (a concurrent change's compare-and-swap
        then matches nothing and finds the group gone)."""
        groups = self._coll("groups")
        with _mongo_errors():
            async with self._lock:
                doc = await groups.find_one({"_id": group_id})
                if doc is not None:
                    await groups.delete_one({"_id": group_id})
        if doc is None:
            raise NotFoundError(f"no group {group_id!r}")
        return _group(doc)

    async def remove_member(self, group_id: str, user_id: str) -> str | None:
        """Remove a member. When the last admin leaves and members remain, the member with the
        earliest ``joined_at`` (tie: smallest user id) becomes admin and its id is returned;
        otherwise None. An emptied group is deleted. ``NotFoundError`` when not a member."""
        groups = self._coll("groups")
        with _mongo_errors():
            async with self._lock:
                for _ in range(_CAS_ATTEMPTS):
                    doc = await groups.find_one({"_id": group_id})
                    members = [] if doc is None else _member_docs(doc)
                    if doc is None or not any(m["user_id"] == user_id for m in members):
                        raise NotFoundError(f"{user_id!r} is not a member of {group_id!r}")
                    version = int(doc.get("v", 0))
                    remaining = [m for m in members if m["user_id"] != user_id]
                    if not remaining:
                        if (await groups.delete_one({"_id": group_id, "v": version})).deleted_count:
                            return None
                        continue
                    promoted: str | None = None
                    if not any(m["role"] == "admin" for m in remaining):
                        remaining[0] = {**remaining[0], "role": "admin"}
                        promoted = remaining[0]["user_id"]
                    result = await groups.update_one(
                        {"_id": group_id, "v": version}, {"$set": {"members": remaining, "v": version + 1}}
                    )
                    if result.matched_count:
                        return promoted
        raise StoreError(f"group {group_id!r} kept changing; try again")

    # seqs -----------------------------------------------------------------------
    async def _reserve_seqs(self, count: int) -> list[int]:
        """``count`` new seqs, increasing, above every seq reserved before (by anyone)."""
        seqs: list[int] = []
        while len(seqs) < count:
            take = min(count - len(seqs), _BLOCK_SIZE - 1)
            base = (await self._reserve_block(take)) << _BLOCK_BITS
            seqs.extend(range(base + 1, base + 1 + take))
        return seqs

    async def _reserve_block(self, used: int) -> int:
        """Take the next free seq block (see the module docstring) and return its number."""
        blocks, counters = self._coll("seq_blocks"), self._coll("counters")
        async with self._seq_lock:
            probed = False
            if self._next_block is None or now_ms() - self._next_block_at > _BLOCK_MEMORY_MS:
                hint = await counters.find_one({"_id": _SEQ_KEY})
                start = 1 if hint is None else int(hint["b"]) + 1
                self._next_block = max(start, self._next_block or 1)
                probed = True
            block = self._next_block
            while True:
                try:
                    await blocks.insert_one({"_id": _block_id(block), "n": used, "at": now_ms()})
                    break
                except DuplicateKeyError:
                    block = await self._first_free_block(blocks, block + 1)
                    probed = True
            self._next_block, self._next_block_at = block + 1, now_ms()
        if probed or block % _HINT_EVERY == 0:
            with contextlib.suppress(DuplicateKeyError):  # a concurrent first upsert: the hint is a hint
                await counters.update_one({"_id": _SEQ_KEY}, {"$max": {"b": block}}, upsert=True)
        if block % _PRUNE_EVERY == 0 and block > _PRUNE_KEEP:
            old = {"_id": {"$lt": _block_id(block - _PRUNE_KEEP)}, "at": {"$lt": now_ms() - _PRUNE_AGE_MS}}
            await blocks.delete_many(old)
        return block

    @staticmethod
    async def _first_free_block(blocks: AsyncCollection[Doc], start: int) -> int:
        """The lowest block number >= ``start`` not taken, given that ``start - 1`` was taken and
        taken blocks are contiguous: gallop up to a free one, then binary-search down."""

        async def taken(block: int) -> bool:
            return await blocks.find_one({"_id": _block_id(block)}, {"_id": 1}) is not None

        if not await taken(start):
            return start
        low, step = start, 1  # low is taken
        while await taken(low + step):
            low, step = low + step, step * 2
        high = low + step  # free
        while high - low > 1:
            mid = (low + high) // 2
            if await taken(mid):
                low = mid
            else:
                high = mid
        return high

    async def _insert_pending(self, docs: list[Doc]) -> None:
        """Insert pending items, skipping those whose (user, item id) or seq is already there."""
        pending = self._coll("pending")
        for chunk in chunks(docs, _CHUNK):
            try:
                async with self._writes:
                    await pending.insert_many(list(chunk), ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != _DUPLICATE_KEY for e in _write_errors(exc)):
                    raise

    # messages and pending -------------------------------------------------------
    async def accept_messages(self, messages: list[NewMessage]) -> list[AcceptResult]:
        """Store a batch (see ``Store.accept_messages`` and, for what happens without
        transactions, the module docstring). A ``server_id`` already used by a different
        message fails the whole batch with ``StoreError`` before anything visible is written."""
        self._coll("messages")  # StoreError when not started
        if not messages:
            return []
        first: dict[tuple[str, str], int] = {}
        for i, m in enumerate(messages):
            first.setdefault((m.sender, m.client_id), i)
        fresh = [messages[i] for i in first.values()]
        sids = [m.server_id for m in fresh]
        if len(set(sids)) != len(sids):
            raise StoreError("a server id is used twice in the batch")
        winners: dict[tuple[str, str], Doc] = {}
        with _mongo_errors():
            seqs = iter(await self._reserve_seqs(sum(len(m.envelopes) for m in fresh)))
            records: list[Doc] = [
                {
                    "_id": m.server_id,
                    "client_id": m.client_id,
                    "sender": m.sender,
                    "to": m.to,
                    "group": m.group,
                    "conversation": m.conversation,
                    "body": json_text(m.body),
                    "ts": m.ts,
                    "committed": False,
                    "pending": [
                        {
                            "_id": next(seqs),
                            "user_id": user,
                            "item_id": m.server_id,
                            "kind": "message",
                            "envelope": json_text(env),
                        }
                        for user, env in m.envelopes.items()
                    ],
                }
                for m in fresh
            ]
            await self._insert_records(records)
            claimed = await self._claim(records, winners)
            await self._insert_pending([p for r in records if r["_id"] in claimed for p in r["pending"]])
            await self._commit(sorted(claimed))

        results: list[AcceptResult] = []
        for i, m in enumerate(messages):
            key = (m.sender, m.client_id)
            if key in winners:
                doc = winners[key]
                results.append(AcceptResult(server_id=doc["_id"], ts=int(doc["ts"]), duplicate=True))
            elif first[key] == i:
                results.append(AcceptResult(server_id=m.server_id, ts=m.ts, duplicate=False))
            else:
                earlier = messages[first[key]]
                results.append(AcceptResult(server_id=earlier.server_id, ts=earlier.ts, duplicate=True))
        return results

    async def _insert_records(self, records: list[Doc]) -> None:
        """Insert the uncommitted message records, all or none: when a server id is taken (the
        only unique key of ``messages``), the records this call inserted are deleted again (no
        claim points to them yet) and ``StoreError`` is raised."""
        coll = self._coll("messages")
        inserted: list[str] = []
        for chunk in chunks(records, _CHUNK):
            try:
                async with self._writes:
                    await coll.insert_many(list(chunk), ordered=False)
            except BulkWriteError as exc:
                errors = _write_errors(exc)
                failed = {int(e["index"]) for e in errors}
                inserted += [r["_id"] for i, r in enumerate(chunk) if i not in failed]
                for sid in inserted:
                    await coll.delete_one({"_id": sid})
                if any(e.get("code") != _DUPLICATE_KEY for e in errors):
                    raise
                clash = chunk[min(failed)]["_id"]
                raise StoreError(f"server id {clash!r} is already used by another message") from exc
            inserted += [r["_id"] for r in chunk]

    async def _claim(self, records: list[Doc], winners: dict[tuple[str, str], Doc]) -> set[str]:
        """Claim each record's (sender, client_id) by inserting its ``client_ids`` document; returns
        the server ids whose claim this call won. A lost claim means another writer stored that
        (sender, client_id) first: its message goes into ``winners`` (finished if still
        uncommitted) and this call's record is deleted (nothing points to it)."""
        claims = self._coll("client_ids")
        won = {r["_id"] for r in records}
        lost: list[Doc] = []
        for chunk in chunks(records, _CHUNK):
            docs = [{"_id": _claim_key(r["sender"], r["client_id"]), "sid": r["_id"]} for r in chunk]
            try:
                async with self._writes:
                    await claims.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                errors = _write_errors(exc)
                if any(e.get("code") != _DUPLICATE_KEY for e in errors):
                    raise
                lost += [chunk[int(e["index"])] for e in errors]
        if not lost:
            return won
        keys = [(r["sender"], r["client_id"]) for r in lost]
        found = await _each(claims.find_one({"_id": _claim_key(*key)}) for key in keys)
        winner_sids: list[str] = []
        for record, claim in zip(lost, found, strict=True):
            if claim is None:  # claims are never deleted
                raise StoreError(f"the claim of {(record['sender'], record['client_id'])!r} vanished")
            winner_sids.append(claim["sid"])
        coll = self._coll("messages")
        records_won = await _each(coll.find_one({"_id": sid}, {"body": 0}) for sid in winner_sids)
        for key, record, sid, doc in zip(keys, lost, winner_sids, records_won, strict=True):
            if sid == record["_id"]:  # our own claim from an earlier attempt with this very record
                continue
            if doc is None:  # records are inserted before their claim and never deleted after
                raise StoreError(f"the message {sid!r} of claim {key!r} is missing")
            if not doc.get("committed", False):
                await self._finish(doc)
            winners[key] = doc
            won.discard(record["_id"])
        for r in lost:
            if r["_id"] not in won:
                await coll.delete_one({"_id": r["_id"]})
        return won

    async def _commit(self, sids: list[str]) -> None:
        """Mark the records committed and drop their embedded pending lists: up to ``_SHORT``
        records one ``update_one({_id})`` each, one after another (concurrent writes contend for
        SQLite's write lock), more with one ``update_many({_id: {$in: ...}})``."""
        coll = self._coll("messages")
        update = {"$set": {"committed": True}, "$unset": {"pending": ""}}
        async with self._writes:
            if len(sids) <= _SHORT:
                for sid in sids:
                    await coll.update_one({"_id": sid}, update)
                return
            for chunk in chunks(sids, _CHUNK):
                await coll.update_many({"_id": {"$in": list(chunk)}}, update)

    async def _finish(self, doc: Doc) -> None:
        """Complete an uncommitted message record: insert its pending items, then commit it."""
        await self._insert_pending(list(doc.get("pending", [])))
        await self._commit([doc["_id"]])
        doc["committed"] = True

    async def get_messages(self, server_ids: list[str]) -> list[StoredMessage]:
        """The stored messages among ``server_ids``, in the order of ``server_ids`` (repeats once):
        up to ``_SHORT`` ids one ``find_one`` by ``_id`` each, concurrently (uncommitted records
        are skipped here), more with one ``$in`` query."""
        coll = self._coll("messages")
        ids = _unique(server_ids)
        with _mongo_errors():
            if len(ids) <= _SHORT:
                docs = await _each(coll.find_one({"_id": sid}) for sid in ids)
                return [_message(d) for d in docs if d is not None and d.get("committed", False)]
            found: dict[str, StoredMessage] = {}
            for chunk in chunks(ids, _CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}, "committed": True}):
                    found[doc["_id"]] = _message(doc)
        return [found[i] for i in ids if i in found]

    async def history(self, conversation: str, before: str | None, limit: int) -> list[StoredMessage]:
        coll = self._coll("messages")
        if limit <= 0:
            return []
        query: Doc = {"conversation": conversation, "committed": True}
        if before is not None:
            query["_id"] = {"$lt": before}
        with _mongo_errors():
            cursor = coll.find(query).sort("_id", DESCENDING).limit(limit)
            return [_message(doc) async for doc in cursor]

    async def add_notices(self, notices: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Append notice items. An ``item_id`` the user already has pending (of either kind) is
        skipped, so re-adding the same notice is harmless (and a failed call may be retried)."""
        self._coll("pending")  # StoreError when not started
        first: dict[tuple[str, str], dict[str, Any]] = {}
        for user, item_id, env in notices:
            first.setdefault((user, item_id), env)
        rows = list(first.items())
        if not rows:
            return
        with _mongo_errors():
            seqs = await self._reserve_seqs(len(rows))
            await self._insert_pending(
                [
                    {"_id": seq, "user_id": user, "item_id": item_id, "kind": "notice", "envelope": json_text(env)}
                    for seq, ((user, item_id), env) in zip(seqs, rows, strict=True)
                ]
            )

    async def pending(self, user_id: str, after_seq: int, limit: int) -> list[PendingItem]:
        coll = self._coll("pending")
        if limit <= 0:
            return []
        with _mongo_errors():
            cursor = coll.find({"user_id": user_id, "_id": {"$gt": after_seq}}).sort("_id", ASCENDING).limit(limit)
            return [_pending_item(doc) async for doc in cursor]

    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        coll = self._coll("pending")
        docs: list[Doc] = []
        with _mongo_errors():
            for chunk in chunks(_unique(server_ids), _CHUNK):
                docs.extend([d async for d in coll.find({"kind": "message", "item_id": {"$in": list(chunk)}})])
        docs.sort(key=lambda d: int(d["_id"]))
        return [(d["user_id"], json_object(d["envelope"])) for d in docs]

    async def remove_pending(self, user_id: str, server_ids: list[str]) -> list[str]:
        """Remove the user's ``message`` items among ``server_ids``; returns the removed ids in
        the order of ``server_ids`` (notices with a matching item id are left alone). Two
        concurrent calls for the same items may both report them."""
        coll = self._coll("pending")
        ids = _unique(server_ids)
        removed: set[str] = set()
        with _mongo_errors():
            for chunk in chunks(ids, _CHUNK):
                query = {"user_id": user_id, "kind": "message", "item_id": {"$in": list(chunk)}}
                docs = [doc async for doc in coll.find(query, {"item_id": 1})]
                if docs:
                    async with self._writes:
                        await coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}, "user_id": user_id})
                    removed.update(d["item_id"] for d in docs)
        return [i for i in ids if i in removed]

    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        coll = self._coll("pending")
        with _mongo_errors():
            for chunk in chunks(_unique(seqs), _CHUNK):
                async with self._writes:
                    await coll.delete_many({"user_id": user_id, "kind": "notice", "_id": {"$in": list(chunk)}})

    async def count_pending(self, user_id: str | None = None) -> int:
        coll = self._coll("pending")
        query: Doc = {"kind": "message"}
        if user_id is not None:
            query["user_id"] = user_id
        with _mongo_errors():
            return await coll.count_documents(query)

    async def count_messages(self) -> int:
        """The collection's document count from its metadata (``estimated_document_count``: no scan);
        it includes the rare uncommitted records a crash left behind."""
        messages = self._coll("messages")
        with _mongo_errors():
            return await messages.estimated_document_count()

    async def count_devices(self) -> int:
        devices = self._coll("devices")
        with _mongo_errors():
            return await devices.count_documents({"revoked": False})

    # presence -------------------------------------------------------------------
    async def set_online(self, user_id: str, node: str, epoch: int) -> bool:
        """Read, then replace (FerretDB updates are not atomic): exact because one consumer at a
        time writes a user's presence; a lost race on the first insert is a duplicate key."""
        coll = self._coll("presence")
        with _mongo_errors():
            current = await coll.find_one({"_id": user_id}, {"epoch": 1})
            if current is not None and int(current["epoch"]) > epoch:
                return False
            try:
                await coll.replace_one({"_id": user_id}, {"node": node, "epoch": epoch}, upsert=True)
            except DuplicateKeyError:
                return False
        return True

    async def set_offline(self, user_id: str, node: str, epoch: int) -> bool:
        coll = self._coll("presence")
        with _mongo_errors():
            result = await coll.delete_one({"_id": user_id, "node": node, "epoch": {"$lte": epoch}})
        return result.deleted_count == 1

    async def nodes_of(self, user_ids: list[str]) -> dict[str, str]:
        coll = self._coll("presence")
        found: dict[str, str] = {}
        ids = _unique(user_ids)
        with _mongo_errors():
            if len(ids) <= _SHORT:
                docs = await _each(coll.find_one({"_id": u}, {"node": 1}) for u in ids)
                return {d["_id"]: d["node"] for d in docs if d is not None}
            for chunk in chunks(ids, _CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}}, {"node": 1}):
                    found[doc["_id"]] = doc["node"]
        return found

    async def forget_node(self, node: str, before_epoch: int) -> int:
        coll = self._coll("presence")
        with _mongo_errors():
            result = await coll.delete_many({"node": node, "epoch": {"$lt": before_epoch}})
        return result.deleted_count

    async def count_online(self) -> int:
        coll = self._coll("presence")
        with _mongo_errors():
            return await coll.count_documents({})
