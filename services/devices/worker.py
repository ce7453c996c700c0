"""``DeviceWorker``: consumes ``chat.devices`` (keyed by device, so one consumer at a time per device).

* ``DeviceUp`` (the device subscribed to its inbox on a node): the device's status becomes online on
  that node (with the subscription's epoch); it gets its shadow's delta when there is one; the owner
  gets a ``device_connected`` event, and ``chat.device_events`` a ``DeviceEvent``.
* ``DeviceDown``: offline, unless a newer subscription (a higher epoch) came first; ``device_disconnected``.
* ``DeviceOut``: ``shadow_report`` merges into the reported state (answered with an ``error`` when its
  ``version`` is stale or the shadow would break its bounds); ``shadow_get`` is answered with ``shadow``.
* ``ShadowChanged`` (the API changed the desired state): an online device gets the new delta.
* ``CommandRequest`` (the API stored a command): an online device gets the ``command``; for an offline one
  a plain command fails (``device_offline``), a persistent one stays ``queued`` and goes out (its status
  ``sent``) with the device's next ``DeviceUp``, as does a persistent one sent before and not yet answered
  (the same id: a well-behaved device runs each id once), until it expires. A persistent command is
  recorded in the device's ``DeviceOwed`` until it finishes (``failed`` with ``device_queue_full`` when
  the device is owed ``MAX_OWED`` already).
* ``command_result`` from the device: the command becomes ``succeeded``/``failed`` (once: a repeated or
  late answer, or one for another device's command, is ignored) and a ``CommandDone`` goes to
  ``chat.command-results`` for the API copy waiting for it.
* ``UserCommand`` (a user's ``command`` from its outbox): for a device that is not the user's (or not live)
  the user gets an ``error`` ``forbidden``, for params beyond a shadow's bounds ``too_large`` /
  ``invalid_envelope``; else it is stored (its id derived from the user and the user's id of it, so a
  resend is not run again but answered again once finished) and sent like a plain command, ``failed``
  with ``device_offline`` when the device is offline. When it finishes the user gets ``command_result``
  in its inbox; a timer of this process re-checks it when it expires (a restart loses the timer: the
  command then reads ``expired`` without the user being told).

* ``JobRequest`` (the API stored a job): the job goes into the device's ``DeviceOwed`` (its execution
  ``failed`` with ``device_queue_full`` when the device is owed ``MAX_OWED`` already); with ``send`` an online
  device gets the ``job`` (its execution ``sent``); an offline one gets it, with every job it has not
  finished, when it next subscribes; ``job_update`` from the device records where it stands (ignored once
  finished, or when the job was canceled), and a finished job leaves ``DeviceOwed``.

This worker is the only writer of a command's status after the API inserted it, and of ``DeviceOwed``
(records of one device come in order to one consumer); a command not finished by its ``expires_at`` reads
as ``expired``. A device's connect reads its ``DeviceOwed`` and then each thing it names by key: no query
over every device's commands or jobs.

Envelopes for a device go to its node's ``chat.deliver.<node>`` as ``Delivery.to_device``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import replace

import msgspec

from chatmq.core.bus.base import Bus, Record
from chatmq.core.device_envelopes import (
    CommandResult,
    JobUpdate,
    ShadowGet,
    ShadowReport,
    command_envelope,
    job_envelope,
    shadow_delta_envelope,
    shadow_envelope,
    user_command_result_envelope,
)
from chatmq.core.envelopes import ErrorCode, encode_event, error_envelope, event_envelope
from chatmq.core.errors import ChatMQError, ConflictError
from chatmq.core.ids import now_ms
from chatmq.core.records import (
    DEVICE_RECORDS,
    CommandDone,
    CommandRequest,
    Delivery,
    DeviceDown,
    DeviceEvent,
    DeviceOut,
    DeviceUp,
    JobRequest,
    ShadowChanged,
    UserCommand,
)
from chatmq.core.topics import COMMAND_RESULTS, DEVICE_EVENTS, DEVICES, deliver_topic
from chatmq.core.worker import BusWorker
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store.base import (
    DeviceCommand,
    DeviceStatus,
    DocumentLimitError,
    Job,
    JobExecution,
    Store,
    check_document,
)

log = logging.getLogger(__name__)

#: The most persistent commands, and the most jobs, a device gets at one connect (the oldest; newer ones wait
#: for a later connect).
MAX_WAITING = 100

#: The error of a persistent command, or of a job's execution, for a device owed ``MAX_OWED`` already.
QUEUE_FULL = "device_queue_full"

#: Seconds after a user's command expired that it is looked at again.
EXPIRY_MARGIN = 0.2


def user_command_id(sender: str, client_id: str) -> str:
    """The command id of user ``sender``'s command ``client_id`` (one per pair, so a resend is the same command)."""
    return "u" + hashlib.sha256(f"{len(sender)}:{sender}:{client_id}".encode()).hexdigest()[:24]


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
            elif isinstance(item, CommandRequest):
                await self._command(item)
            elif isinstance(item, JobRequest):
                await self._job_request(item)
            elif isinstance(item, UserCommand):
                await self._user_command(item)
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
        await self._send_waiting(up.device, up.node)
        await self._event(DeviceEvent("device_connected", up.device, up.owner, None, up.ts))

    async def _send_waiting(self, device: str, node: str) -> None:
        """What a device that just subscribed is owed: its persistent commands not finished, then its jobs
        not finished (sent again with the same ids), oldest first, at most ``MAX_WAITING`` of each (the
        rest at a later connect). What has finished or expired meanwhile is dropped from ``DeviceOwed``."""
        owed = await self._store.get_owed(device)
        now = now_ms()
        done_commands: list[str] = []
        sent = 0
        for command_id in owed.commands:
            command = await self._store.get_command(command_id)
            if command is None or command.finished():
                done_commands.append(command_id)
            elif command.seen_at(now).status == "expired":
                await self._store.put_command(replace(command, status="expired"))
                done_commands.append(command_id)
            elif sent < MAX_WAITING:
                await self._deliver_command(command, node)
                sent += 1
        done_jobs: list[str] = []
        sent = 0
        for job_id in owed.jobs:
            execution = await self._store.get_execution(job_id, device)
            job = await self._store.get_job(job_id)
            if execution is None or job is None or execution.seen_in(job).finished():
                done_jobs.append(job_id)
            elif sent < MAX_WAITING:
                await self._deliver_job(job, execution, node)
                sent += 1
        if done_commands or done_jobs:
            await self._store.put_owed(owed.without(commands=done_commands, jobs=done_jobs))

    async def _deliver_job(self, job: Job, execution: JobExecution, node: str) -> None:
        await self.send(execution.device_id, node, [job_envelope(job.job_id, job.document)])
        if execution.status == "queued":
            await self._store.put_execution(replace(execution, status="sent", updated_at=now_ms()))

    async def _job_request(self, request: JobRequest) -> None:
        execution = await self._store.get_execution(request.job, request.device)
        job = await self._store.get_job(request.job)
        if execution is None or job is None or execution.seen_in(job).finished():
            return
        owed = (await self._store.get_owed(request.device)).with_job(request.job)
        if owed is None:
            await self._store.put_execution(replace(execution, status="failed", details={"error": QUEUE_FULL},
                                                    updated_at=now_ms()))
            return
        await self._store.put_owed(owed)
        if not request.send or execution.status != "queued":
            return
        status = await self._store.get_device_status(request.device)
        if status.online and status.node is not None:
            await self._deliver_job(job, execution, status.node)

    async def _job_update(self, device: str, update: JobUpdate) -> None:
        execution = await self._store.get_execution(update.id, device)
        job = await self._store.get_job(update.id)
        if execution is None or job is None or execution.seen_in(job).finished():
            log.info("device %s reported on job %s, which it does not owe: ignored", device, update.id)
            return
        new = replace(execution, status=update.status, progress=update.progress, details=update.details,
                      updated_at=now_ms())
        await self._store.put_execution(new)
        if new.finished():
            await self._store.put_owed((await self._store.get_owed(device)).without(jobs=[update.id]))

    async def _deliver_command(self, command: DeviceCommand, node: str) -> None:
        envelope = command_envelope(command.command_id, command.name, command.params, command.expires_at)
        await self.send(command.device_id, node, [envelope])
        if command.status == "queued":
            await self._store.put_command(replace(command, status="sent"))

    async def _command(self, request: CommandRequest) -> None:
        command = await self._store.get_command(request.id)
        if command is None or command.finished():
            return
        if command.seen_at(now_ms()).status == "expired":
            await self._finish(replace(command, status="expired"))
            return
        if command.persistent:
            owed = (await self._store.get_owed(request.device)).with_command(command.command_id)
            if owed is None:
                await self._finish(replace(command, status="failed", error=QUEUE_FULL))
                return
            await self._store.put_owed(owed)
        status = await self._store.get_device_status(request.device)
        if status.online and status.node is not None:
            await self._deliver_command(command, status.node)
        elif not command.persistent:
            await self._finish(replace(command, status="failed", error="device_offline"))

    async def _user_command(self, cmd: UserCommand) -> None:
        device = await self._store.get_device(cmd.device)
        if device is None or device.revoked or device.owner_id != cmd.sender:
            await self._outlet.notify([cmd.sender], error_envelope("forbidden", f"{cmd.device} is not your device",
                                                                   cmd.id))
            return
        try:
            check_document("params", cmd.params)
        except DocumentLimitError as exc:
            code: ErrorCode = "too_large" if exc.kind == "too_large" else "invalid_envelope"
            await self._outlet.notify([cmd.sender], error_envelope(code, str(exc), cmd.id))
            return
        command = DeviceCommand(user_command_id(cmd.sender, cmd.id), cmd.device, cmd.name, cmd.params, False,
                                "sent", cmd.ts, cmd.ts + cmd.timeout_s * 1000, requester=cmd.sender,
                                client_id=cmd.id)
        try:
            await self._store.add_command(command)
        except ConflictError:  # sent again: answered again once it has finished, else still under way
            earlier = await self._store.get_command(command.command_id)
            if earlier is not None and earlier.finished():
                await self._answer_requester(earlier)
            return
        status = await self._store.get_device_status(cmd.device)
        if not status.online or status.node is None:
            await self._finish(replace(command, status="failed", error="device_offline"))
            return
        await self._deliver_command(command, status.node)
        self._tasks.spawn(self._check_when_expired(command), f"expiry-{command.command_id}")

    async def _check_when_expired(self, command: DeviceCommand) -> None:
        """Once ``command`` has expired, have this worker look at it again (in order with the device's records):
        not answered by then, it finishes ``expired`` and its requester is told."""
        await asyncio.sleep(max(0.0, (command.expires_at - now_ms()) / 1000) + EXPIRY_MARGIN)
        request = CommandRequest(command.device_id, command.command_id, command.name, command.params, False,
                                 command.expires_at)
        try:
            await self._bus.publish(DEVICES, command.device_id.encode(), request)
        except ChatMQError as exc:
            log.warning("command %s: its expiry could not be checked: %s", command.command_id, exc)

    async def _answer_requester(self, command: DeviceCommand) -> None:
        if command.requester is None or command.client_id is None:
            return
        env = user_command_result_envelope(command.client_id, command.command_id, command.device_id, command.status,
                                           command.result, command.error)
        await self._outlet.notify([command.requester], env)

    async def _finish(self, command: DeviceCommand) -> None:
        await self._store.put_command(command)
        await self._answer_requester(command)
        if command.persistent:
            await self._store.put_owed((await self._store.get_owed(command.device_id)).without(
                commands=[command.command_id]))
        assert command.status in ("succeeded", "failed", "expired")
        done = CommandDone(command.command_id, command.device_id, command.status, command.result, command.error)
        await self._bus.publish(COMMAND_RESULTS, command.command_id.encode(), done)

    async def _result(self, device: str, answer: CommandResult) -> None:
        command = await self._store.get_command(answer.id)
        if command is None or command.device_id != device or command.finished():
            log.info("device %s answered command %s, which it does not owe: ignored", device, answer.id)
            return
        if command.seen_at(now_ms()).status == "expired":
            await self._finish(replace(command, status="expired"))
            return
        if answer.ok:
            await self._finish(replace(command, status="succeeded", result=answer.result, error=None))
        else:
            await self._finish(replace(command, status="failed", result=answer.result,
                                       error=answer.error or "failed"))

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
        if isinstance(env, CommandResult):
            await self._result(out.device, env)
            return
        if isinstance(env, JobUpdate):
            await self._job_update(out.device, env)
            return
        if isinstance(env, ShadowGet):
            shadow = await self._store.get_shadow(out.device)
            await self.send(out.device, out.node, [shadow_envelope(shadow.document())])
            return
        assert isinstance(env, ShadowReport)
        try:
            await self._store.change_shadow(out.device, reported=env.state, version=env.version)
        except ConflictError as exc:
            await self.send(out.device, out.node, [error_envelope("conflict", str(exc))])
        except DocumentLimitError as exc:
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
