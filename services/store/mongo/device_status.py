"""MongoDB store: each device's connection status, one document per device keyed by ``_id``."""

from __future__ import annotations

from chatmq.services.store.base import DeviceStatus
from chatmq.services.store.mongo.base import MongoBase, mongo_errors


class MongoDeviceStatus(MongoBase):
    """``device_status`` ``{_id: device_id, online, node, epoch, connected_at, last_seen,
    disconnect_reason}``, read and replaced by ``_id``."""

    async def get_device_status(self, device_id: str) -> DeviceStatus:
        with mongo_errors():
            doc = await self._coll("device_status").find_one({"_id": device_id})
        if doc is None:
            return DeviceStatus(device_id)
        return DeviceStatus(device_id, bool(doc["online"]), doc.get("node"), int(doc.get("epoch", 0)),
                            doc.get("connected_at"), doc.get("last_seen"), doc.get("disconnect_reason"))

    async def put_device_status(self, status: DeviceStatus) -> None:
        doc = {"online": status.online, "node": status.node, "epoch": status.epoch,
               "connected_at": status.connected_at, "last_seen": status.last_seen,
               "disconnect_reason": status.disconnect_reason}
        with mongo_errors():
            await self._coll("device_status").replace_one({"_id": status.device_id}, doc, upsert=True)
