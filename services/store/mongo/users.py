"""MongoDB store: users, their push tokens and devices."""

from __future__ import annotations

import contextlib
import re

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chatmq.core.errors import ConflictError, NotFoundError
from chatmq.core.ids import now_ms, server_id
from chatmq.services.store.base import (
    Device,
    PushToken,
    User,
)
from chatmq.services.store.common import chunks
from chatmq.services.store.mongo.base import (
    CHUNK,
    SHORT,
    Doc,
    MongoBase,
    device_doc,
    each,
    mongo_errors,
    push_token_doc,
    unique,
    user_doc,
)

#: ``spend_refresh_token`` forgets expired records once in this many calls (per process): a range
#: query, which FerretDB evaluates over the whole collection, so not on every refresh.
PRUNE_EVERY = 1000


class MongoUsers(MongoBase):
    """Users, their push tokens and devices, and the spent refresh tokens and revoked login families
    (``refresh_spent`` ``{_id: token_id, family, user_id, expires_at}``, ``refresh_revoked``
    ``{_id: family, user_id, expires_at}``)."""

    _spends: int = 0  # spend_refresh_token calls of this store

    async def create_user(
        self,
        user_id: str,
        username: str,
        password_hash: str,
        display_name: str | None,
        is_admin: bool = False,
    ) -> User:
        user = User.new(user_id, username, password_hash, display_name, is_admin)
        users = self._coll("users")
        with mongo_errors():
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
        with mongo_errors():
            doc = await users.find_one({"_id": user_id})
        return None if doc is None else user_doc(doc)

    async def get_user_by_username(self, username: str) -> User | None:
        users = self._coll("users")
        with mongo_errors():
            doc = await users.find_one({"username": username})
        return None if doc is None else user_doc(doc)

    async def user_ids_by_usernames(self, usernames: list[str]) -> dict[str, str]:
        users = self._coll("users")
        found: dict[str, str] = {}
        with mongo_errors():
            for chunk in chunks(unique(usernames), CHUNK):
                async for doc in users.find({"username": {"$in": list(chunk)}}, {"username": 1}):
                    found[doc["username"]] = doc["_id"]
        return found

    async def existing_user_ids(self, user_ids: list[str]) -> set[str]:
        users = self._coll("users")
        found: set[str] = set()
        ids = unique(user_ids)
        with mongo_errors():
            if len(ids) <= SHORT:
                docs = await each(users.find_one({"_id": u}, {"_id": 1}) for u in ids)
                return {d["_id"] for d in docs if d is not None}
            for chunk in chunks(ids, CHUNK):
                async for doc in users.find({"_id": {"$in": list(chunk)}}, {"_id": 1}):
                    found.add(doc["_id"])
        return found

    async def set_user_flags(
        self, user_id: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> None:
        users = self._coll("users")
        changes: Doc = {}
        if disabled is not None:
            changes["disabled"] = disabled
        if is_admin is not None:
            changes["is_admin"] = is_admin
        with mongo_errors():
            async with self._lock:
                if changes:
                    found = (await users.update_one({"_id": user_id}, {"$set": changes})).matched_count > 0
                else:
                    found = await users.find_one({"_id": user_id}, {"_id": 1}) is not None
        if not found:
            raise NotFoundError(f"no user {user_id!r}")

    async def count_users(self) -> int:
        users = self._coll("users")
        with mongo_errors():
            return await users.count_documents({})

    async def revoke_tokens(self, user_id: str) -> int:
        """``$inc`` under the store's lock: on FerretDB two processes revoking at once may raise the
        version once instead of twice, which still revokes every token issued before either."""
        users = self._coll("users")
        with mongo_errors():
            async with self._lock:
                doc = await users.find_one_and_update(
                    {"_id": user_id}, {"$inc": {"token_version": 1}}, return_document=ReturnDocument.AFTER,
                )  # no projection: FerretDB 1.24's findAndModify does not take one
        if doc is None:
            raise NotFoundError(f"no user {user_id!r}")
        return int(doc["token_version"])

    async def spend_refresh_token(self, token_id: str, family: str, user_id: str, expires_at: int,
                                  grace_ms: int = 0) -> bool:
        """The spend is an insert against the unique ``_id`` (atomic on FerretDB too): of two spends
        of one token exactly one inserts; the other finds the first's family and revokes it (an
        upsert by ``_id``). A spend racing its family's revocation may still be issued a token,
        which the revocation then refuses on its next use."""
        spent, revoked = self._coll("refresh_spent"), self._coll("refresh_revoked")
        with mongo_errors():
            await self._prune_refresh()
            now = now_ms()
            try:
                await spent.insert_one({"_id": token_id, "family": family, "user_id": user_id, "spent_at": now,
                                        "expires_at": expires_at})
            except DuplicateKeyError:
                first = await spent.find_one({"_id": token_id})
                again_at_once = first is not None and now - int(first.get("spent_at", 0)) <= grace_ms
                if first is not None and grace_ms > 0 and again_at_once:  # the same client's tabs racing
                    return await revoked.find_one({"_id": first["family"]}, {"_id": 1}) is None
                for fam in unique([first["family"] if first else family, family]):
                    with contextlib.suppress(DuplicateKeyError):  # a concurrent upsert revoked it first
                        await revoked.update_one({"_id": fam}, {"$set": {"user_id": user_id},
                                                                "$max": {"expires_at": expires_at}}, upsert=True)
                return False
            return await revoked.find_one({"_id": family}, {"_id": 1}) is None

    async def _prune_refresh(self) -> None:
        self._spends += 1
        if self._spends % PRUNE_EVERY == 0:
            now = now_ms()
            for name in ("refresh_spent", "refresh_revoked"):
                await self._coll(name).delete_many({"expires_at": {"$lt": now}})

    async def delete_user(self, user_id: str) -> None:
        """Devices, push tokens, pending items, the phone number, contacts and blocks (both ways), phone
        hashes and conversation states first, the user last: a failure half way leaves the user there to
        delete again."""
        with mongo_errors():
            if await self._coll("users").find_one({"_id": user_id}, {"_id": 1}) is None:
                raise NotFoundError(f"no user {user_id!r}")
            await self._coll("devices").delete_many({"owner_id": user_id})
            await self._coll("push_tokens").delete_many({"user_id": user_id})
            await self._coll("pending").delete_many({"user_id": user_id})
            await self._coll("phones").delete_many({"user_id": user_id})  # the number is free again
            for name, field in (("contacts", "owner"), ("contacts", "contact"), ("blocks", "blocker"),
                                ("blocks", "blocked"), ("phone_hashes", "owner"), ("conversation_state", "user_id")):
                await self._coll(name).delete_many({field: user_id})
            await self._coll("device_marks").delete_many({"user_id": user_id})
            await self._coll("user_sessions").delete_one({"_id": user_id})
            await self._coll("users").delete_one({"_id": user_id})

    async def list_users(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[User]:
        users = self._coll("users")
        query: Doc = {"username": {"$gt": after or ""}}
        if prefix:
            query = {"$and": [query, {"username": {"$regex": "^" + re.escape(prefix)}}]}
        with mongo_errors():
            cursor = users.find(query).sort([("username", ASCENDING)]).limit(limit)
            return [user_doc(doc) async for doc in cursor]

    async def add_push_token(self, user_id: str, platform: str, token: str) -> PushToken:
        tokens = self._coll("push_tokens")
        pt = PushToken(user_id=user_id, platform=platform, token=token, created_at=now_ms())
        update = {
            "$set": {"user_id": user_id, "platform": platform, "created_at": pt.created_at},
            "$setOnInsert": {"ord": server_id()},
        }
        with mongo_errors():
            async with self._lock:
                try:
                    await tokens.update_one({"_id": token}, update, upsert=True)
                except DuplicateKeyError:
                    # another process inserted the token between our lookup and insert: update it
                    await tokens.update_one({"_id": token}, update, upsert=True)
        return pt

    async def remove_push_token(self, user_id: str, token: str) -> bool:
        tokens = self._coll("push_tokens")
        with mongo_errors():
            return (await tokens.delete_one({"_id": token, "user_id": user_id})).deleted_count > 0

    async def push_tokens(self, user_id: str) -> list[PushToken]:
        tokens = self._coll("push_tokens")
        with mongo_errors():
            cursor = tokens.find({"user_id": user_id}).sort([("created_at", ASCENDING), ("ord", ASCENDING)])
            return [push_token_doc(doc) async for doc in cursor]

    async def create_device(self, device_id: str, owner_id: str, name: str, secret_hash: str) -> Device:
        devices = self._coll("devices")
        device = Device(
            device_id=device_id, owner_id=owner_id, name=name, secret_hash=secret_hash, created_at=now_ms()
        )
        with mongo_errors():
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
        devices = self._coll("devices")
        with mongo_errors():
            doc = await devices.find_one({"_id": device_id})
        return None if doc is None else device_doc(doc)

    async def list_devices(self, owner_id: str) -> list[Device]:
        devices = self._coll("devices")
        with mongo_errors():
            cursor = devices.find({"owner_id": owner_id, "revoked": False}).sort(
                [("created_at", ASCENDING), ("ord", ASCENDING)]
            )
            return [device_doc(doc) async for doc in cursor]

    async def revoke_device(self, owner_id: str, device_id: str) -> bool:
        devices = self._coll("devices")
        with mongo_errors():
            async with self._lock:
                result = await devices.update_one(
                    {"_id": device_id, "owner_id": owner_id, "revoked": False}, {"$set": {"revoked": True}}
                )
        return result.matched_count > 0

    async def count_devices(self) -> int:
        devices = self._coll("devices")
        with mongo_errors():
            return await devices.count_documents({"revoked": False})
