"""MongoDB store: what waits for a user: pending messages until its ``delivered`` receipt, and notices."""

from __future__ import annotations

from pymongo import ASCENDING

from chatmq.services.store.base import (
    PendingItem,
)
from chatmq.services.store.common import chunks
from chatmq.services.store.mongo.base import (
    CHUNK,
    Doc,
    MongoBase,
    mongo_errors,
    pending_item_doc,
    unique,
)


class MongoPending(MongoBase):
    """What waits for a user: pending messages until its ``delivered`` receipt, and notices."""

    async def add_notices(self, notices: list[tuple[str, str, bytes]]) -> None:
        """Append notice items. An ``item_id`` the user already has pending (of either kind) is
        skipped, so re-adding the same notice is harmless (and a failed call may be retried)."""
        self._coll("pending")  # StoreError when not started
        first: dict[tuple[str, str], bytes] = {}
        for user, item_id, env in notices:
            first.setdefault((user, item_id), env)
        rows = list(first.items())
        if not rows:
            return
        with mongo_errors():
            seqs = await self._reserve_seqs(len(rows))
            await self._insert_pending(
                [
                    {"_id": seq, "user_id": user, "item_id": item_id, "kind": "notice", "envelope": env.decode()}
                    for seq, ((user, item_id), env) in zip(seqs, rows, strict=True)
                ]
            )

    async def pending(self, user_id: str, after_seq: int, limit: int) -> list[PendingItem]:
        coll = self._coll("pending")
        if limit <= 0:
            return []
        with mongo_errors():
            cursor = coll.find({"user_id": user_id, "_id": {"$gt": after_seq}}).sort("_id", ASCENDING).limit(limit)
            return [pending_item_doc(doc) async for doc in cursor]

    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, bytes]]:
        coll = self._coll("pending")
        docs: list[Doc] = []
        with mongo_errors():
            for chunk in chunks(unique(server_ids), CHUNK):
                docs.extend([d async for d in coll.find({"kind": "message", "item_id": {"$in": list(chunk)}})])
        docs.sort(key=lambda d: int(d["_id"]))
        return [(d["user_id"], str(d["envelope"]).encode()) for d in docs]

    async def remove_pending(self, user_id: str, server_ids: list[str]) -> list[str]:
        """Remove the user's ``message`` items among ``server_ids``; returns the removed ids in
        the order of ``server_ids`` (notices with a matching item id are left alone). Two
        concurrent calls for the same items may both report them."""
        coll = self._coll("pending")
        ids = unique(server_ids)
        removed: set[str] = set()
        with mongo_errors():
            for chunk in chunks(ids, CHUNK):
                query = {"user_id": user_id, "kind": "message", "item_id": {"$in": list(chunk)}}
                docs = [doc async for doc in coll.find(query, {"item_id": 1})]
                if docs:
                    async with self._writes:
                        await coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}, "user_id": user_id})
                    removed.update(d["item_id"] for d in docs)
        return [i for i in ids if i in removed]

    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        coll = self._coll("pending")
        with mongo_errors():
            for chunk in chunks(unique(seqs), CHUNK):
                async with self._writes:
                    await coll.delete_many({"user_id": user_id, "kind": "notice", "_id": {"$in": list(chunk)}})

    async def count_pending(self, user_id: str | None = None) -> int:
        coll = self._coll("pending")
        query: Doc = {"kind": "message"}
        if user_id is not None:
            query["user_id"] = user_id
        with mongo_errors():
            return await coll.count_documents(query)
