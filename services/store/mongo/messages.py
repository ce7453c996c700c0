"""MongoDB store: accepting messages (deduped by sender and client id) and reading history."""

from __future__ import annotations

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
    MongoBase,
    claim_key,
    each,
    message_doc,
    mongo_errors,
    unique,
    write_errors,
)


class MongoMessages(MongoBase):
    """Accepting messages (deduped by sender and client id) and reading history."""

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
        with mongo_errors():
            seqs = iter(await self._reserve_seqs(sum(len(m.envelopes) for m in fresh)))
            records: list[Doc] = [
                {
                    "_id": m.server_id,
                    "client_id": m.client_id,
                    "sender": m.sender,
                    "to": m.to,
                    "group": m.group,
                    "conversation": m.conversation,
                    "body": m.body.decode(),
                    "ts": m.ts,
                    "committed": False,
                    "pending": [
                        {
                            "_id": next(seqs),
                            "user_id": user,
                            "item_id": m.server_id,
                            "kind": "message",
                            "envelope": env.decode(),
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
        for chunk in chunks(records, CHUNK):
            try:
                async with self._writes:
                    await coll.insert_many(list(chunk), ordered=False)
            except BulkWriteError as exc:
                errors = write_errors(exc)
                failed = {int(e["index"]) for e in errors}
                inserted += [r["_id"] for i, r in enumerate(chunk) if i not in failed]
                for sid in inserted:
                    await coll.delete_one({"_id": sid})
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
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
        for chunk in chunks(records, CHUNK):
            docs = [{"_id": claim_key(r["sender"], r["client_id"]), "sid": r["_id"]} for r in chunk]
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
        winner_sids: list[str] = []
        for record, claim in zip(lost, found, strict=True):
            if claim is None:  # claims are never deleted
                raise StoreError(f"the claim of {(record['sender'], record['client_id'])!r} vanished")
            winner_sids.append(claim["sid"])
        coll = self._coll("messages")
        records_won = await each(coll.find_one({"_id": sid}, {"body": 0}) for sid in winner_sids)
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
        """Mark the records committed and drop their embedded pending lists: up to ``SHORT``
        records one ``update_one({_id})`` each, one after another (concurrent writes contend for
        SQLite's write lock), more with one ``update_many({_id: {$in: ...}})``."""
        coll = self._coll("messages")
        update = {"$set": {"committed": True}, "$unset": {"pending": ""}}
        async with self._writes:
            if len(sids) <= SHORT:
                for sid in sids:
                    await coll.update_one({"_id": sid}, update)
                return
            for chunk in chunks(sids, CHUNK):
                await coll.update_many({"_id": {"$in": list(chunk)}}, update)

    async def _finish(self, doc: Doc) -> None:
        """Complete an uncommitted message record: insert its pending items, then commit it."""
        await self._insert_pending(list(doc.get("pending", [])))
        await self._commit([doc["_id"]])
        doc["committed"] = True

    async def get_messages(self, server_ids: list[str]) -> list[StoredMessage]:
        """The stored messages among ``server_ids``, in the order of ``server_ids`` (repeats once):
        up to ``SHORT`` ids one ``find_one`` by ``_id`` each, concurrently (uncommitted records
        are skipped here), more with one ``$in`` query."""
        coll = self._coll("messages")
        ids = unique(server_ids)
        with mongo_errors():
            if len(ids) <= SHORT:
                docs = await each(coll.find_one({"_id": sid}) for sid in ids)
                return [message_doc(d) for d in docs if d is not None and d.get("committed", False)]
            found: dict[str, StoredMessage] = {}
            for chunk in chunks(ids, CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}, "committed": True}):
                    found[doc["_id"]] = message_doc(doc)
        return [found[i] for i in ids if i in found]

    async def history(self, conversation: str, before: str | None, limit: int) -> list[StoredMessage]:
        coll = self._coll("messages")
        if limit <= 0:
            return []
        query: Doc = {"conversation": conversation, "committed": True}
        if before is not None:
            query["_id"] = {"$lt": before}
        with mongo_errors():
            cursor = coll.find(query).sort("_id", DESCENDING).limit(limit)
            return [message_doc(doc) async for doc in cursor]

    async def count_messages(self) -> int:
        """The collection's document count from its metadata (``estimated_document_count``: no scan);
        it includes the rare uncommitted records a crash left behind."""
        messages = self._coll("messages")
        with mongo_errors():
            return await messages.estimated_document_count()
