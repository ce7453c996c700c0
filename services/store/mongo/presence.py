"""MongoDB store: the session registry: which nodes each online user is on.

``presence`` ``{_id: user_id, node, epoch[, more: [{node, epoch}]]}``: the newest entry's node and epoch
at the top (what a document of one entry always was), the user's entries on other nodes in ``more``.
Read, then replaced (or deleted when empty) by ``_id``: one consumer at a time writes a user's presence.
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from chatmq.services.store.common import chunks
from chatmq.services.store.mongo.base import (
    CHUNK,
    SHORT,
    Doc,
    MongoBase,
    each,
    mongo_errors,
    unique,
)


def _entries(doc: Doc | None) -> dict[str, int]:
    """``{node: epoch}`` of a presence document."""
    if doc is None:
        return {}
    found = {str(doc["node"]): int(doc["epoch"])}
    for e in doc.get("more", []):
        found.setdefault(str(e["node"]), int(e["epoch"]))
    return found


def _nodes(doc: Doc) -> list[str]:
    """The document's nodes, newest entry first."""
    return [n for n, _ in sorted(_entries(doc).items(), key=lambda e: -e[1])]


def _document(entries: dict[str, int]) -> Doc:
    ordered = sorted(entries.items(), key=lambda e: -e[1])
    (node, epoch), rest = ordered[0], ordered[1:]
    doc: Doc = {"node": node, "epoch": epoch}
    if rest:
        doc["more"] = [{"node": n, "epoch": e} for n, e in rest]
    return doc


class MongoPresence(MongoBase):
    """The session registry: which nodes each online user is on."""

    async def set_online(self, user_id: str, node: str, epoch: int) -> bool:
        """Read, then replace (FerretDB updates are not atomic): exact because one consumer at a
        time writes a user's presence; a lost race on the first insert is a duplicate key."""
        coll = self._coll("presence")
        with mongo_errors():
            entries = _entries(await coll.find_one({"_id": user_id}))
            if entries.get(node, epoch) > epoch:
                return False
            entries[node] = epoch
            try:
                await coll.replace_one({"_id": user_id}, _document(entries), upsert=True)
            except DuplicateKeyError:
                return False
        return True

    async def set_offline(self, user_id: str, node: str, epoch: int) -> bool:
        coll = self._coll("presence")
        with mongo_errors():
            entries = _entries(await coll.find_one({"_id": user_id}))
            if entries.get(node, epoch + 1) > epoch:
                return False
            del entries[node]
            await self._keep(user_id, entries)
        return True

    async def _keep(self, user_id: str, entries: dict[str, int]) -> None:
        coll = self._coll("presence")
        if entries:
            await coll.replace_one({"_id": user_id}, _document(entries))
        else:
            await coll.delete_one({"_id": user_id})

    async def user_nodes(self, user_ids: list[str]) -> dict[str, list[str]]:
        coll = self._coll("presence")
        found: dict[str, list[str]] = {}
        ids = unique(user_ids)
        with mongo_errors():
            if len(ids) <= SHORT:
                docs = await each(coll.find_one({"_id": u}) for u in ids)
                return {d["_id"]: _nodes(d) for d in docs if d is not None}
            for chunk in chunks(ids, CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}}):
                    found[doc["_id"]] = _nodes(doc)
        return found

    async def forget_node(self, node: str, before_epoch: int) -> int:
        """The users with an entry on ``node`` are found by ``node`` or ``more.node`` (a scan on FerretDB:
        once per node start), then each rewritten."""
        coll = self._coll("presence")
        removed = 0
        with mongo_errors():
            docs = [d async for d in coll.find({"$or": [{"node": node}, {"more.node": node}]})]
            for doc in docs:
                entries = _entries(doc)
                if entries.get(node, before_epoch) < before_epoch:
                    del entries[node]
                    await self._keep(doc["_id"], entries)
                    removed += 1
        return removed

    async def count_online(self) -> int:
        coll = self._coll("presence")
        with mongo_errors():
            return await coll.count_documents({})
