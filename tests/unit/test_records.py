"""The bus records' wire format: each record's JSON is pinned by a golden file
(``tests/unit/golden/records/<name>.json``), so a change of format shows; the records a running
cluster's topics still hold from before the records were typed decode the same way.

``CHATMQ_UPDATE_GOLDEN=1`` rewrites the golden files (review the diff: a changed file is a changed
wire format, which records already on a cluster's topics must still decode).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from chatmq.core import records as r
from chatmq.core.bus.base import Record
from chatmq.core.device_envelopes import CommandResult, JobUpdate, ShadowGet, ShadowReport, shadow_delta_envelope
from chatmq.core.envelopes import (
    DeleteIn,
    EditIn,
    MessageIn,
    ReactionIn,
    ReceiptIn,
    TypingIn,
    ack_envelope,
    action_envelope,
    message_envelope,
)

GOLDEN = Path(__file__).parent / "golden" / "records"
BODY = msgspec.Raw(b'{"text":"hi"}')
MESSAGE = message_envelope("s1", "c1", "ua", "ub", None, BODY, 1767225600000)
ACK = ack_envelope("c1", "s1", 1767225600000)
DELTA = shadow_delta_envelope(3, {"led": "on"})
TEMPLATE = message_envelope("s2", "c2", "ua", None, "g1", BODY, 1767225600000)

SAMPLES: dict[str, tuple[r.Codec[Any], r.BusItem]] = {
    "outbox_message": (r.OUTBOX_RECORDS, r.Outbox("ua", "n1", MessageIn(id="c1", to="ub", body=BODY))),
    "outbox_group_message": (r.OUTBOX_RECORDS, r.Outbox("ua", "n1", MessageIn(id="c2", group="g1", body=BODY))),
    "outbox_receipt": (r.OUTBOX_RECORDS, r.Outbox("ub", "n2", ReceiptIn("delivered", ("s1", "s2")))),
    "outbox_reply": (r.OUTBOX_RECORDS, r.Outbox("ua", "n1", MessageIn(id="c3", to="ub", body=BODY, reply_to="s1"))),
    "outbox_edit": (r.OUTBOX_RECORDS, r.Outbox("ua", "n1", EditIn("c4", "s1", BODY))),
    "outbox_delete": (r.OUTBOX_RECORDS, r.Outbox("ua", "n1", DeleteIn("c5", "s1", "everyone"))),
    "outbox_reaction": (r.OUTBOX_RECORDS, r.Outbox("ub", "n2", ReactionIn("c6", "s1", "👍", remove=True))),
    "deliver_actions": (r.DELIVERIES, r.Delivery.live("ub", [msgspec.Raw(action_envelope(
        "s7", "c4", "ua", "ub", None, EditIn("c4", "s1", BODY), 1767225600000)), msgspec.Raw(action_envelope(
            "s8", "c6", "ua", None, "g1", ReactionIn("c6", "s2", "👍"), 1767225600000))])),
    "outbox_blocks_changed": (r.OUTBOX_RECORDS, r.Outbox("ua", "", r.BlocksChanged("ub"))),
    "presence_online": (r.PRESENCE_RECORDS, r.Online("ua", "n1", 1767225600000000001)),
    "presence_online_client": (r.PRESENCE_RECORDS, r.Online("ua", "n1", 1767225600000000001, "phone-1")),
    "outbox_typing": (r.OUTBOX_RECORDS, r.Outbox("ua", "n1", TypingIn(to="ub", state="start"), "phone-1")),
    "deliver_copy": (r.DELIVERIES, r.Delivery.live("ua", [msgspec.Raw(MESSAGE)], skip="phone-1")),
    "deliver_replay_page_client": (r.DELIVERIES, r.Delivery.page("ub", [msgspec.Raw(MESSAGE)], 7, "laptop-2")),
    "presence_offline": (r.PRESENCE_RECORDS, r.Offline("ua", "n1", 1767225600000000001)),
    "presence_node_started": (r.PRESENCE_RECORDS, r.NodeStarted("n1", 1767225600000000000, 1767225600000)),
    "presence_state": (r.PRESENCE_RECORDS, r.StateSet("ua", "away")),
    "presence_visibility": (r.PRESENCE_RECORDS, r.VisibilitySet("ua", "nobody")),
    "deliver_live": (r.DELIVERIES, r.Delivery.live("ua", [msgspec.Raw(ACK), msgspec.Raw(MESSAGE)])),
    "deliver_replay_page": (r.DELIVERIES, r.Delivery.page("ub", [msgspec.Raw(MESSAGE)], 7)),
    "deliver_replay_done": (r.DELIVERIES, r.Delivery.done("ub", 7)),
    "deliver_fan_out": (r.DELIVERIES, r.Delivery.fan_out(["ub", "uc"], msgspec.Raw(TEMPLATE))),
    "notice": (r.NOTICES, r.Notice(["ub", "uc"], msgspec.Raw(b'{"type":"event","event":"group_renamed",'
                                                             b'"group_id":"g1","name":"x","by":"ua"}'))),
    "connection_connected": (r.CONNECTION_RECORDS, r.Connected("user", "ua", "phone-1", "n1", "ws", 1767225600000)),
    "connection_disconnected": (r.CONNECTION_RECORDS,
                                r.Disconnected("device", "d1", "sensor-1", "n1", None, 1767225600000)),
    "control_kick": (r.COMMANDS, r.Kick("phone-1", "n1", 1767225600000)),
    "control_kick_principal": (r.COMMANDS, r.KickPrincipal("ua", 1767225600000)),
    "control_takeover": (r.COMMANDS, r.Takeover("phone-1", "n2", 1767225600000, "user", "ua")),
    "push_message": (r.PUSHES, r.PushRecord("ub", "message", "ua", False, "s1", "ua", preview="hi")),
    "push_event": (r.PUSHES, r.PushRecord("ub", "event", "g1", True, sender="ua", event="member_added")),
    "telemetry": (r.TELEMETRY_RECORDS, r.TelemetryRecord("d1", "ua", {"temp": 21.5, "ts": 1767225600000},
                                                         1767225600123)),
    "heartbeat": (r.HEARTBEATS, r.Heartbeat(
        instance="router-1", part="router", node=None, host="h", pid=7, ops_url="http://h:9100",
        started=1767225600000, ready=False, not_ready={"MongoStore": "no answer"}, interval=5.0,
        ts=1767225605000)),
    "heartbeat_stopped": (r.HEARTBEATS, r.Heartbeat.stop("router-1", 1767225609000)),
    "deliver_device": (r.DELIVERIES, r.Delivery.to_device("d1", [msgspec.Raw(DELTA)])),
    "device_up": (r.DEVICE_RECORDS, r.DeviceUp("d1", "ua", "n1", 1767225600000000001, 1767225600000)),
    "device_down": (r.DEVICE_RECORDS, r.DeviceDown("d1", "ua", "n1", 1767225600000000001, 1767225601000)),
    "device_outbox_report": (r.DEVICE_RECORDS, r.DeviceOut("d1", "ua", "n1", ShadowReport({"led": "on"}, 3))),
    "device_outbox_get": (r.DEVICE_RECORDS, r.DeviceOut("d1", None, "n2", ShadowGet())),
    "device_shadow_changed": (r.DEVICE_RECORDS, r.ShadowChanged("d1", 1767225600000)),
    "device_outbox_command_result": (r.DEVICE_RECORDS, r.DeviceOut("d1", "ua", "n1", CommandResult(
        "c1", False, None, "no disk"))),
    "device_command": (r.DEVICE_RECORDS, r.CommandRequest("d1", "c1", "reboot", {"delay": 2}, True, 1767225660000)),
    "device_job": (r.DEVICE_RECORDS, r.JobRequest("d1", "j1")),
    "device_user_command": (r.DEVICE_RECORDS, r.UserCommand("d1", "ua", "c-1", "reboot", {"delay": 2}, 30,
                                                            1767225600000)),
    "device_outbox_job_update": (r.DEVICE_RECORDS, r.DeviceOut("d1", "ua", "n1", JobUpdate(
        "j1", "in_progress", 40, {"step": "download"}))),
    "command_done": (r.COMMAND_RESULTS, r.CommandDone("c1", "d1", "succeeded", {"up": True}, None)),
    "device_event": (r.DEVICE_EVENTS, r.DeviceEvent("device_disconnected", "d1", "ua", "disconnected",
                                                    1767225601000)),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_record_encodes_as_its_golden_file_and_decodes_back(name: str) -> None:
    codec, item = SAMPLES[name]
    path = GOLDEN / f"{name}.json"
    encoded = r.encode(item)
    if os.environ.get("CHATMQ_UPDATE_GOLDEN"):
        path.write_bytes(encoded + b"\n")
    assert encoded == path.read_bytes().rstrip(b"\n"), f"the wire format of {name} changed"
    assert codec.decode(path.read_bytes()) == item


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_records_are_not_tracked_by_the_garbage_collector(name: str) -> None:
    # the bus holds tens of thousands of records under load: tracked, they made CPython's full
    # collections come several times a second (a stalled loop of 30-50 ms each)
    codec, item = SAMPLES[name]
    decoded = codec.decode(r.encode(item))
    for record in (item, decoded, getattr(decoded, "env", None)):
        assert not gc.is_tracked(record)
    envelope = getattr(decoded, "env", None)
    if isinstance(envelope, ReceiptIn):
        gc.collect()
        assert not gc.is_tracked(envelope.ids)  # a tuple of strings: untracked at the first pass


def test_every_golden_file_has_a_record() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(SAMPLES)


# the JSON the bus carried before the records were typed (dicts by string keys): still the same records
LEGACY: list[tuple[r.Codec[Any], dict[str, Any], r.BusItem]] = [
    (r.OUTBOX_RECORDS, {"from": "ua", "node": "n1", "env": {"type": "message", "id": "c1", "to": "ub", "group": None,
                                                             "body": {"text": "hi"}}},
     r.Outbox("ua", "n1", MessageIn(id="c1", to="ub", body=BODY))),
    (r.DELIVERIES, {"user": "ub", "envs": [], "replay": "done", "epoch": 7}, r.Delivery.done("ub", 7)),
    (r.DELIVERIES, {"user": "ua", "envs": [orjson.loads(ACK)]}, r.Delivery.live("ua", [msgspec.Raw(ACK)])),
    (r.HEARTBEATS, {"instance": "router-1", "stopped": True, "ts": 1767225609000},
     r.Heartbeat.stop("router-1", 1767225609000)),
    (r.HEARTBEATS, {"instance": "n1", "part": "broker", "node": "n1", "host": "h", "pid": 7, "ops_url": "u",
                    "started": 1, "ready": True, "not_ready": {}, "interval": 5.0, "ts": 2},
     r.Heartbeat(instance="n1", part="broker", node="n1", host="h", pid=7, ops_url="u", started=1, ready=True,
                 interval=5.0, ts=2)),
    (r.PUSHES, {"user": "ub", "kind": "message", "id": "s1", "from": "ua", "conversation": "ua", "group": False,
                "event": None, "preview": None},
     r.PushRecord("ub", "message", "ua", False, "s1", "ua")),
    (r.CONNECTION_RECORDS, {"event": "node_started", "node": "n1", "epoch": 5, "ts": 6}, r.NodeStarted("n1", 5, 6)),
    # a takeover from a node before it named the principal: names nobody (``ControlWorker`` closes nothing)
    (r.COMMANDS, {"action": "takeover", "client_id": "phone-1", "node": "n2", "ts": 1},
     r.Takeover("phone-1", "n2", 1, "", "")),
]


@pytest.mark.parametrize(("codec", "legacy", "item"), LEGACY)
def test_records_written_before_the_typed_records_decode_the_same(
    codec: r.Codec[Any], legacy: dict[str, Any], item: r.BusItem
) -> None:
    assert codec.decode(orjson.dumps(legacy)) == item


@pytest.mark.parametrize("value", [b"not json", b"[1]", b'{"event":"online","user":"u"}',
                                   b'{"event":"dancing","user":"u","node":"n","epoch":1}'])
def test_a_value_that_is_not_the_topics_record_is_a_bad_record_saying_why(value: bytes) -> None:
    with pytest.raises(r.BadRecord, match=r"\S"):
        r.PRESENCE_RECORDS.decode(value)


def test_the_in_process_bus_record_is_read_without_decoding() -> None:
    online = r.Online("ua", "n1", 1)
    assert r.PRESENCE_RECORDS.read(Record("chat.presence", 0, 0, b"ua", b"", online)) is online
