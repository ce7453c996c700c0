"""``FileCollector``: deletes uploads that no message named within ``retention`` seconds.

It runs in the storage part (once per process that runs it: collecting twice is harmless), every
``interval`` seconds; ``collect()`` is one pass, and the clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from chatmq.services.store.files import FileStore

log = logging.getLogger(__name__)


class FileCollector:
    def __init__(self, files: FileStore, retention: float, interval: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._files, self._retention, self._interval, self._clock = files, retention, interval, clock
        self._task: asyncio.Task[None] | None = None

    async def collect(self) -> list[str]:
        """Delete the uploads older than ``retention`` that no message named; return their ids."""
        cutoff = int((self._clock() - self._retention) * 1000)
        gone = await self._files.unreferenced(cutoff)
        for file_id in gone:
            await self._files.delete(file_id)
        if gone:
            log.info("deleted %d uploaded files that no message named", len(gone))
        return gone

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="file-collector")

    async def _run(self) -> None:
        while True:
            try:
                await self.collect()
            except Exception:  # the store's readiness check reports an outage; try again next time
                log.warning("collecting unreferenced files failed", exc_info=True)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
