"""MongoDB store: search over message texts.

Each message document carries its body's ``text`` string (``history_doc``). On MongoDB a text index on it
(created by ``start()``) serves ``$text``: whole words, any case, no stemming (language ``none``). FerretDB
1.24 has no text indexes nor ``$text`` (FerretDB issues #416 and #3615; ``create_index`` answers
``IndexNotFound``), so there every word is matched as a case-insensitive substring with ``$regex``, which
FerretDB evaluates in Go over the whole collection: correct, but its time grows with the history.
"""

from __future__ import annotations

import re

from pymongo import DESCENDING

from chatmq.services.store.base import StoredMessage
from chatmq.services.store.mongo.base import Doc, MongoBase, message_doc, mongo_errors, unique


class MongoSearch(MongoBase):
    """``search_messages`` (module docstring)."""

    async def search_messages(self, user_id: str, groups: list[str], words: list[str], conversation: str | None,
                              limit: int) -> list[StoredMessage]:
        mine: list[Doc] = [{"group": None, "sender": user_id}, {"group": None, "to": user_id}]
        wanted = unique(groups)
        if wanted:
            mine.append({"group": {"$in": wanted}})
        clauses: list[Doc] = [{"$or": mine}, {"committed": {"$ne": False}}]
        if conversation is not None:
            clauses.append({"conversation": conversation})
        if self.text_index:
            query: Doc = {"$text": {"$search": " ".join('"' + w.replace('"', "") + '"' for w in words)},
                          "$and": clauses}
        else:
            query = {"$and": [*clauses, *({"text": {"$regex": re.escape(w), "$options": "i"}} for w in words)]}
        with mongo_errors():
            cursor = self._coll("messages").find(query).sort("_id", DESCENDING).limit(limit)
            return [message_doc(doc) async for doc in cursor]
