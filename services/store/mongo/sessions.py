"""MongoDB store: the devices (MQTT client ids) each user connects with, and what each device has had.

``user_sessions`` ``{_id: user_id, clients: [{client_id, first_seen, last_seen}]}``: one document per
user, read and written by ``_id`` (one consumer at a time writes a user's connects; a sign-out from the
API may race one and lose it, which the next connect writes again); devices not seen for long are found by
the ``clients.last_seen`` index (``stale_sessions``, for device expiry). ``device_marks`` ``{_id:
"<pending key>:<client_id>", user_id, item_id, client_id}``: the pending items a device of a user with
several devices has had (``confirm_on_device``), found and removed by ``_id``; a small working set,
gone with their pending items.
"""

from __future__ import annotations

from chatmq.services.store.base import UserSession
from chatmq.services.store.mongo.base import Doc, MongoBase, each, mongo_errors, pending_key, unique


def mark_key(user_id: str, item_id: str, client_id: str) -> str:
    """The ``_id`` of a device mark: the pending item's key and the client id (item ids hold no ``:``)."""
    return f"{pending_key(user_id, item_id)}:{client_id}"


def mark_doc(user_id: str, item_id: str, client_id: str) -> Doc:
    return {"_id": mark_key(user_id, item_id, client_id), "user_id": user_id, "item_id": item_id,
            "client_id": client_id}


def _sessions(doc: Doc | None) -> list[UserSession]:
    if doc is None:
        return []
    found = [UserSession(str(doc["_id"]), str(c["client_id"]), int(c["first_seen"]), int(c["last_seen"]))
             for c in doc.get("clients", [])]
    return sorted(found, key=lambda s: (s.first_seen, s.client_id))


def _clients(sessions: list[UserSession]) -> list[Doc]:
    return [{"client_id": s.client_id, "first_seen": s.first_seen, "last_seen": s.last_seen} for s in sessions]


class MongoSessions(MongoBase):
    """The devices each user connects with."""

    async def touch_session(self, user_id: str, client_id: str, now: int) -> tuple[bool, list[UserSession]]:
        coll = self._coll("user_sessions")
        with mongo_errors():
            sessions = _sessions(await coll.find_one({"_id": user_id}))
            known = next((s for s in sessions if s.client_id == client_id), None)
            if known is None:
                sessions.append(UserSession(user_id, client_id, now, now))
            else:
                sessions[sessions.index(known)] = UserSession(user_id, client_id, known.first_seen,
                                                              max(now, known.last_seen))
            await coll.replace_one({"_id": user_id}, {"clients": _clients(sessions)}, upsert=True)
        return known is None, sessions

    async def sessions_of(self, user_ids: list[str]) -> dict[str, list[UserSession]]:
        """One ``find_one`` by ``_id`` per user, issued together (``each``): the collection holds every
        user that ever connected, which a ``$in`` would scan on FerretDB."""
        coll = self._coll("user_sessions")
        with mongo_errors():
            docs = await each(coll.find_one({"_id": u}) for u in unique(user_ids))
        return {str(doc["_id"]): sessions for doc in docs if doc is not None and (sessions := _sessions(doc))}

    async def stale_sessions(self, before: int, limit: int) -> list[UserSession]:
        """The users' documents with a device seen before ``before`` (by the ``clients.last_seen`` index),
        those devices of them, oldest first."""
        coll = self._coll("user_sessions")
        with mongo_errors():
            docs = [d async for d in coll.find({"clients.last_seen": {"$lt": before}}).limit(limit)]
        stale = [s for d in docs for s in _sessions(d) if s.last_seen < before]
        return sorted(stale, key=lambda s: (s.last_seen, s.user_id, s.client_id))[:limit]

    async def remove_session(self, user_id: str, client_id: str) -> bool:
        """The device goes from the user's document, its marks by ``(user_id, client_id)``; then the
        user's pending messages every remaining device has had (read by ``user_id``: a sign-out is
        rare and a user's pending queue small)."""
        coll = self._coll("user_sessions")
        with mongo_errors():
            sessions = _sessions(await coll.find_one({"_id": user_id}))
            remaining = [s for s in sessions if s.client_id != client_id]
            if len(remaining) == len(sessions):
                return False
            if remaining:
                await coll.replace_one({"_id": user_id}, {"clients": _clients(remaining)})
            else:
                await coll.delete_one({"_id": user_id})
            marks = self._coll("device_marks")
            async with self._writes:
                await marks.delete_many({"user_id": user_id, "client_id": client_id})
            if not remaining:
                return True
            items = [str(d["item_id"]) async for d in self._coll("pending").find(
                {"user_id": user_id, "kind": "message"}, {"item_id": 1})]
            await self._settle(user_id, items, [s.client_id for s in remaining])
        return True

    async def _settle(self, user_id: str, items: list[str], clients: list[str]) -> list[str]:
        """Remove the user's pending ``items`` that every one of ``clients`` has had, with their marks;
        returns those removed (all of them when ``clients`` is empty)."""
        if not items:
            return []
        found = await self._find_ids("device_marks", [mark_key(user_id, i, c) for i in items for c in clients])
        done = [i for i in items if all(mark_key(user_id, i, c) in found for c in clients)]
        await self._delete_ids("pending", [pending_key(user_id, i) for i in done])
        await self._delete_ids("device_marks", [mark_key(user_id, i, c) for i in done for c in clients])
        return done
