"""``DeviceWorker``: consumes ``chat.devices`` (keyed by device, so one consumer at a time per device).

* ``DeviceUp`` (the device subscribed to its inbox on a node): the device's status becomes online on
  that node (with the subscription's epoch); it gets its shadow's delta when there is one; the owner
  gets a ``device_connected`` event, and ``chat.device_events`` a ``DeviceEvent``.
* ``DeviceDown``: offline, unless a newer subscription (a higher epoch) came first; ``device_disconnected``.
* ``DeviceOut``: ``shadow_report`` merges into the reported state (answered with an ``error`` when its
  ``version`` is stale or the shadow would break its bounds); ``shadow_get`` is answered with ``shadow``.
* ``ShadowChanged`` (the API changed the desired state): an online device gets the new delta.

Envelopes for a device go to its node's ``chat.deliver.<node>`` as ``Delivery.to_device``.
"""

from __future__ import annotations

import logging

import msgspec

from chatmq.core.bus.base import Bus, Record
from chatmq.core.device_envelopes import ShadowGet, ShadowReport, shadow_delta_envelope, shadow_envelope
from chatmq.core.envelopes import ErrorCode, encode_event, error_envelope, event_envelope
from chatmq.core.errors import ConflictError
from chatmq.core.records import (
    DEVICE_RECORDS,
    Delivery,
    DeviceDown,
    DeviceEvent,
    DeviceOut,
    DeviceUp,
    ShadowChanged,
)
from chatmq.core.topics import DEVICE_EVENTS, DEVICES, deliver_topic
from chatmq.core.worker import BusWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store.base import DeviceStatus, ShadowLimitError, Store

log = logging.getLogger(__name__)


class DeviceWorker(BusWorker):
    def __init__(self, bus: Bus, store: Store, outlet: Outlet) -> None:
        super().__init__(bus, "devices", [DEVICES])
        self._store = store
        self._outlet = outlet

    async def process(self, records: list[Record]) -> None:
        for item in DEVICE_RECORDS.read_all(records):
            if isinstance(item, DeviceUp):
                await self._up(item)
            elif isinstance(item, DeviceDown):
                await self._down(item)
            elif isinstance(item, DeviceOut):
                await self._outbox(item)
            else:
                await self._shadow_changed(item)

    async def send(self, device: str, node: str, envs: list[bytes]) -> None:
        """Envelopes for ``device``'s inbox, through ``node`` (dropped there if it is not connected)."""
        delivery = Delivery.to_device(device, [msgspec.Raw(e) for e in envs])
        await self._bus.publish(deliver_topic(node), device.encode(), delivery)

    async def _up(self, up: DeviceUp) -> None:
        current = await self._store.get_device_status(up.device)
        if current.epoch > up.epoch:
            return  # a newer subscription is recorded
        await self._store.put_device_status(DeviceStatus(up.device, True, up.node, up.epoch, up.ts, up.ts, None))
        shadow = await self._store.get_shadow(up.device)
        delta = shadow.delta()
        if delta:
            await self.send(up.device, up.node, [shadow_delta_envelope(shadow.version, delta)])
        await self._event(DeviceEvent("device_connected", up.device, up.owner, None, up.ts))

    async def _down(self, down: DeviceDown) -> None:
        current = await self._store.get_device_status(down.device)
        if current.epoch > down.epoch or (current.epoch == down.epoch and current.node != down.node):
            return  # the device is reading its inbox elsewhere now
        await self._store.put_device_status(DeviceStatus(down.device, False, None, down.epoch, current.connected_at,
                                                         down.ts, down.reason))
        await self._event(DeviceEvent("device_disconnected", down.device, down.owner, down.reason, down.ts))

    async def _event(self, event: DeviceEvent) -> None:
        await self._bus.publish(DEVICE_EVENTS, event.device_id.encode(), event)
        if event.owner is not None:
            env = event_envelope(event.event, device_id=event.device_id, reason=event.reason, ts=event.ts)
            await self._outlet.notify([event.owner], encode_event(env))

    async def _outbox(self, out: DeviceOut) -> None:
        env = out.env
        if isinstance(env, ShadowGet):
            shadow = await self._store.get_shadow(out.device)
            await self.send(out.device, out.node, [shadow_envelope(shadow.document())])
            return
        assert isinstance(env, ShadowReport)
        try:
            await self._store.change_shadow(out.device, reported=env.state, version=env.version)
        except ConflictError as exc:
            await self.send(out.device, out.node, [error_envelope("conflict", str(exc))])
        except ShadowLimitError as exc:
            code: ErrorCode = "too_large" if exc.kind == "too_large" else "invalid_envelope"
            await self.send(out.device, out.node, [error_envelope(code, str(exc))])

    async def _shadow_changed(self, changed: ShadowChanged) -> None:
        status = await self._store.get_device_status(changed.device)
        if not status.online or status.node is None:
            return  # it gets the delta when it next connects
        shadow = await self._store.get_shadow(changed.device)
        delta = shadow.delta()
        if delta:
            await self.send(changed.device, status.node, [shadow_delta_envelope(shadow.version, delta)])
