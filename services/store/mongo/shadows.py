"""MongoDB store: device shadows, one document per device keyed by ``_id``, written by
compare-and-swap on its version."""

from __future__ import annotations

import json

from pymongo.errors import DuplicateKeyError

from chatmq.services.store.base import Shadow
from chatmq.services.store.mongo.base import MongoBase, mongo_errors


class MongoShadows(MongoBase):
    """``shadows`` ``{_id: device_id, desired, reported (JSON text), version, updated_at}``.

    The first version is an insert (a duplicate key: another writer came first); later ones a
    ``replace_one`` by ``_id`` and the previous version. That filter is exact on MongoDB; on FerretDB
    1.x (updates not atomic, see the package docstring) two processes changing one shadow at the
    same moment may both win, so the writes of this store object go one at a time under its lock.
    """

    async def get_shadow(self, device_id: str) -> Shadow:
        with mongo_errors():
            doc = await self._coll("shadows").find_one({"_id": device_id})
        if doc is None:
            return Shadow(device_id)
        return Shadow(device_id, json.loads(doc["desired"]), json.loads(doc["reported"]), int(doc["version"]),
                      int(doc["updated_at"]))

    async def swap_shadow(self, shadow: Shadow) -> bool:
        coll = self._coll("shadows")
        doc = {"desired": json.dumps(shadow.desired), "reported": json.dumps(shadow.reported),
               "version": shadow.version, "updated_at": shadow.updated_at}
        async with self._lock:
            with mongo_errors():
                if shadow.version == 1:
                    try:
                        await coll.insert_one({"_id": shadow.device_id, **doc})
                    except DuplicateKeyError:
                        return False
                    return True
                result = await coll.replace_one({"_id": shadow.device_id, "version": shadow.version - 1}, doc)
        return result.matched_count == 1
