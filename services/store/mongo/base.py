"""The MongoDB store's shared machinery: connecting, indexes, seq blocks for pending items, document
conversions. ``chatmq.services.store.mongo``'s docstring describes atomicity, crash windows and speed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar, cast

from pymongo import ASCENDING, TEXT, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from chatmq.core.errors import StoreError
from chatmq.core.ids import now_ms
from chatmq.services.store.base import (
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
from chatmq.services.store.common import body_text, chunks, json_object, text_of
from chatmq.services.store.common import unique as unique  # the store modules import it from here

T = TypeVar("T")
log = logging.getLogger(__name__)
Doc = dict[str, Any]

DUPLICATE_KEY = 11000
#: Values per ``$in`` list / documents per ``$or``.
CHUNK = 500
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
SEQ_KEY = "pending_seq"
#: Single-document reads in flight at once (``each``); pymongo's pool holds 100.
CONCURRENT = 64
#: Lists of ids up to this long are read with one operation by
#: ``_id`` each instead of one ``{_id: {$in: ...}}``. On FerretDB's SQLite backend the first is
#: a scan inside SQLite (its ``_id`` index is not used), about 6 µs a document; the second a
#: scan decoding every document in Go, about 32 µs a document: the crossover is near 5.
SHORT = 4
#: The same crossover for the small working-set collections (``pending``, ``accepting``), whose
#: scans are short: on FerretDB's PostgreSQL backend an ``_id`` equality is a scan in C at about
#: 0.3 µs a document plus a round trip, a ``$in`` a scan decoding every document in Go at about
#: 55 µs a document, so one operation per id pays off for many more ids there.
BY_ID = 32




async def each(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await ``calls`` concurrently, at most ``CONCURRENT`` at a time, and return their results
    in order. pymongo's pool runs them on separate connections: twenty ``find_one`` by ``_id``
    took 9 ms on FerretDB-on-SQLite, against 1 ms for one. For reads only: concurrent writes
    contend for SQLite's write lock and are slower than one after another. Every call runs to
    its end; the first failure is then raised."""
    results: list[T] = []
    it = iter(calls)
    while batch := list(itertools.islice(it, CONCURRENT)):
        done = await asyncio.gather(*batch, return_exceptions=True)
        for r in done:
            if isinstance(r, BaseException):
                raise r
        results += cast(list[T], done)
    return results


def pair_key(first: str, second: str) -> str:
    """One text key for a pair of ids: the first's length first, so that no two pairs give the same
    key whatever characters the ids hold."""
    return f"{len(first)}:{first}:{second}"


def claim_key(sender: str, client_id: str) -> str:
    """The ``_id`` of the ``client_ids`` document of (sender, client_id)."""
    return pair_key(sender, client_id)


def block_id(block: int) -> str:
    """The ``_id`` of seq block ``block`` in ``seq_blocks``: zero-padded text, so that blocks
    sort as numbers and a probe is a string ``_id`` lookup (FerretDB's SQLite backend pushes
    down ``_id`` equality only for strings and ObjectIds; an integer ``_id`` scans)."""
    return f"{block:015d}"


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


@contextlib.contextmanager
def mongo_errors() -> Iterator[None]:
    """Turn pymongo failures (connection, timeout, server errors) into ``StoreError``."""
    try:
        yield
    except PyMongoError as exc:
        raise StoreError(f"mongodb: {exc}") from exc


def write_errors(exc: BulkWriteError) -> list[Mapping[str, Any]]:
    return list(exc.details.get("writeErrors", []))


def user_doc(doc: Doc) -> User:
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


def device_doc(doc: Doc) -> Device:
    return Device(
        device_id=doc["_id"],
        owner_id=doc["owner_id"],
        name=doc["name"],
        secret_hash=doc["secret_hash"],
        created_at=int(doc["created_at"]),
        revoked=bool(doc.get("revoked", False)),
    )


def push_token_doc(doc: Doc) -> PushToken:
    return PushToken(
        user_id=doc["user_id"], platform=doc["platform"], token=doc["_id"], created_at=int(doc["created_at"])
    )


def member_docs(doc: Doc) -> list[Doc]:
    """The group document's members in the group's order: by ``position``, then (members written before
    positions were, which have none) by ``joined_at``, then user id."""
    return sorted(doc.get("members", []),
                  key=lambda m: (int(m.get("position", 0)), int(m["joined_at"]), str(m["user_id"])))


def group_doc(doc: Doc) -> Group:
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
            for m in member_docs(doc)
        ),
    )


def history_doc(m: NewMessage | StoredMessage) -> Doc:
    """The ``messages`` document of ``m`` (``message_doc`` reads it back). Message actions add ``edited_at``,
    ``edits`` (the edits' server ids), ``deleted``, ``reactions`` (``[{"u": user, "e": emoji}]``, in the order
    given) and ``hidden_for`` (users who deleted it for themselves); ``text`` is the body's text, for search."""
    doc: Doc = {"_id": m.server_id, "client_id": m.client_id, "sender": m.sender, "to": m.to, "group": m.group,
                "conversation": m.conversation, "body": body_text(m.body), "ts": m.ts}
    if m.reply_to is not None:
        doc["reply_to"] = m.reply_to
    text = text_of(m.body)
    if text is not None:
        doc["text"] = text  # the body's text, for search
    return doc


def message_doc(doc: Doc) -> StoredMessage:
    reactions: dict[str, list[str]] = {}
    for r in doc.get("reactions") or ():
        reactions.setdefault(str(r["e"]), []).append(str(r["u"]))
    edited_at = doc.get("edited_at")
    return StoredMessage(
        server_id=doc["_id"],
        client_id=doc["client_id"],
        sender=doc["sender"],
        to=doc.get("to"),
        group=doc.get("group"),
        conversation=doc["conversation"],
        body=json_object(doc["body"]),
        ts=int(doc["ts"]),
        reply_to=doc.get("reply_to"),
        edited_at=None if edited_at is None else int(edited_at),
        deleted=bool(doc.get("deleted", False)),
        reactions=reactions,
    )


def pending_key(user_id: str, item_id: str) -> str:
    """The ``_id`` of a pending item: its (user, item id), so that a receipt finds and removes it by
    ``_id`` alone."""
    return pair_key(user_id, item_id)


def pending_doc(seq: int, user_id: str, item_id: str, kind: str, envelope: str) -> Doc:
    return {"_id": pending_key(user_id, item_id), "seq": seq, "user_id": user_id, "item_id": item_id,
            "kind": kind, "envelope": envelope}


def pending_item_doc(doc: Doc) -> PendingItem:
    return PendingItem(
        seq=int(doc["seq"]),
        item_id=doc["item_id"],
        kind=cast(Literal["message", "notice"], doc["kind"]),
        envelope=str(doc["envelope"]).encode(),
    )


class MongoBase(Store):
    """What every part of ``MongoStore`` (``chatmq.services.store.mongo``, whose docstring describes the
    arguments and guarantees) shares: the client and database, the locks, seq blocks."""

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
        # Whether the server has text indexes (MongoDB) or not (FerretDB 1.24): set by ``start()``.
        self.text_index = False

    @property
    def database(self) -> str:
        return self._database

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
            await self._migrate_pending(db)
            self.text_index = await self._create_text_index(db)
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
        # a pending item's ``_id`` is its (user, item id) key (``pending_key``); its seq a field
        await db.pending.create_index([("user_id", ASCENDING), ("seq", ASCENDING)], name="user_by_seq")
        await db.pending.create_index([("item_id", ASCENDING)], name="item")
        await db.device_marks.create_index([("user_id", ASCENDING), ("client_id", ASCENDING)], name="device")
        await db.user_sessions.create_index([("clients.last_seen", ASCENDING)], name="last_seen")  # device expiry
        await db.presence.create_index([("node", ASCENDING), ("epoch", ASCENDING)], name="node_epoch")
        await db.commands.create_index([("device_id", ASCENDING), ("created_at", ASCENDING)], name="device")
        await db.job_executions.create_index([("job_id", ASCENDING)], name="job")
        await db.refresh_spent.create_index([("expires_at", ASCENDING)], name="expiry")
        await db.refresh_revoked.create_index([("expires_at", ASCENDING)], name="expiry")
        await db.conversation_heads.create_index([("a", ASCENDING)], name="a")
        await db.conversation_heads.create_index([("b", ASCENDING)], name="b")
        await db.conversation_state.create_index([("user_id", ASCENDING)], name="user")
        await db.conversation_state.create_index([("conversation", ASCENDING)], name="conversation")
        await db.blocks.create_index([("blocker", ASCENDING)], name="blocker")
        await db.blocks.create_index([("blocked", ASCENDING)], name="blocked")
        await db.contacts.create_index([("owner", ASCENDING)], name="owner")
        await db.contacts.create_index([("contact", ASCENDING)], name="contact")
        await db.phones.create_index([("user_id", ASCENDING)], unique=True, name="user_unique")
        await db.phone_hashes.create_index([("owner", ASCENDING)], name="owner")

    @staticmethod
    async def _create_text_index(db: AsyncDatabase[Doc]) -> bool:
        """The text index of message texts, for search; False where the server has none (FerretDB 1.24
        refuses it: ``chatmq.services.store.mongo.search`` then matches with ``$regex``)."""
        try:
            await db.messages.create_index([("text", TEXT)], name="text", default_language="none")
        except OperationFailure as exc:
            log.info("no text index on %s (%s): search matches substrings by scanning", db.name, exc)
            return False
        return True

    @staticmethod
    async def _migrate_pending(db: AsyncDatabase[Doc]) -> None:
        """Rewrite pending items of the earlier shape (``_id`` = seq, no ``seq`` field) to ``pending_doc``:
        the new document first, then the old one deleted, so that a crash midway loses nothing (the
        next start finishes; a copy already there is skipped)."""
        coll = db.pending
        if await coll.find_one({"seq": {"$exists": False}}) is None:
            return
        with contextlib.suppress(OperationFailure):  # the old unique (user_id, item_id): the new ``_id`` holds both
            await coll.drop_index("user_item_unique")
        async for old in coll.find({"seq": {"$exists": False}}):
            new = pending_doc(int(old["_id"]), old["user_id"], old["item_id"], old["kind"], old["envelope"])
            with contextlib.suppress(DuplicateKeyError):
                await coll.insert_one(new)
            await coll.delete_one({"_id": old["_id"]})

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

    async def ping(self) -> None:
        """The server's ``ping`` command; ``StoreError`` when it does not answer or the store is closed."""
        if self._client is None:
            raise StoreError("the store is not started")
        with mongo_errors():
            await self._client.admin.command("ping")

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
                hint = await counters.find_one({"_id": SEQ_KEY})
                start = 1 if hint is None else int(hint["b"]) + 1
                self._next_block = max(start, self._next_block or 1)
                probed = True
            block = self._next_block
            while True:
                try:
                    await blocks.insert_one({"_id": block_id(block), "n": used, "at": now_ms()})
                    break
                except DuplicateKeyError:
                    block = await self._first_free_block(blocks, block + 1)
                    probed = True
            self._next_block, self._next_block_at = block + 1, now_ms()
        if probed or block % _HINT_EVERY == 0:
            with contextlib.suppress(DuplicateKeyError):  # a concurrent first upsert: the hint is a hint
                await counters.update_one({"_id": SEQ_KEY}, {"$max": {"b": block}}, upsert=True)
        if block % _PRUNE_EVERY == 0 and block > _PRUNE_KEEP:
            old = {"_id": {"$lt": block_id(block - _PRUNE_KEEP)}, "at": {"$lt": now_ms() - _PRUNE_AGE_MS}}
            await blocks.delete_many(old)
        return block

    @staticmethod
    async def _first_free_block(blocks: AsyncCollection[Doc], start: int) -> int:
        """The lowest block number >= ``start`` not taken, given that ``start - 1`` was taken and
        taken blocks are contiguous: gallop up to a free one, then binary-search down."""

        async def taken(block: int) -> bool:
            return await blocks.find_one({"_id": block_id(block)}, {"_id": 1}) is not None

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

    async def _insert_pending(self, docs: list[Doc]) -> set[str]:
        """Insert pending items, skipping those whose (user, item id) is already there; returns the
        ``_id`` of those inserted."""
        return (await self._insert_new("pending", docs))[0]

    async def _insert_new(self, name: str, docs: list[Doc]) -> tuple[set[Any], set[Any]]:
        """Insert ``docs`` into collection ``name``, skipping those whose unique keys are taken;
        returns the ``_id`` of the documents inserted and of those skipped."""
        coll = self._coll(name)
        inserted: set[Any] = set()
        skipped: set[Any] = set()
        for chunk in chunks(docs, CHUNK):
            ids = [d["_id"] for d in chunk]
            try:
                async with self._writes:
                    await coll.insert_many(list(chunk), ordered=False)
            except BulkWriteError as exc:
                errors = write_errors(exc)
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                failed = {ids[int(e["index"])] for e in errors}
                skipped |= failed
                inserted.update(i for i in ids if i not in failed)
            else:
                inserted.update(ids)
        return inserted, skipped

    async def _find_ids(self, name: str, ids: list[Any]) -> dict[Any, Doc]:
        """The documents of collection ``name`` among ``ids``, by ``_id``: up to ``BY_ID`` ids one
        ``find_one`` each, issued together (``each``), more with ``$in`` queries (for the small
        working-set collections only: on FerretDB a ``$in`` decodes the whole collection in Go)."""
        coll = self._coll(name)
        if len(ids) <= BY_ID:
            return {d["_id"]: d for d in await each(coll.find_one({"_id": i}) for i in ids) if d is not None}
        found: dict[Any, Doc] = {}
        for chunk in chunks(ids, CHUNK):
            async for doc in coll.find({"_id": {"$in": list(chunk)}}):
                found[doc["_id"]] = doc
        return found

    async def _delete_ids(self, name: str, ids: list[Any]) -> None:
        """Delete documents of collection ``name`` by ``_id``: up to ``BY_ID`` one ``delete_one`` each
        (FerretDB pushes a string ``_id`` equality down), more with ``$in`` (a scan in Go: for the
        small working-set collections only)."""
        coll = self._coll(name)
        async with self._writes:
            if len(ids) <= BY_ID:
                for i in ids:
                    await coll.delete_one({"_id": i})
                return
            for chunk in chunks(ids, CHUNK):
                await coll.delete_many({"_id": {"$in": list(chunk)}})
