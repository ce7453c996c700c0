"""``TurnPacer`` (``chatmq.broker.pacing``): at most ``per_turn`` callers through per turn of the
event loop, in arrival order, while other callbacks keep running every turn."""

from __future__ import annotations

import asyncio
import collections

from chatmq.broker.pacing import TurnPacer


class TurnCounter:
    """Counts the loop's turns: one callback per turn, rescheduled until stopped."""

    def __init__(self) -> None:
        self.turn = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


async def test_a_storm_of_callers_goes_through_a_few_per_turn_in_arrival_order() -> None:
    pacer = TurnPacer(3)
    counter = TurnCounter()
    passed: list[tuple[int, int]] = []  # (caller, turn)

    async def caller(i: int) -> None:
        await pacer.wait()
        passed.append((i, counter.turn))

    await asyncio.gather(*(caller(i) for i in range(20)))
    counter.stop()
    assert [i for i, _turn in passed] == list(range(20))  # first come first served
    per_turn = collections.Counter(turn for _i, turn in passed)
    assert max(per_turn.values()) == 3
    assert len(per_turn) >= 7  # 20 callers, 3 a turn
    assert (pacer.passed, pacer.waited, pacer.waiting) == (20, 17, 0)


async def test_callers_within_the_turns_budget_do_not_wait_and_zero_means_no_bound() -> None:
    for pacer, waited in ((TurnPacer(5), 0), (TurnPacer(0), 0)):
        for _ in range(5):
            await pacer.wait()
        assert pacer.waited == waited
    unbounded = TurnPacer(0)
    await asyncio.gather(*(unbounded.wait() for _ in range(1000)))
    assert unbounded.waiting == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    pacer = TurnPacer(1)
    first, second, third = (asyncio.ensure_future(pacer.wait()) for _ in range(3))
    await asyncio.sleep(0)  # all three asked in one turn: the first went, the others wait
    assert (first.done(), pacer.waiting) == (True, 2)
    second.cancel()
    await asyncio.wait_for(third, 1.0)
    assert second.cancelled()
    assert (pacer.waiting, pacer.passed) == (0, 2)


async def test_with_an_interval_a_storm_leaves_the_loop_free_between_its_turns() -> None:
    """``interval``: the next callers go that long after the last ones, not in the next turn; meanwhile the loop
    runs everything else (and sleeps when there is nothing else), in arrival order still."""
    pacer = TurnPacer(2, interval=0.02)
    loop = asyncio.get_running_loop()
    passed: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        await pacer.wait()
        passed.append((i, loop.time()))

    start = loop.time()
    await asyncio.gather(*(caller(i) for i in range(8)))
    assert [i for i, _t in passed] == list(range(8))
    times = [t - start for _i, t in passed]
    assert times[1] < 0.02 <= times[2]  # two at once, the next two one interval later, ...
    assert times[7] >= 3 * 0.02  # four groups: three intervals between them
    await pacer.wait()  # once the storm is over a caller goes at once
    assert pacer.waiting == 0
