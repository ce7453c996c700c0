"""MongoDB store: the conversation list and users' read markers and mutes.

``conversation_heads`` ``{_id: conversation, a, b, group, last_id, last_sender, last_body, last_ts}``: each
conversation's latest message, replaced by ``_id`` once per conversation per accepted batch (a
conversation's messages are accepted in order, by one router at a time, so the last write is the newest);
``a``/``b`` (the two users of a 1:1 conversation) are indexed and queried by scalar equality.
``conversation_state`` ``{_id: pair_key(user, conversation), user_id, conversation, read_up_to, muted}``.
Off the hot path but for the heads' replace; ``unread`` reads ``messages`` by conversation and id range
(served by the ``(conversation, _id)`` index on MongoDB; a scan in Go on FerretDB 1.24).
"""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from chatmq.services.store.base import ConversationHead, ConversationState, NewMessage
from chatmq.services.store.common import body_text, json_object
from chatmq.services.store.mongo.base import Doc, MongoBase, each, mongo_errors, pair_key, unique


def _head(doc: Doc) -> ConversationHead:
    return ConversationHead(str(doc["_id"]), doc.get("a"), doc.get("b"), doc.get("group"), str(doc["last_id"]),
                            str(doc["last_sender"]), json_object(doc["last_body"]), int(doc["last_ts"]))


class MongoConversations(MongoBase):
    """The conversation list, read markers and mutes (module docstring)."""

    async def _touch_heads(self, messages: list[NewMessage]) -> None:
        """Make each conversation's newest message among ``messages`` (newly stored) its head."""
        newest: dict[str, NewMessage] = {}
        for m in messages:
            if m.conversation not in newest or m.server_id > newest[m.conversation].server_id:
                newest[m.conversation] = m
        heads = self._coll("conversation_heads")
        async with self._writes:
            for m in newest.values():
                a, b = sorted((m.sender, m.to)) if m.to is not None else (None, None)
                head = {"a": a, "b": b, "group": m.group, "last_id": m.server_id, "last_sender": m.sender,
                        "last_body": body_text(m.body), "last_ts": m.ts}
                try:
                    await heads.replace_one({"_id": m.conversation}, head, upsert=True)
                except DuplicateKeyError:  # another process's upsert inserted this new head first: it exists now
                    await heads.replace_one({"_id": m.conversation}, head, upsert=True)

    async def conversation_heads(self, user_id: str, groups: list[str], before: str | None,
                                 limit: int) -> list[ConversationHead]:
        heads = self._coll("conversation_heads")
        with mongo_errors():
            docs = [d async for d in heads.find({"a": user_id})]
            docs += [d async for d in heads.find({"b": user_id}) if d.get("a") != user_id]
            docs += [d for d in await each(heads.find_one({"_id": g}) for g in unique(groups)) if d is not None]
        found = [_head(d) for d in docs if before is None or str(d["last_id"]) < before]
        return sorted(found, key=lambda h: h.last_id, reverse=True)[:limit]

    async def conversation_states(self, user_id: str, conversations: list[str]) -> dict[str, ConversationState]:
        wanted = set(conversations)
        with mongo_errors():
            docs = [d async for d in self._coll("conversation_state").find({"user_id": user_id})]
        return {d["conversation"]: ConversationState(d.get("read_up_to"), bool(d.get("muted", False)))
                for d in docs if d["conversation"] in wanted}

    async def readers(self, conversation: str) -> dict[str, str]:
        with mongo_errors():
            docs = [d async for d in self._coll("conversation_state").find({"conversation": conversation})]
        return {str(d["user_id"]): str(d["read_up_to"]) for d in docs if d.get("read_up_to") is not None}

    async def mark_read(self, user_id: str, conversation: str, up_to: str) -> str | None:
        """Read, then write (one user's marker is moved by that user's requests only)."""
        states = self._coll("conversation_state")
        key = pair_key(user_id, conversation)
        with mongo_errors():
            doc = await states.find_one({"_id": key})
            before = None if doc is None else doc.get("read_up_to")
            if before is None or up_to > before:
                await states.update_one({"_id": key}, {"$set": {"read_up_to": up_to, "user_id": user_id,
                                                                "conversation": conversation}}, upsert=True)
        return None if before is None else str(before)

    async def set_muted(self, user_id: str, conversation: str, muted: bool) -> None:
        with mongo_errors():
            await self._coll("conversation_state").update_one(
                {"_id": pair_key(user_id, conversation)},
                {"$set": {"muted": muted, "user_id": user_id, "conversation": conversation}}, upsert=True)

    async def unread(self, conversation: str, user_id: str, after: str | None, up_to: str | None,
                     limit: int) -> list[tuple[str, str]]:
        ids: Doc = {"$gt": after or ""}
        if up_to is not None:
            ids["$lte"] = up_to
        with mongo_errors():
            cursor = self._coll("messages").find(
                {"conversation": conversation, "_id": ids, "sender": {"$ne": user_id}, "committed": {"$ne": False}},
                {"sender": 1}).sort("_id", ASCENDING).limit(limit)
            return [(str(d["_id"]), str(d["sender"])) async for d in cursor]
