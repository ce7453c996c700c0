"""``TurnPacer``: at most so many callers through per turn of the event loop.

A connection storm (thousands of CONNECTs a second, or thousands of connections lost at once)
otherwise fills the event loop's ready queue with session work: every other callback, a chat
message's included, waits behind all of it at each of its hops, for as long as the storm lasts
(``chatmq bench soak``: ping p99 0.86 s on a quiet machine while 10,000 clients came and went at
~2,500/s). A node passes each CONNECT (after it was read, before its credentials are checked) and
each ended connection (before its session is cleaned up) through one pacer: a few of them per turn,
first come first served, so that a turn stays short and everything else keeps moving; the storm
waits its turn instead (its sockets stay open; its CONNECTs are answered a little later).

A turn is one pass of the loop over its ready callbacks: the pacer lets ``per_turn`` callers go,
then schedules itself for the next pass while anyone waits: ``interval`` seconds later (``call_later``)
or, with ``interval`` 0, in the next pass (``call_soon``). The interval matters as much as the count:
a storm handled in every turn keeps the loop's thread busy without a break, and the store's thread,
which needs the GIL after each SQLite call, then waits a switch interval (5 ms) for it every time, so a
chat commit of a few statements took 100–400 ms while 10,000 connections ended. With the loop free
between the storm's turns the commit runs at once: the soak's ping p99 went from ~400 ms to ~65 ms,
and 10,000 clients still connected at 3,000–3,500/s (at 8 per 2 ms the storm goes at most 4,000/s).
"""

from __future__ import annotations

import asyncio
import collections


class TurnPacer:
    """``await wait()`` returns at once while this turn's ``per_turn`` is not used up, else in a
    later turn (``interval`` seconds after the last one let callers go), in arrival order; ``per_turn``
    0: never waits."""

    __slots__ = ("_armed", "_armed_later", "_interval", "_per_turn", "_used", "_waiting", "passed", "waited")

    def __init__(self, per_turn: int, interval: float = 0.0) -> None:
        self._per_turn = per_turn
        self._interval = interval
        self._used = 0
        self._armed: asyncio.Handle | None = None  # the next turn, when scheduled
        self._armed_later = False  # ... ``interval`` later (else in the next pass)
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.passed = 0
        """Callers let through since the start."""
        self.waited = 0
        """Of those, how many waited for a later turn."""

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn now."""
        return len(self._waiting)

    async def wait(self) -> None:
        if self._per_turn <= 0:
            return
        if not self._waiting and self._used < self._per_turn:
            self._used += 1
            self.passed += 1
            self._arm()
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._arm()
        await turn  # a cancelled waiter is skipped when its turn comes
        self.passed += 1
        self.waited += 1

    def _arm(self) -> None:
        """Schedule the next turn: at once (``call_soon``) while nobody waits, ``interval`` later once
        someone does (a next turn already due at once is moved then)."""
        storm = bool(self._waiting) and self._interval > 0
        if self._armed is not None and (self._armed_later or not storm):
            return  # due at the right time already
        if self._armed is not None:
            self._armed.cancel()
        loop = asyncio.get_running_loop()
        self._armed_later = storm
        self._armed = loop.call_later(self._interval, self._next_turn) if storm else loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._armed = None
        self._used = 0
        waiting = self._waiting
        while waiting and self._used < self._per_turn:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                self._used += 1
        if waiting or self._used:
            self._arm()  # the next turn starts the count afresh (and lets the next ones go)
