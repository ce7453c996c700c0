"""``Housekeeping``: the storage part's periodic passes, each run every ``interval`` seconds (once per
process that runs them: running one twice is harmless), a failing pass logged and tried again next time:
``FileCollector.collect`` (uploads no message named) and ``DeviceExpiry.expire`` (devices that have not
connected for ``device_expiry_days``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from chatmq.core.tasks import cancel_and_wait
from chatmq.services.chat.devices import DeviceBook
from chatmq.services.store.base import Store, UserSession

log = logging.getLogger(__name__)

_DAY = 86_400.0


class Housekeeping:
    def __init__(self, passes: Sequence[Callable[[], Awaitable[object]]], interval: float = 3600.0) -> None:
        self._passes, self._interval = list(passes), interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="housekeeping")

    async def _run(self) -> None:
        while True:
            for one in self._passes:
                try:
                    await one()
                except Exception:  # the store's readiness check reports an outage; try again next time
                    log.warning("housekeeping pass %s failed", getattr(one, "__qualname__", one), exc_info=True)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


class DeviceExpiry:
    """Forgets the devices of users (``Store.stale_sessions``) whose latest connect is ``days`` old, each as
    a sign-out does (``Store.remove_session``): its marks go, and the user's pending messages every remaining
    device has had; the user's devices keep no more pending messages for it. A device that connects again
    afterwards is a new device (it gets the ``sync_window``). ``devices``: the routers' book when they share
    this process (told at once). ``days`` 0: never."""

    def __init__(self, store: Store, days: float, devices: DeviceBook | None = None, batch: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self._store, self._days, self._devices, self._batch, self._clock = store, days, devices, batch, clock

    async def expire(self) -> list[UserSession]:
        """Forget every device not seen for ``days``; return them."""
        if self._days <= 0:
            return []
        cutoff = int((self._clock() - self._days * _DAY) * 1000)
        gone: list[UserSession] = []
        while True:
            stale = await self._store.stale_sessions(cutoff, self._batch)
            removed = 0
            for s in stale:
                if await self._store.remove_session(s.user_id, s.client_id):
                    removed += 1
                    gone.append(s)
                    if self._devices is not None:
                        self._devices.forget(s.user_id)
            if len(stale) < self._batch or not removed:
                break
        if gone:
            log.info("forgot %d devices not seen for %g days", len(gone), self._days)
        return gone
