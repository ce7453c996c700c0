"""``Stack.run_until_signalled``: what start-up made is frozen out of the collector's full passes."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

from chatmq.core.lifecycle import Stack


class _Started:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.kept: list[object] = []

    async def start(self) -> None:
        self.kept = [{"made": i} for i in range(1000)]  # start-up state that lives as long as the process
        self.started.set()

    async def stop(self) -> None:
        pass

    async def check(self) -> None:
        pass


async def test_start_up_state_is_frozen_once_ready_and_sigterm_stops_the_stack() -> None:
    gc.unfreeze()
    part = _Started()
    run = asyncio.create_task(Stack("t", [part]).run_until_signalled())
    try:
        await asyncio.wait_for(part.started.wait(), 5)
        for _ in range(100):
            if gc.get_freeze_count() > 0:
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() >= len(part.kept)
        assert not any(o is part.kept[0] for o in gc.get_objects())  # frozen: no pass walks it
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(run, 5)
    finally:
        run.cancel()
        gc.unfreeze()
