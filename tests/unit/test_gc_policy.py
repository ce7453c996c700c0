"""``GcFreezer``: freezes after settled growth of the session count, refreshes on time."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from chatmq.broker.gc_policy import GcFreezer


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process as it was


def test_freezes_once_growth_has_settled_and_not_for_small_changes() -> None:
    sessions = [0]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=3600)
    f.check()
    sessions[0] = 150  # growing ...
    f.check()
    assert f.freezes == 0
    f.check()  # ... and settled
    assert f.freezes == 1
    assert gc.get_freeze_count() > 0
    sessions[0] = 200  # less than a step more
    f.check()
    f.check()
    assert f.freezes == 1
    sessions[0] = 260
    f.check()
    f.check()
    assert f.freezes == 2


def test_a_burst_is_frozen_without_a_pass_each_tick_it_grows_nor_once_settled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[int] = []
    real_collect = gc.collect

    def counted_collect(generation: int = 2) -> int:
        passes.append(generation)
        return real_collect(generation)

    monkeypatch.setattr(gc, "collect", counted_collect)
    sessions = [0]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=3600)
    f.check()
    for size in (120, 250, 300, 420):  # +120 frozen, +130 frozen, +50 not yet, +170 frozen
        sessions[0] = size
        f.check()
    assert (f.burst_freezes, f.freezes, passes) == (3, 0, [])
    assert gc.get_freeze_count() > 0
    f.check()  # settled: frozen, no collection (it would walk every session of the burst)
    assert (f.burst_freezes, f.freezes, passes) == (3, 1, [])
    f.check()
    assert (f.burst_freezes, f.freezes, passes) == (3, 1, [])
    sessions[0] = 0  # the burst leaves and the count settles low: now one pass reclaims its garbage
    f.check()
    f.check()
    assert (f.freezes, len(passes)) == (2, 1)


def test_a_burst_freeze_is_refreshed_on_time_too() -> None:
    sessions = [0]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=0.0)
    f.check()
    sessions[0] = 200
    f.check()
    assert (f.burst_freezes, f.freezes) == (1, 0)
    sessions[0] = 250  # still growing, by less than a step: the refresh is due
    f.check()
    assert f.freezes == 1


def test_refreshes_what_it_froze_on_time() -> None:
    sessions = [1000]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=0.0)
    f.check()
    f.check()
    assert f.freezes == 1
    f.check()  # no growth, but the refresh is due: unfreeze, collect, freeze again
    assert f.freezes == 2


def test_sessions_that_left_are_reclaimed_once_the_count_settles_not_at_the_refresh() -> None:
    sessions = [0]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=3600)
    sessions[0] = 2000
    f.check()
    f.check()  # settled: frozen
    assert f.freezes == 1
    sessions[0] = 1950  # fewer than a step gone: nothing to do
    f.check()
    f.check()
    assert f.freezes == 1
    sessions[0] = 0  # a wave of clients left ...
    f.check()
    assert f.freezes == 1
    f.check()  # ... and the count settled: unfrozen, collected, frozen again
    assert f.freezes == 2
    f.check()
    f.check()
    assert f.freezes == 2  # once
    sessions[0] = 2000  # the next wave is frozen again as it settles
    f.check()
    f.check()
    assert f.freezes == 3


def test_a_wave_that_left_while_the_next_one_came_is_reclaimed_at_the_next_low_point_not_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    unfreezes: list[int] = []
    real_unfreeze = gc.unfreeze

    def counted_unfreeze() -> None:
        unfreezes.append(1)
        real_unfreeze()

    monkeypatch.setattr(gc, "unfreeze", counted_unfreeze)
    sessions = [0]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=3600)
    sessions[0] = 2000
    f.check()
    f.check()  # settled: frozen, nothing to unfreeze
    assert (f.freezes, len(unfreezes)) == (1, 0)
    sessions[0] = 0  # the wave left ...
    f.check()
    sessions[0] = 1000  # ... and the next came before the count held still
    f.check()
    sessions[0] = 2000
    f.check()
    f.check()  # settled: frozen without unfreezing (that pass would walk every session of this wave)
    assert (f.freezes, len(unfreezes)) == (2, 0)
    f.check()
    f.check()
    assert (f.freezes, len(unfreezes)) == (2, 0)  # the count holds still, high: still nothing
    sessions[0] = 0  # this wave leaves too, and the count settles low: both waves' garbage is reclaimed
    f.check()
    f.check()
    assert (f.freezes, len(unfreezes)) == (3, 1)


def test_nothing_frozen_without_sessions() -> None:
    f = GcFreezer(lambda: 0, step=100, refresh=0.0)
    for _ in range(3):
        f.check()
    assert f.freezes == 0
