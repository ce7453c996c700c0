"""MongoDB store: the announced presence of users and their presence privacy.

``presence_states`` ``{_id: user_id, state, since, visibility}``: set field by field (``$set``, upserted).
"""

from __future__ import annotations

from typing import cast

from chatmq.services.store.base import PresenceState, Visibility
from chatmq.services.store.mongo.base import MongoBase, each, mongo_errors, unique


def _ms(value: object) -> int | None:
    """A stored time as a plain int (BSON may give an ``Int64``)."""
    return None if value is None else int(cast(int, value))


class MongoPresenceStates(MongoBase):
    """Each user's announced presence and whom it is shown to."""

    async def presence_states(self, user_ids: list[str]) -> dict[str, PresenceState]:
        coll = self._coll("presence_states")
        ids = unique(user_ids)
        with mongo_errors():
            docs = await each(coll.find_one({"_id": u}) for u in ids)  # bounded by the API (100 ids)
        found = {d["_id"]: PresenceState(str(d.get("state", "offline")), _ms(d.get("since")),
                                         cast(Visibility, d.get("visibility", "contacts")))
                 for d in docs if d is not None}
        return {u: found.get(u, PresenceState()) for u in ids}

    async def set_presence_state(self, user_id: str, state: str, since: int) -> None:
        with mongo_errors():
            await self._coll("presence_states").update_one(
                {"_id": user_id}, {"$set": {"state": state, "since": since}}, upsert=True)

    async def set_presence_visibility(self, user_id: str, visibility: Visibility) -> None:
        with mongo_errors():
            await self._coll("presence_states").update_one(
                {"_id": user_id}, {"$set": {"visibility": visibility}}, upsert=True)

    async def present_users(self) -> list[str]:
        with mongo_errors():
            return [d["_id"] async for d in self._coll("presence_states").find({"state": {"$ne": "offline"}},
                                                                                {"_id": 1})]
