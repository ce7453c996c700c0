"""``BusDeviceLink``: how the API tells the device worker about a change (``chat.devices``)."""

from __future__ import annotations

from chatmq.core.bus.base import Bus
from chatmq.core.ids import now_ms
from chatmq.core.records import ShadowChanged
from chatmq.core.topics import DEVICES


class BusDeviceLink:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def shadow_changed(self, device_id: str) -> None:
        """The desired state of ``device_id`` changed: an online device gets its new delta."""
        await self._bus.publish(DEVICES, device_id.encode(), ShadowChanged(device_id, now_ms()))
