"""``GcFreezer``: keeps long-lived connection state out of the garbage collector's full passes.

CPython's full collection walks every object the collector tracks. A node with 10,000 idle
connections holds some 650,000 of them (asyncio transports, sessions, queues), so each full
pass takes 0.2–0.3 s, and under load they come several times a minute: the node stalls that
long while clients keep publishing (the fan-in rows of ``chatmq bench broker`` with idle
clients lost a third of their rate to it).

Connections live for minutes to days, so the freezer moves them into the permanent generation
(``gc.freeze()``), which collections skip: whenever the number of sessions has grown by
``step`` (or a tenth) since the last freeze and held still for a tick, it freezes them, without
a collection (that pass walked every object made since the last freeze, a whole wave of sessions:
0.3–0.9 s of a stalled node on a loaded machine, ``chatmq bench soak``; the little garbage frozen
with them waits for the next low point or refresh). While they are still growing by that much per tick (a burst of
connections), it freezes without collecting (``burst_freezes``): the collector's own full
passes, which come each time its long-lived objects grew by a quarter, otherwise walked every
connection of the burst again and again (8 passes, 1.1–1.7 s, while 10,000 clients connected
and left: docs/benchmarks.md). Cycles that die while frozen are not reclaimed until the next
``refresh``: every ``refresh`` seconds (if anything was frozen) it unfreezes, collects and
freezes again, one full pass per refresh instead of many. It also refreshes as soon as the
sessions have fallen by ``step`` (or a tenth) below the most it froze and held still there: the
connections that left are reclaimed then, not up to ``refresh`` seconds later (``chatmq bench soak``:
RSS grew by ~27 MiB per wave of 10,000 clients that came and went, and came back only at the
refresh). It never unfreezes when the count has come back up (a wave that left while the next one
came): that pass walked every session of the new wave too, and stalled the node for seconds (4.3 s
on a loaded machine; ``chatmq bench soak``); their garbage waits for the next low point or the
refresh. Little is left to wait: an ended session is freed by reference counting
(``chatmq.broker.session.SessionState`` holds its session weakly).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class GcFreezer:
    """``run()`` until cancelled; ``size()`` is the node's current number of sessions."""

    def __init__(self, size: Callable[[], int], *, step: int = 500, refresh: float = 600.0, tick: float = 0.5) -> None:
        self._size = size
        self._step = step
        self._refresh = refresh
        self._tick = tick
        self._frozen_at = 0  # sessions at the last freeze
        self._burst_at = 0  # sessions at the last freeze, with or without a collection
        self._frozen_peak = 0  # the most sessions frozen since the last collection (their garbage waits for one)
        self._stale = False  # sessions frozen since then have ended: the next pass unfreezes first
        self._last_seen = -1
        self._refreshed = time.monotonic()
        self.freezes = 0
        self.burst_freezes = 0

    def check(self) -> None:
        """One tick: freeze after growth that has settled, or refresh when it is time."""
        size = self._size()
        settled, self._last_seen = size == self._last_seen, size
        if size < self._frozen_at // 2:
            self._frozen_at = size  # many left: the next growth counts from here
        self._burst_at = max(self._frozen_at, min(self._burst_at, size))
        threshold = max(self._step, self._frozen_at // 10)
        grown = size - self._frozen_at >= threshold
        fallen = self._frozen_peak - size >= max(self._step, self._frozen_peak // 10)
        if fallen:
            self._stale = True  # frozen sessions ended: their garbage waits in the permanent generation
        if grown and settled:
            self._freeze(f"{size} sessions", collect=False)  # no pass here: it walks every new session
            self._frozen_at = self._burst_at = size
            self._frozen_peak = max(self._frozen_peak, size)
        elif not settled and size - self._burst_at >= threshold:  # still growing: no pass now
            gc.freeze()
            self.burst_freezes += 1
            self._burst_at = size
            self._frozen_peak = max(self._frozen_peak, size)
        elif settled and self._stale and fallen:  # many left and the count holds still low: reclaim them now
            self._freeze("sessions gone", unfreeze=True)
            self._frozen_at = self._burst_at = self._frozen_peak = size
        elif (self.freezes or self.burst_freezes) and time.monotonic() - self._refreshed >= self._refresh:
            self._freeze("refresh", unfreeze=True)
            self._frozen_peak = size

    def _freeze(self, why: str, *, unfreeze: bool = False, collect: bool = True) -> None:
        """Collect (unless not ``collect``) and freeze what is left; ``unfreeze`` first when frozen
        garbage is to be reclaimed."""
        started = time.perf_counter()
        if unfreeze:
            gc.unfreeze()
            self._stale = False
        if collect:
            gc.collect()
        gc.freeze()
        self.freezes += 1
        self._refreshed = time.monotonic()
        # not ``gc.get_freeze_count()``: it walks the permanent generation (110 ms at 10,000 sessions)
        log.info("gc: froze (%s) in %.0f ms", why, (time.perf_counter() - started) * 1000)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            self.check()
