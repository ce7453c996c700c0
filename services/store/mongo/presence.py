"""MongoDB store: the session registry: which node each online user is on."""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from chatmq.services.store.common import chunks
from chatmq.services.store.mongo.base import (
    CHUNK,
    SHORT,
    MongoBase,
    each,
    mongo_errors,
    unique,
)


class MongoPresence(MongoBase):
    """The session registry: which node each online user is on."""

    async def set_online(self, user_id: str, node: str, epoch: int) -> bool:
        """Read, then replace (FerretDB updates are not atomic): exact because one consumer at a
        time writes a user's presence; a lost race on the first insert is a duplicate key."""
        coll = self._coll("presence")
        with mongo_errors():
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
        with mongo_errors():
            result = await coll.delete_one({"_id": user_id, "node": node, "epoch": {"$lte": epoch}})
        return result.deleted_count == 1

    async def nodes_of(self, user_ids: list[str]) -> dict[str, str]:
        coll = self._coll("presence")
        found: dict[str, str] = {}
        ids = unique(user_ids)
        with mongo_errors():
            if len(ids) <= SHORT:
                docs = await each(coll.find_one({"_id": u}, {"node": 1}) for u in ids)
                return {d["_id"]: d["node"] for d in docs if d is not None}
            for chunk in chunks(ids, CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}}, {"node": 1}):
                    found[doc["_id"]] = doc["node"]
        return found

    async def forget_node(self, node: str, before_epoch: int) -> int:
        coll = self._coll("presence")
        with mongo_errors():
            result = await coll.delete_many({"node": node, "epoch": {"$lt": before_epoch}})
        return result.deleted_count

    async def count_online(self) -> int:
        coll = self._coll("presence")
        with mongo_errors():
            return await coll.count_documents({})
