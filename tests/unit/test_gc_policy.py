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


def test_refreshes_what_it_froze_on_time() -> None:
    sessions = [1000]
    f = GcFreezer(lambda: sessions[0], step=100, refresh=0.0)
    f.check()
    f.check()
    assert f.freezes == 1
    f.check()  # no growth, but the refresh is due: unfreeze, collect, freeze again
    assert f.freezes == 2


def test_nothing_frozen_without_sessions() -> None:
    f = GcFreezer(lambda: 0, step=100, refresh=0.0)
    for _ in range(3):
        f.check()
    assert f.freezes == 0
