"""MongoDB store: blocks, contact lists, verified phone numbers and the hashes of other numbers.

Each pair is one document keyed by ``pair_key`` (so adding one twice is a duplicate key, atomic on
FerretDB too) and carries its two ids as top-level fields, each queried by scalar equality (what
FerretDB 1.24 pushes down); ``ord`` (a time-ordered id) keeps the insertion order for listing.
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from chatmq.core.errors import ConflictError
from chatmq.core.ids import now_ms, server_id
from chatmq.services.store.base import Contact
from chatmq.services.store.common import chunks
from chatmq.services.store.mongo.base import CHUNK, SHORT, MongoBase, each, mongo_errors, pair_key, unique


class MongoSocial(MongoBase):
    """``blocks`` ``{_id: pair_key(blocker, blocked), blocker, blocked, ord}``; ``contacts`` ``{_id:
    pair_key(owner, contact), owner, contact, added_at, ord}``; ``phones`` ``{_id: phone, user_id}``
    (``user_id`` unique); ``phone_hashes`` ``{_id: pair_key(owner, hash), owner, hash, ord}``."""

    async def _insert_pair(self, name: str, doc: dict[str, object]) -> bool:
        with mongo_errors():
            try:
                await self._coll(name).insert_one({**doc, "ord": server_id()})
            except DuplicateKeyError:
                return False
        return True

    async def _delete_pair(self, name: str, key: str) -> bool:
        with mongo_errors():
            return (await self._coll(name).delete_one({"_id": key})).deleted_count == 1

    async def _field_where(self, name: str, field: str, query: dict[str, object]) -> list[str]:
        with mongo_errors():
            cursor = self._coll(name).find(query, {field: 1, "ord": 1})
            docs = [d async for d in cursor]
        return [str(d[field]) for d in sorted(docs, key=lambda d: str(d.get("ord", "")))]

    async def block(self, blocker: str, blocked: str) -> bool:
        return await self._insert_pair("blocks", {"_id": pair_key(blocker, blocked), "blocker": blocker,
                                                  "blocked": blocked})

    async def unblock(self, blocker: str, blocked: str) -> bool:
        return await self._delete_pair("blocks", pair_key(blocker, blocked))

    async def blocked_by(self, blocker: str) -> list[str]:
        return await self._field_where("blocks", "blocked", {"blocker": blocker})

    async def blockers_of(self, users: list[str]) -> dict[str, set[str]]:
        wanted = unique(users)
        out: dict[str, set[str]] = {u: set() for u in wanted}
        coll = self._coll("blocks")
        with mongo_errors():
            if len(wanted) <= SHORT:  # scalar equality: pushed down on FerretDB
                for user, docs in zip(wanted, await each(coll.find({"blocked": u}, {"blocker": 1}).to_list()
                                                         for u in wanted), strict=True):
                    out[user].update(str(d["blocker"]) for d in docs)
                return out
            for chunk in chunks(wanted, CHUNK):
                async for doc in coll.find({"blocked": {"$in": list(chunk)}}, {"blocker": 1, "blocked": 1}):
                    out[str(doc["blocked"])].add(str(doc["blocker"]))
        return out

    async def add_contact(self, owner: str, contact: str) -> bool:
        return await self._insert_pair("contacts", {"_id": pair_key(owner, contact), "owner": owner,
                                                    "contact": contact, "added_at": now_ms()})

    async def remove_contact(self, owner: str, contact: str) -> bool:
        return await self._delete_pair("contacts", pair_key(owner, contact))

    async def contacts_of(self, owner: str) -> list[Contact]:
        with mongo_errors():
            docs = [d async for d in self._coll("contacts").find({"owner": owner})]
        docs.sort(key=lambda d: str(d.get("ord", "")))
        return [Contact(str(d["contact"]), int(d["added_at"])) for d in docs]

    async def mutual_contacts(self, user_id: str) -> set[str]:
        mine = set(await self._field_where("contacts", "contact", {"owner": user_id}))
        if not mine:
            return set()
        return mine & set(await self._field_where("contacts", "owner", {"contact": user_id}))

    async def set_phone(self, user_id: str, phone: str | None) -> None:
        phones = self._coll("phones")
        with mongo_errors():
            if phone is not None:
                holder = await phones.find_one({"_id": phone})
                if holder is not None and holder["user_id"] != user_id:
                    raise ConflictError("another user has this phone number")
                if holder is not None:
                    return
            await phones.delete_many({"user_id": user_id})
            if phone is not None:
                try:
                    await phones.insert_one({"_id": phone, "user_id": user_id})
                except DuplicateKeyError:
                    raise ConflictError("another user has this phone number") from None

    async def phone_of(self, user_id: str) -> str | None:
        with mongo_errors():
            doc = await self._coll("phones").find_one({"user_id": user_id})
        return None if doc is None else str(doc["_id"])

    async def user_ids_by_phones(self, phones: list[str]) -> dict[str, str]:
        wanted = unique(phones)
        coll = self._coll("phones")
        found: dict[str, str] = {}
        with mongo_errors():
            if len(wanted) <= SHORT:
                docs = await each(coll.find_one({"_id": p}) for p in wanted)
                return {str(d["_id"]): str(d["user_id"]) for d in docs if d is not None}
            for chunk in chunks(wanted, CHUNK):
                async for doc in coll.find({"_id": {"$in": list(chunk)}}):
                    found[str(doc["_id"])] = str(doc["user_id"])
        return found

    async def add_phone_hashes(self, owner: str, hashes: list[str]) -> None:
        docs = [{"_id": pair_key(owner, h), "owner": owner, "hash": h, "ord": server_id()} for h in unique(hashes)]
        if docs:
            with mongo_errors():
                await self._insert_new("phone_hashes", docs)  # those kept before are skipped

    async def phone_hashes(self, owner: str) -> list[str]:
        return await self._field_where("phone_hashes", "hash", {"owner": owner})

