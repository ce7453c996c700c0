"""How the API reaches devices: ``BusDeviceLink`` puts shadow changes and commands on ``chat.devices``
(keyed by device) and waits for a command's ``CommandDone`` on ``chat.command-results``, which every
API copy reads (``CommandWaiters``), so the answer reaches the REST call whichever copy holds it."""

from __future__ import annotations

import asyncio

from chatmq.core.bus.base import Bus, Record
from chatmq.core.ids import now_ms
from chatmq.core.records import COMMAND_RESULTS as COMMAND_DONE
from chatmq.core.records import CommandDone, CommandRequest, ShadowChanged
from chatmq.core.topics import COMMAND_RESULTS, DEVICES
from chatmq.core.worker import BusWorker
from chatmq.services.store.base import DeviceCommand


class CommandWaiters(BusWorker):
    """The REST calls of this API copy waiting for commands to finish, by command id."""

    def __init__(self, bus: Bus, group: str) -> None:
        super().__init__(bus, group, [COMMAND_RESULTS])
        self._waiting: dict[str, asyncio.Future[CommandDone]] = {}

    def expect(self, command_id: str) -> asyncio.Future[CommandDone]:
        """A future for ``command_id``'s ``CommandDone`` (register before the command goes out; ``forget`` after)."""
        future = self._waiting[command_id] = asyncio.get_running_loop().create_future()
        return future

    def forget(self, command_id: str) -> None:
        self._waiting.pop(command_id, None)

    async def process(self, records: list[Record]) -> None:
        for done in COMMAND_DONE.read_all(records):
            future = self._waiting.pop(done.id, None)
            if future is not None and not future.done():
                future.set_result(done)


class BusDeviceLink:
    def __init__(self, bus: Bus, waiters: CommandWaiters | None = None) -> None:
        self._bus = bus
        self._waiters = waiters

    async def shadow_changed(self, device_id: str) -> None:
        """The desired state of ``device_id`` changed: an online device gets its new delta."""
        await self._bus.publish(DEVICES, device_id.encode(), ShadowChanged(device_id, now_ms()))

    async def send_command(self, command: DeviceCommand, wait: float | None) -> CommandDone | None:
        """Hand a stored command to the device worker; with ``wait``, its ``CommandDone`` when it comes
        within ``wait`` seconds (else None)."""
        request = CommandRequest(command.device_id, command.command_id, command.name, command.params,
                                 command.persistent, command.expires_at)
        if wait is None or self._waiters is None:
            await self._bus.publish(DEVICES, command.device_id.encode(), request)
            return None
        future = self._waiters.expect(command.command_id)
        try:
            await self._bus.publish(DEVICES, command.device_id.encode(), request)
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            return None
        finally:
            self._waiters.forget(command.command_id)
