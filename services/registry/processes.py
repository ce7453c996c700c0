"""The operator's view of every process: heartbeats on ``chat.heartbeats`` kept in a ``ProcessTable``.

Every process publishes a heartbeat every ``heartbeat_interval`` seconds (``chatmq.run.ops.Heartbeat``)
keyed by its instance name, and a ``stopped`` record when it stops cleanly. A ``ProcessFollower``
(the API; the embedded server) reads the topic from its start into a ``ProcessTable``:

* a process is ``ready`` or ``not_ready`` as its last heartbeat said, and ``missing`` once no
  heartbeat came for ``MISSING_AFTER`` of its intervals (killed, hung, or cut off from the bus);
* a process that stopped cleanly leaves the list; one missing for ``forget_after`` seconds too;
* ages are measured from the heartbeat's own timestamp (the sender's clock), so old heartbeats
  read back from the compacted topic by a new API copy do not look fresh: keep clocks in sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from chatmq.core.bus.base import Bus, Record
from chatmq.core.records import HEARTBEATS as HEARTBEAT_RECORDS
from chatmq.core.records import Heartbeat
from chatmq.core.topics import HEARTBEATS
from chatmq.core.worker import BusWorker

MISSING_AFTER = 3
"""Intervals without a heartbeat after which a process is ``missing``."""

Status = Literal["ready", "not_ready", "missing"]


def wall_ms() -> float:
    """Milliseconds since the epoch (the clock heartbeats carry)."""
    return time.time() * 1000


@dataclass(frozen=True, slots=True)
class ProcessState:
    """One process as its last heartbeat described it, with the status derived at listing time."""

    instance: str
    part: str
    node: str | None
    host: str
    pid: int
    ops_url: str
    started: int
    ready: bool
    not_ready: dict[str, str]
    interval: float
    last_seen: int
    status: Status = "ready"


@dataclass
class ProcessTable:
    """The processes heard of, by instance. ``clock`` gives milliseconds since the epoch."""

    clock: Callable[[], float] = wall_ms
    forget_after: float = 3600.0
    _entries: dict[str, ProcessState] = field(default_factory=dict)

    def apply(self, record: Heartbeat) -> None:
        """Take one heartbeat (or ``stopped``) record; an older heartbeat than the one kept (reordered, or
        read back after a restart) changes nothing."""
        known = self._entries.get(record.instance)
        if known is not None and record.ts < known.last_seen:
            return
        if record.stopped:
            self._entries.pop(record.instance, None)
            return
        self._entries[record.instance] = ProcessState(
            instance=record.instance, part=record.part, node=record.node, host=record.host, pid=record.pid,
            ops_url=record.ops_url, started=record.started, ready=record.ready, not_ready=dict(record.not_ready),
            interval=record.interval, last_seen=record.ts,
        )

    def status(self, state: ProcessState, now: float) -> Status:
        if now - state.last_seen > MISSING_AFTER * state.interval * 1000:
            return "missing"
        return "ready" if state.ready else "not_ready"

    def processes(self) -> list[ProcessState]:
        """Every process with its status now, by part then instance; forgets the long missing."""
        now = self.clock()
        for instance, state in list(self._entries.items()):
            if now - state.last_seen > self.forget_after * 1000:
                del self._entries[instance]
        listed = [replace(s, status=self.status(s, now)) for s in self._entries.values()]
        return sorted(listed, key=lambda s: (s.part, s.instance))


class ProcessFollower(BusWorker):
    """Keeps ``table`` from ``chat.heartbeats``; ``group`` should be the reader's own (every API copy
    reads every heartbeat from the start)."""

    def __init__(self, bus: Bus, table: ProcessTable, group: str = "processes") -> None:
        super().__init__(bus, group, [HEARTBEATS])
        self.table = table

    async def process(self, records: list[Record]) -> None:
        for heartbeat in HEARTBEAT_RECORDS.read_all(records):
            self.table.apply(heartbeat)
