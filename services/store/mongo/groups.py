"""MongoDB store: groups and their members."""

from __future__ import annotations

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chatmq.core.errors import ConflictError, NotFoundError, StoreError
from chatmq.core.ids import now_ms
from chatmq.services.store.base import (
    Group,
)
from chatmq.services.store.common import Joining, founders, newcomers, successor
from chatmq.services.store.mongo.base import (
    _CAS_ATTEMPTS,
    Doc,
    MongoBase,
    group_doc,
    member_docs,
    mongo_errors,
    unique,
)


def joining_doc(m: Joining) -> Doc:
    """A member's entry in its group's document (``member_docs`` reads them back in order)."""
    return {"user_id": m.user_id, "role": m.role, "joined_at": m.joined_at, "position": m.position}


class MongoGroups(MongoBase):
    """Groups and their members."""

    async def create_group(self, group_id: str, name: str, creator: str, members: list[str]) -> Group:
        groups = self._coll("groups")
        created_at = now_ms()
        doc: Doc = {
            "_id": group_id,
            "name": name,
            "created_by": creator,
            "created_at": created_at,
            "v": 0,
            "members": [joining_doc(m) for m in founders(creator, members, created_at)],
        }
        with mongo_errors():
            try:
                await groups.insert_one(doc)
            except DuplicateKeyError as exc:
                raise ConflictError(f"group {group_id!r} exists") from exc
        return group_doc(doc)

    async def get_group(self, group_id: str) -> Group | None:
        groups = self._coll("groups")
        with mongo_errors():
            doc = await groups.find_one({"_id": group_id})
        return None if doc is None else group_doc(doc)

    async def get_groups(self, group_ids: list[str]) -> dict[str, Group]:
        """One query (``_id`` in the ids) for all of them."""
        ids = unique(group_ids)
        if not ids:
            return {}
        groups = self._coll("groups")
        with mongo_errors():
            return {doc["_id"]: group_doc(doc) async for doc in groups.find({"_id": {"$in": ids}})}

    async def groups_of(self, user_id: str) -> list[Group]:
        groups = self._coll("groups")
        with mongo_errors():
            cursor = groups.find({"members.user_id": user_id}).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            return [group_doc(doc) async for doc in cursor]

    async def rename_group(self, group_id: str, name: str) -> Group:
        groups = self._coll("groups")
        with mongo_errors():
            async with self._lock:
                doc = await groups.find_one_and_update(
                    {"_id": group_id},
                    {"$set": {"name": name}, "$inc": {"v": 1}},
                    return_document=ReturnDocument.AFTER,
                )
        if doc is None:
            raise NotFoundError(f"no group {group_id!r}")
        return group_doc(doc)

    async def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """The members are numbered afresh, which gives those written without a position theirs."""
        groups = self._coll("groups")
        with mongo_errors():
            async with self._lock:
                for _ in range(_CAS_ATTEMPTS):
                    doc = await groups.find_one({"_id": group_id})
                    if doc is None:
                        raise NotFoundError(f"no group {group_id!r}")
                    members = [{**m, "position": i} for i, m in enumerate(member_docs(doc))]
                    new = newcomers((m["user_id"] for m in members), user_ids, len(members) - 1, now_ms())
                    if not new:
                        return []
                    members += [joining_doc(m) for m in new]
                    version = int(doc.get("v", 0))
                    result = await groups.update_one(
                        {"_id": group_id, "v": version}, {"$set": {"members": members, "v": version + 1}}
                    )
                    if result.matched_count:
                        return [m.user_id for m in new]
        raise StoreError(f"group {group_id!r} kept changing; try again")

    async def list_groups(self, after: str | None = None, limit: int = 100) -> list[Group]:
        groups = self._coll("groups")
        with mongo_errors():
            cursor = groups.find({"_id": {"$gt": after or ""}}).sort([("_id", ASCENDING)]).limit(limit)
            return [group_doc(doc) async for doc in cursor]

    async def delete_group(self, group_id: str) -> Group:
        """Read, then delete by ``_id`` under the store's lock (a concurrent change's compare-and-swap
        then matches nothing and finds the group gone)."""
        groups = self._coll("groups")
        with mongo_errors():
            async with self._lock:
                doc = await groups.find_one({"_id": group_id})
                if doc is not None:
                    await groups.delete_one({"_id": group_id})
        if doc is None:
            raise NotFoundError(f"no group {group_id!r}")
        return group_doc(doc)

    async def remove_member(self, group_id: str, user_id: str) -> str | None:
        groups = self._coll("groups")
        with mongo_errors():
            async with self._lock:
                for _ in range(_CAS_ATTEMPTS):
                    doc = await groups.find_one({"_id": group_id})
                    members = [] if doc is None else member_docs(doc)
                    if doc is None or not any(m["user_id"] == user_id for m in members):
                        raise NotFoundError(f"{user_id!r} is not a member of {group_id!r}")
                    version = int(doc.get("v", 0))
                    remaining = [m for m in members if m["user_id"] != user_id]
                    if not remaining:
                        if (await groups.delete_one({"_id": group_id, "v": version})).deleted_count:
                            return None
                        continue
                    promoted = successor((m["user_id"], m["role"]) for m in remaining)
                    if promoted is not None:
                        remaining[0] = {**remaining[0], "role": "admin"}
                    result = await groups.update_one(
                        {"_id": group_id, "v": version}, {"$set": {"members": remaining, "v": version + 1}}
                    )
                    if result.matched_count:
                        return promoted
        raise StoreError(f"group {group_id!r} kept changing; try again")
