"""MongoDB store: what each device is owed at its next connect, one document per device keyed by ``_id``."""

from __future__ import annotations

from chatmq.services.store.base import DeviceOwed
from chatmq.services.store.mongo.base import MongoBase, mongo_errors


class MongoDeviceOwed(MongoBase):
    """``device_owed`` ``{_id: device_id, commands: [command ids], jobs: [job ids]}``, read, replaced and
    deleted (when it owes nothing) by ``_id`` only."""

    async def get_owed(self, device_id: str) -> DeviceOwed:
        with mongo_errors():
            doc = await self._coll("device_owed").find_one({"_id": device_id})
        if doc is None:
            return DeviceOwed(device_id)
        return DeviceOwed(device_id, tuple(doc["commands"]), tuple(doc["jobs"]))

    async def put_owed(self, owed: DeviceOwed) -> None:
        with mongo_errors():
            if not owed.commands and not owed.jobs:
                await self._coll("device_owed").delete_one({"_id": owed.device_id})
                return
            await self._coll("device_owed").replace_one(
                {"_id": owed.device_id}, {"commands": list(owed.commands), "jobs": list(owed.jobs)}, upsert=True)
