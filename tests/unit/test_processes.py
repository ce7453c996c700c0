"""ProcessTable and ProcessFollower: statuses from heartbeats, with a fake clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatmq.core.bus.base import Record
from chatmq.core.bus.memory import MemoryBus
from chatmq.core.records import Heartbeat, encode
from chatmq.core.topics import HEARTBEATS
from chatmq.services.registry.processes import MISSING_AFTER, ProcessFollower, ProcessTable


class Clock:
    """Milliseconds since the epoch, moved by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def beat(instance: str, ts: float, *, ready: bool = True, interval: float = 2.0, **extra: Any) -> Heartbeat:
    fields: dict[str, Any] = {
        "instance": instance, "part": "router", "node": None, "host": "h", "pid": 7, "ops_url": "http://h:9100",
        "started": 1, "ready": ready, "not_ready": {} if ready else {"MongoStore": "no answer"},
        "interval": interval, "ts": int(ts), **extra}
    return Heartbeat(**fields)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> ProcessTable:
    return ProcessTable(clock=clock, forget_after=600)


def statuses(table: ProcessTable) -> dict[str, str]:
    return {p.instance: p.status for p in table.processes()}


def test_a_process_is_as_ready_as_its_last_heartbeat_said(table: ProcessTable, clock: Clock) -> None:
    table.apply(beat("router-1", clock.now))
    table.apply(beat("router-2", clock.now, ready=False))
    assert statuses(table) == {"router-1": "ready", "router-2": "not_ready"}
    (two,) = [p for p in table.processes() if p.instance == "router-2"]
    assert two.not_ready == {"MongoStore": "no answer"}
    assert (two.part, two.host, two.pid, two.ops_url, two.last_seen) == ("router", "h", 7, "http://h:9100",
                                                                        clock.now)


def test_missing_after_three_intervals_without_a_heartbeat(table: ProcessTable, clock: Clock) -> None:
    table.apply(beat("n1", clock.now, interval=2.0))
    clock.now += MISSING_AFTER * 2000
    assert statuses(table) == {"n1": "ready"}  # exactly three intervals: not yet
    clock.now += 1
    assert statuses(table) == {"n1": "missing"}
    table.apply(beat("n1", clock.now))  # back (restarted under the same name)
    assert statuses(table) == {"n1": "ready"}


def test_a_clean_stop_leaves_the_list_and_the_long_missing_are_forgotten(table: ProcessTable, clock: Clock) -> None:
    table.apply(beat("a", clock.now))
    table.apply(beat("b", clock.now))
    table.apply(Heartbeat.stop("a", int(clock.now + 1)))
    assert statuses(table) == {"b": "ready"}
    clock.now += 600_001
    assert statuses(table) == {}


def test_an_older_heartbeat_changes_nothing(table: ProcessTable, clock: Clock) -> None:
    table.apply(beat("a", clock.now))
    table.apply(beat("a", clock.now - 10, ready=False))
    table.apply(Heartbeat.stop("a", int(clock.now - 5)))
    assert statuses(table) == {"a": "ready"}


def test_old_heartbeats_read_back_from_the_topic_are_missing_at_once(table: ProcessTable, clock: Clock) -> None:
    table.apply(beat("gone", clock.now - 60_000, interval=5.0))
    assert statuses(table) == {"gone": "missing"}


_GOOD = {"instance": "x", "part": "router", "host": "h", "pid": 7, "ops_url": "u", "started": 1, "ready": True,
         "interval": 2.0, "ts": 1}


@pytest.mark.parametrize("record", [{}, {"instance": "x"}, {"instance": "x", "ts": "soon"},
                                    {**_GOOD, "pid": "seven"}, {**_GOOD, "not_ready": ["a"]}])
async def test_malformed_records_are_ignored(table: ProcessTable, record: dict[str, Any],
                                             caplog: pytest.LogCaptureFixture) -> None:
    await ProcessFollower(MemoryBus(), table).process([Record(HEARTBEATS, 0, 0, b"x", orjson.dumps(record))])
    assert table.processes() == []
    assert "skipping heartbeat record chat.heartbeats/0@0: not a heartbeat record" in caplog.text


async def test_the_follower_reads_heartbeats_from_the_bus(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    await bus.start()
    table = ProcessTable(clock=clock)
    follower = ProcessFollower(bus, table)
    await follower.process([
        Record(HEARTBEATS, 0, 0, b"a", encode(beat("a", clock.now))),
        Record(HEARTBEATS, 0, 1, b"b", b"not json"),
        Record(HEARTBEATS, 0, 2, b"c", b"[1, 2]"),
    ])
    assert statuses(table) == {"a": "ready"}
    assert "not JSON" in caplog.text
    await bus.stop()
