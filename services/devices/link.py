"""How the API reaches devices: ``BusDeviceLink`` puts shadow changes and commands on ``chat.devices``
(keyed by device) and waits for a command's ``CommandDone`` on ``chat.command-results``, which every
API copy reads (``CommandWaiters``), so the answer reaches the REST call whichever copy holds it."""

from __future__ import annotations

import asyncio
import logging

from chatmq.core.bus.base import Bus, Record
from chatmq.core.ids import now_ms
from chatmq.core.records import COMMAND_RESULTS as COMMAND_DONE
from chatmq.core.records import CommandDone, CommandRequest, JobRequest, ShadowChanged
from chatmq.core.topics import COMMAND_RESULTS, DEVICES
from chatmq.core.worker import BusWorker
from chatmq.services.store.base import DeviceCommand

log = logging.getLogger(__name__)


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
        self._rollouts: set[asyncio.Task[None]] = set()

    async def shadow_changed(self, device_id: str) -> None:
        """The desired state of ``device_id`` changed: an online device gets its new delta."""
        await self._bus.publish(DEVICES, device_id.encode(), ShadowChanged(device_id, now_ms()))

    async def send_job(self, job_id: str, device_ids: list[str], per_minute: int | None = None) -> None:
        """Hand a stored job to the device worker, one record per device; with ``per_minute``, sent to that
        many online devices a minute (the rest follow in the background; every device is owed it at once,
        so one that connects meanwhile gets it then, and none is left out if this process dies)."""
        for device in device_ids:
            await self._bus.publish(DEVICES, device.encode(), JobRequest(device, job_id, send=per_minute is None))
        if per_minute is None:
            return
        task = asyncio.create_task(self._paced(job_id, device_ids, per_minute), name=f"rollout-{job_id}")
        self._rollouts.add(task)
        task.add_done_callback(self._rollouts.discard)

    async def _paced(self, job_id: str, device_ids: list[str], per_minute: int) -> None:
        pause = 60.0 / per_minute
        try:
            for device in device_ids:
                await self._bus.publish(DEVICES, device.encode(), JobRequest(device, job_id))
                await asyncio.sleep(pause)
        except Exception:  # the devices left get the job when they next connect
            log.exception("rollout of job %s stopped", job_id)

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
