"""MongoDB store: accepting messages (deduped by sender and client id) and reading history."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import DESCENDING
from pymongo.errors import BulkWriteError

from chatmq.core.errors import StoreError
from chatmq.services.store.base import (
    AcceptResult,
    NewMessage,
    StoredMessage,
)
from chatmq.services.store.common import chunks
from chatmq.services.store.mongo.base import (
    CHUNK,
    DUPLICATE_KEY,
    SHORT,
    Doc,
    claim_key,
    each,
    history_doc,
    message_doc,
    mongo_errors,
    pending_doc,
    unique,
    write_errors,
)
from chatmq.services.store.mongo.conversations import MongoConversations
from chatmq.services.store.mongo.sessions import mark_doc


class MongoMessages(MongoConversations):
    """Accepting messages (deduped by sender and client id) and reading history."""

    async def accept_messages(self, messages: list[NewMessage]) -> list[AcceptResult]:
        """Store a batch (see ``Store.accept_messages`` and, for what happens without
        transactions, the module docstring). A ``server_id`` already used by a different
        message fails the whole batch with ``StoreError`` before anything visible is written.
        Only inserts, and one delete by ``_id`` in the small ``accepting`` collection: nothing
        reads or updates ``messages``, whatever its size (a resend reads its claim)."""
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
        winners: dict[tuple[str, str], tuple[str, int]] = {}
        with mongo_errors():
            # the sender's copy is for its other devices: the sending one has it (marked first: a mark
            # whose item never comes is harmless)
            await self._insert_new("device_marks", [mark_doc(m.sender, m.server_id, m.device) for m in fresh
                                                    if m.device and m.sender in m.envelopes])
            seqs = iter(await self._reserve_seqs(sum(len(m.envelopes) for m in fresh)))
            records: list[Doc] = [
                {**history_doc(m), "pending": [pending_doc(next(seqs), user, m.server_id, "message", env.decode())
                                               for user, env in m.envelopes.items()]}
                for m in fresh
            ]
            await self._insert_records(records)
            claimed = await self._claim(records, winners)
            await self._finish([r for r in records if r["_id"] in claimed], fresh=True)
            await self._touch_heads([m for m in fresh if m.server_id in claimed])

        results: list[AcceptResult] = []
        for i, m in enumerate(messages):
            key = (m.sender, m.client_id)
            if key in winners:
                sid, ts = winners[key]
                results.append(AcceptResult(server_id=sid, ts=ts, duplicate=True))
            elif first[key] == i:
                results.append(AcceptResult(server_id=m.server_id, ts=m.ts, duplicate=False))
            else:
                earlier = messages[first[key]]
                results.append(AcceptResult(server_id=earlier.server_id, ts=earlier.ts, duplicate=True))
        return results

    async def _insert_records(self, records: list[Doc]) -> None:
        """Insert the message records (with their pending items) into ``accepting``, all or none:
        when a server id is taken there, the records this call inserted are deleted again (no
        claim points to them yet) and ``StoreError`` is raised."""
        coll = self._coll("accepting")
        inserted: list[str] = []
        for chunk in chunks(records, CHUNK):
            try:
                async with self._writes:
                    await coll.insert_many(list(chunk), ordered=False)
            except BulkWriteError as exc:
                errors = write_errors(exc)
                failed = {int(e["index"]) for e in errors}
                inserted += [r["_id"] for i, r in enumerate(chunk) if i not in failed]
                await self._drop_records(inserted)
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                clash = chunk[min(failed)]["_id"]
                raise StoreError(f"server id {clash!r} is already used by another message") from exc
            inserted += [r["_id"] for r in chunk]

    async def _drop_records(self, sids: list[str]) -> None:
        """Delete these records from ``accepting``."""
        await self._delete_ids("accepting", sids)

    async def _claim(self, records: list[Doc], winners: dict[tuple[str, str], tuple[str, int]]) -> set[str]:
        """Claim each record's (sender, client_id) by inserting its ``client_ids`` document; returns
        the server ids whose claim this call won. A lost claim means another writer stored that
        (sender, client_id) first: its server id and ts go into ``winners`` (its message finished
        if its record is still in ``accepting``) and this call's record is deleted (nothing points
        to it)."""
        claims = self._coll("client_ids")
        won = {r["_id"] for r in records}
        lost: list[Doc] = []
        for chunk in chunks(records, CHUNK):
            docs = [{"_id": claim_key(r["sender"], r["client_id"]), "sid": r["_id"], "ts": r["ts"]} for r in chunk]
            try:
                async with self._writes:
                    await claims.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                errors = write_errors(exc)
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                lost += [chunk[int(e["index"])] for e in errors]
        if not lost:
            return won
        keys = [(r["sender"], r["client_id"]) for r in lost]
        found = await each(claims.find_one({"_id": claim_key(*key)}) for key in keys)
        for record, claim in zip(lost, found, strict=True):
            if claim is None:  # claims are never deleted
                raise StoreError(f"the claim of {(record['sender'], record['client_id'])!r} vanished")
        accepting = self._coll("accepting")
        unfinished = await each(accepting.find_one({"_id": claim["sid"]}) for claim in found if claim is not None)
        await self._finish([doc for doc in unfinished if doc is not None])
        for key, record, claim in zip(keys, lost, found, strict=True):
            assert claim is not None
            ts = claim.get("ts")
            if ts is None:  # a claim written before claims carried the ts
                earlier = await self._coll("messages").find_one({"_id": claim["sid"]}, {"ts": 1})
                if earlier is None:
                    raise StoreError(f"the message {claim['sid']!r} of claim {key!r} is missing")
                ts = earlier["ts"]
            winners[key] = (str(claim["sid"]), int(ts))
            won.discard(record["_id"])
        await self._drop_records([r["_id"] for r in lost if r["_id"] not in won])
        return won

    async def _finish(self, records: list[Doc], *, fresh: bool = False) -> None:
        """Complete claimed records: their pending items, then their history rows, then drop them
        from ``accepting``. Each step skips what is already there, so finishing twice is harmless
        (a retry, or a resend racing the first attempt). For this call's own ``fresh`` records, a
        history row already there under the same server id that is another message's (``_clashes``)
        fails the batch: everything the call wrote is deleted again (by ``_id``: claims, pending items,
        rows) and ``StoreError`` raised, so that the batch fails as a whole."""
        if not records:
            return
        items = await self._insert_pending([p for r in records for p in r["pending"]])
        rows = [{k: v for k, v in r.items() if k != "pending"} for r in records]
        inserted, skipped = await self._insert_new("messages", rows)
        clashes = await self._clashes([r for r in rows if r["_id"] in skipped]) if fresh else []
        if clashes:
            await self._delete_ids("messages", sorted(inserted))
            await self._delete_ids("pending", sorted(items))
            await self._delete_ids("client_ids", [claim_key(r["sender"], r["client_id"]) for r in records])
            await self._drop_records([r["_id"] for r in records])
            raise StoreError(f"server id {min(clashes)!r} is already used by another message")
        await self._drop_records([r["_id"] for r in records])

    async def _clashes(self, rows: list[Doc]) -> list[str]:
        """The server ids of ``rows`` (history rows found already there) held by another message. The
        same message is there when a resend racing this call finished it first (a read by ``_id`` of
        ``messages``, only in such a race or a clash)."""
        coll = self._coll("messages")
        found = await each(coll.find_one({"_id": r["_id"]}, {"sender": 1, "client_id": 1}) for r in rows)
        return [r["_id"] for r, doc in zip(rows, found, strict=True)
                if doc is None or (doc["sender"], doc["client_id"]) != (r["sender"], r["client_id"])]

    async def import_messages(self, messages: Sequence[StoredMessage]) -> None:
        """``insert_many`` of the claims, then of the history rows, ``CHUNK`` documents at a time."""
        self._coll("messages")  # StoreError when not started
        with mongo_errors():
            for chunk in chunks(messages, CHUNK):
                claims = [{"_id": claim_key(m.sender, m.client_id), "sid": m.server_id, "ts": m.ts} for m in chunk]
                async with self._writes:
                    await self._coll("client_ids").insert_many(claims)
                    await self._coll("messages").insert_many([history_doc(m) for m in chunk])

    async def get_messages(self, server_ids: list[str]) -> list[StoredMessage]:
        """The stored messages among ``server_ids``, in the order of ``server_ids`` (repeats once):
        up to ``SHORT`` ids one ``find_one`` by ``_id`` each, concurrently (records of the earlier
        scheme marked ``committed: false`` are skipped), more with one ``$in`` query."""
        coll = self._coll("messages")
        ids = unique(server_ids)
        with mongo_errors():
            if len(ids) <= SHORT:
                docs = await each(coll.find_one({"_id": sid}) for sid in ids)
                return [message_doc(d) for d in docs if d is not None and d.get("committed", True)]
            found: dict[str, StoredMessage] = {}
            for chunk in chunks(ids, CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}, "committed": {"$ne": False}}):
                    found[doc["_id"]] = message_doc(doc)
        return [found[i] for i in ids if i in found]

    async def history(self, conversation: str, before: str | None, limit: int,
                      viewer: str | None = None) -> list[StoredMessage]:
        """Reactions ride in the message documents; ``viewer``'s hidden ones are left out by ``hidden_for``."""
        coll = self._coll("messages")
        if limit <= 0:
            return []
        query: Doc = {"conversation": conversation, "committed": {"$ne": False}}
        if before is not None:
            query["_id"] = {"$lt": before}
        if viewer is not None:
            query["hidden_for"] = {"$ne": viewer}
        with mongo_errors():
            cursor = coll.find(query).sort("_id", DESCENDING).limit(limit)
            return [message_doc(doc) async for doc in cursor]

    async def recent_messages(self, user_id: str, groups: list[str], after: str, limit: int,
                              before: str | None = None) -> list[StoredMessage]:
        """A range of ``_id`` (server ids are time-ordered: MongoDB walks its ``_id`` index from
        ``after``; FerretDB scans), filtered to the user's messages, newest first."""
        coll = self._coll("messages")
        if limit <= 0:
            return []
        mine: list[Doc] = [{"sender": user_id, "group": None}, {"to": user_id}]
        if groups:
            mine.append({"group": {"$in": unique(groups)[:CHUNK]}})
        ids: Doc = {"$gt": after} if before is None else {"$gt": after, "$lt": before}
        query: Doc = {"_id": ids, "committed": {"$ne": False}, "$or": mine}
        with mongo_errors():
            cursor = coll.find(query).sort("_id", DESCENDING).limit(limit)
            return [message_doc(doc) async for doc in cursor][::-1]

    async def count_messages(self) -> int:
        """The collection's document count from its metadata (``estimated_document_count``: no scan);
        records a crash left in ``accepting`` are not counted."""
        messages = self._coll("messages")
        with mongo_errors():
            return await messages.estimated_document_count()
