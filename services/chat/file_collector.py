"""``FileCollector``: deletes uploads that no message named within ``retention`` seconds.

It runs in the storage part, as a pass of its ``Housekeeping`` (``collect()``: once per process that runs
it, collecting twice is harmless); the clock is injectable for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chatmq.services.store.files import FileStore

log = logging.getLogger(__name__)


class FileCollector:
    def __init__(self, files: FileStore, retention: float, clock: Callable[[], float] = time.time) -> None:
        self._files, self._retention, self._clock = files, retention, clock

    async def collect(self) -> list[str]:
        """Delete the uploads older than ``retention`` that no message named; return their ids."""
        cutoff = int((self._clock() - self._retention) * 1000)
        gone = await self._files.unreferenced(cutoff)
        for file_id in gone:
            await self._files.delete(file_id)
        if gone:
            log.info("deleted %d uploaded files that no message named", len(gone))
        return gone
