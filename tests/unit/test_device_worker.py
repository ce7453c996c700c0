"""``DeviceWorker`` on the real store and the in-process bus: device presence (status, owner events,
``chat.device_events``) across reconnects on two nodes, and commands answered once, late answers ignored."""

from __future__ import annotations

from typing import Any

import orjson

from chatmq.core import ids
from chatmq.core.device_envelopes import CommandResult, JobUpdate
from chatmq.core.records import COMMAND_RESULTS as DONE_RECORDS
from chatmq.core.records import DEVICE_EVENTS as EVENT_RECORDS
from chatmq.core.records import CommandRequest, Delivery, DeviceDown, DeviceOut, DeviceUp, JobRequest
from chatmq.core.topics import COMMAND_RESULTS, DEVICE_EVENTS, DEVICES
from chatmq.services.devices.worker import DeviceWorker
from chatmq.services.store.base import MAX_OWED, DeviceCommand, DeviceOwed, Job
from tests.unit.chat_fixtures import NODE, OTHER_NODE, Chat, Probe, record


def _device_envs(chat: Chat, records: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for r in records:
        item = r.item
        assert isinstance(item, Delivery)
        if item.device is not None:
            out += [(r.topic, orjson.loads(bytes(e))) for e in item.envs]
    return out


async def test_presence_follows_the_newest_subscription_and_reaches_owner_and_bus(chat: Chat) -> None:
    owner = await chat.user()
    chat.online(owner)
    events = Probe(chat.bus, [DEVICE_EVENTS], group="events-probe")
    await events.start()
    worker = DeviceWorker(chat.bus, chat.store, chat.outlet)
    try:
        await worker.process([record(DEVICES, "d1", DeviceUp("d1", owner, NODE, 10, 1000))])
        # it moved to the other node before the first node's release came through
        await worker.process([record(DEVICES, "d1", DeviceUp("d1", owner, OTHER_NODE, 20, 2000))])
        await worker.process([record(DEVICES, "d1", DeviceDown("d1", owner, NODE, 10, 2500))])
        status = await chat.store.get_device_status("d1")
        assert (status.online, status.node, status.connected_at) == (True, OTHER_NODE, 2000)
        await worker.process([record(DEVICES, "d1", DeviceDown("d1", owner, OTHER_NODE, 20, 3000))])
        status = await chat.store.get_device_status("d1")
        assert (status.online, status.last_seen, status.disconnect_reason) == (False, 3000, "disconnected")

        published = [EVENT_RECORDS.read(r) for r in await events.drain()]
        assert [(e.event, e.device_id, e.owner, e.ts) for e in published] == [
            ("device_connected", "d1", owner, 1000), ("device_connected", "d1", owner, 2000),
            ("device_disconnected", "d1", owner, 3000)]
        to_owner = [orjson.loads(bytes(e)) for r in await chat.probe.drain()
                    for e in (r.item.envs if isinstance(r.item, Delivery) and r.item.user == owner else [])]
        assert [(e["event"], e["device_id"], e["reason"]) for e in to_owner] == [
            ("device_connected", "d1", None), ("device_connected", "d1", None),
            ("device_disconnected", "d1", "disconnected")]
    finally:
        await events.stop()


async def test_a_command_is_answered_once_and_a_late_answer_is_ignored(chat: Chat) -> None:
    done = Probe(chat.bus, [COMMAND_RESULTS], group="done-probe")
    await done.start()
    worker = DeviceWorker(chat.bus, chat.store, chat.outlet)
    now = ids.now_ms()
    try:
        await chat.store.add_command(DeviceCommand("c1", "d1", "reboot", {}, False, "sent", now, now + 60_000))
        await chat.store.add_command(DeviceCommand("c2", "d1", "reboot", {}, False, "sent", now - 9000, now - 1))
        answer = CommandResult("c1", True, {"up": True})
        for _ in range(2):
            await worker.process([record(DEVICES, "d1", DeviceOut("d1", None, NODE, answer))])
        await worker.process([record(DEVICES, "d2", DeviceOut("d2", None, NODE, CommandResult("c2", True)))])
        await worker.process([record(DEVICES, "d1", DeviceOut("d1", None, NODE, CommandResult("c2", True)))])
        results = [DONE_RECORDS.read(r) for r in await done.drain()]
        assert [(d.id, d.status, d.result) for d in results] == [("c1", "succeeded", {"up": True}),
                                                               ("c2", "expired", None)]
        stored = await chat.store.get_command("c2")
        assert stored is not None
        assert stored.status == "expired"
    finally:
        await done.stop()


async def test_persistent_commands_go_out_at_connect_oldest_first_expired_ones_do_not(chat: Chat) -> None:
    worker = DeviceWorker(chat.bus, chat.store, chat.outlet)
    now = ids.now_ms()
    for cid, at, expires in (("c1", now - 3, now + 60_000), ("c2", now - 2, now - 1), ("c3", now - 1, now + 60_000)):
        command = DeviceCommand(cid, "d1", "update", {"n": cid}, True, "queued", at, expires)
        await chat.store.add_command(command)
        if cid != "c2":
            await worker.process([record(DEVICES, "d1", CommandRequest("d1", cid, "update", command.params, True,
                                                                      expires))])
    assert await chat.store.get_owed("d1") == DeviceOwed("d1", ("c1", "c3"))
    await chat.store.put_owed(DeviceOwed("d1", ("c1", "c2", "c3")))  # c2 was owed, and expired while away
    await worker.process([record(DEVICES, "d1", DeviceUp("d1", None, NODE, 10, ids.now_ms()))])
    sent = [env for _topic, env in _device_envs(chat, await chat.probe.drain())]
    assert [(e["type"], e["id"]) for e in sent] == [("command", "c1"), ("command", "c3")]
    statuses = {c.command_id: c.status for c in await chat.store.device_commands("d1")}
    assert statuses == {"c1": "sent", "c2": "expired", "c3": "sent"}
    # c1 answered; at the next connect only c3 (not answered) goes out again, with its id
    await worker.process([record(DEVICES, "d1", DeviceOut("d1", None, NODE, CommandResult("c1", True)))])
    await worker.process([record(DEVICES, "d1", DeviceDown("d1", None, NODE, 10, ids.now_ms()))])
    await worker.process([record(DEVICES, "d1", DeviceUp("d1", None, NODE, 11, ids.now_ms()))])
    sent = [env for _topic, env in _device_envs(chat, await chat.probe.drain())]
    assert [(e["type"], e["id"]) for e in sent] == [("command", "c3")]
    assert await chat.store.get_owed("d1") == DeviceOwed("d1", ("c3",))


async def test_jobs_are_owed_until_finished_and_a_paced_one_waits_for_its_turn(chat: Chat) -> None:
    worker = DeviceWorker(chat.bus, chat.store, chat.outlet)
    await chat.store.add_job(Job("j1", "u1", {"fw": 1}, 1000), ["d1"])
    await chat.store.add_job(Job("j2", "u1", {"fw": 2}, 2000), ["d1"])
    await worker.process([record(DEVICES, "d1", DeviceUp("d1", None, NODE, 10, ids.now_ms()))])
    await worker.process([record(DEVICES, "d1", JobRequest("d1", "j1")),
                          record(DEVICES, "d1", JobRequest("d1", "j2", send=False))])  # paced: not its turn
    sent = [env for _topic, env in _device_envs(chat, await chat.probe.drain())]
    assert [(e["type"], e["id"]) for e in sent] == [("job", "j1")]
    assert await chat.store.get_owed("d1") == DeviceOwed("d1", (), ("j1", "j2"))
    await worker.process([record(DEVICES, "d1", DeviceOut("d1", None, NODE, JobUpdate("j1", "succeeded")))])
    assert await chat.store.get_owed("d1") == DeviceOwed("d1", (), ("j2",))
    # it reconnects before j2's turn came: it gets j2 (not j1, finished) now
    await worker.process([record(DEVICES, "d1", DeviceUp("d1", None, NODE, 11, ids.now_ms()))])
    sent = [env for _topic, env in _device_envs(chat, await chat.probe.drain())]
    assert [(e["type"], e["id"]) for e in sent] == [("job", "j2")]
    execution = await chat.store.get_execution("j2", "d1")
    assert execution is not None
    assert execution.status == "sent"


async def test_a_device_owed_too_much_gets_no_more(chat: Chat) -> None:
    worker = DeviceWorker(chat.bus, chat.store, chat.outlet)
    await chat.store.put_owed(DeviceOwed("d1", tuple(f"c{i}" for i in range(MAX_OWED)),
                                         tuple(f"j{i}" for i in range(MAX_OWED))))
    now = ids.now_ms()
    await chat.store.add_command(DeviceCommand("late", "d1", "update", {}, True, "queued", now, now + 60_000))
    await chat.store.add_job(Job("jlate", "u1", {}, now), ["d1"])
    await worker.process([record(DEVICES, "d1", CommandRequest("d1", "late", "update", {}, True, now + 60_000)),
                          record(DEVICES, "d1", JobRequest("d1", "jlate"))])
    command = await chat.store.get_command("late")
    execution = await chat.store.get_execution("jlate", "d1")
    assert command is not None
    assert execution is not None
    assert (command.status, command.error) == ("failed", "device_queue_full")
    assert (execution.status, execution.details) == ("failed", {"error": "device_queue_full"})
