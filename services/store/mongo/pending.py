"""MongoDB store: what waits for a user: pending messages until its ``delivered`` receipt, and notices."""

from __future__ import annotations

from pymongo import ASCENDING

from chatmq.services.store.base import (
    DeviceConfirm,
    PendingItem,
    Route,
)
from chatmq.services.store.common import chunks, held_route
from chatmq.services.store.mongo.base import (
    CHUNK,
    Doc,
    mongo_errors,
    pending_doc,
    pending_item_doc,
    pending_key,
    unique,
)
from chatmq.services.store.mongo.sessions import MongoSessions, mark_doc, mark_key


class MongoPending(MongoSessions):
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
                    pending_doc(seq, user, item_id, "notice", env.decode())
                    for seq, ((user, item_id), env) in zip(seqs, rows, strict=True)
                ]
            )

    async def pending(self, user_id: str, after_seq: int, limit: int) -> list[PendingItem]:
        coll = self._coll("pending")
        if limit <= 0:
            return []
        with mongo_errors():
            cursor = coll.find({"user_id": user_id, "seq": {"$gt": after_seq}}).sort("seq", ASCENDING).limit(limit)
            return [pending_item_doc(doc) async for doc in cursor]

    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, bytes]]:
        coll = self._coll("pending")
        docs: list[Doc] = []
        with mongo_errors():
            for chunk in chunks(unique(server_ids), CHUNK):
                docs.extend([d async for d in coll.find({"kind": "message", "item_id": {"$in": list(chunk)}})])
        docs.sort(key=lambda d: int(d["seq"]))
        return [(d["user_id"], str(d["envelope"]).encode()) for d in docs]

    async def take_pending(self, wanted: list[tuple[str, list[str]]]) -> list[list[Route]]:
        """Find the items by ``_id`` (their (user, item id) key), then delete them by ``_id``: nothing
        but equality on ``_id``, which FerretDB pushes down, in the pending working set. Two
        concurrent calls for the same items may both report them."""
        found = await self._held(wanted)
        with mongo_errors():
            await self._delete_ids("pending", [d["_id"] for docs in found for d in docs])
        return [[held_route(user, d["item_id"], d["envelope"]) for d in docs]
                for (user, _), docs in zip(wanted, found, strict=True)]

    async def held_routes(self, wanted: list[tuple[str, list[str]]]) -> list[list[Route]]:
        found = await self._held(wanted)
        return [[held_route(user, d["item_id"], d["envelope"]) for d in docs]
                for (user, _), docs in zip(wanted, found, strict=True)]

    async def _held(self, wanted: list[tuple[str, list[str]]]) -> list[list[Doc]]:
        """Each user's pending ``message`` documents among its server ids, in the order asked, by
        ``_id`` (``find_by_ids``)."""
        keys = [[pending_key(user, sid) for sid in unique(sids)] for user, sids in wanted]
        with mongo_errors():
            found = await self._find_ids("pending", [k for ks in keys for k in ks])
        return [[d for d in (found.get(k) for k in ks) if d is not None and d.get("kind") == "message"] for ks in keys]

    async def confirm_on_device(self, wanted: list[DeviceConfirm]) -> list[list[Route]]:
        """By ``_id`` only: the pending items, the marks inserted (a repeated one skipped), the other
        devices' marks of those items, then the deletes of what every device has had."""
        found = await self._held([(c.user, c.ids) for c in wanted])
        out: list[list[Route]] = []
        with mongo_errors():
            for c, docs in zip(wanted, found, strict=True):
                held = [str(d["item_id"]) for d in docs]
                await self._insert_new("device_marks", [mark_doc(c.user, sid, c.client) for sid in held])
                done = await self._settle(c.user, held, list(c.others))
                if done:  # this device's marks of them too
                    await self._delete_ids("device_marks", [mark_key(c.user, sid, c.client) for sid in done])
                out.append([held_route(c.user, d["item_id"], d["envelope"]) for d in docs])
        return out

    async def device_has(self, user_id: str, client_id: str, item_ids: list[str]) -> set[str]:
        ids = unique(item_ids)
        with mongo_errors():
            found = await self._find_ids("device_marks", [mark_key(user_id, i, client_id) for i in ids])
        return {i for i in ids if mark_key(user_id, i, client_id) in found}

    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        coll = self._coll("pending")
        with mongo_errors():
            for chunk in chunks(unique(seqs), CHUNK):
                async with self._writes:
                    await coll.delete_many({"user_id": user_id, "kind": "notice", "seq": {"$in": list(chunk)}})

    async def count_pending(self, user_id: str | None = None) -> int:
        coll = self._coll("pending")
        query: Doc = {"kind": "message"}
        if user_id is not None:
            query["user_id"] = user_id
        with mongo_errors():
            return await coll.count_documents(query)
