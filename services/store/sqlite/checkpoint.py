"""``Checkpointer``: moves the WAL's pages into the database file on a thread of its own.

With SQLite's automatic checkpoints, the commit that crosses ``wal_autocheckpoint`` pages also
copies the WAL into the database and fsyncs it, inline, on the store's one writing thread: every
thousandth page or so a commit (and every message waiting on it) takes several times longer. Here
the writer turns automatic checkpoints off and a second connection runs
``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds: PASSIVE never waits for or blocks the
writer, and a complete one lets the writer start the WAL over. Commits still sync the WAL
(``synchronous=FULL``): an ``ack`` stays durable.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Checkpointer:
    """A thread that checkpoints the database at ``path`` every ``interval`` seconds until ``stop()``."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self._path = path
        self._interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # completed passes (for tests)

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="chatmq-sqlite-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread (at most one pass in progress); idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(self._interval):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                        conn.execute("PRAGMA busy_timeout=1000")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the writer's commits go on; the next pass tries again
                    log.warning("sqlite checkpoint of %s failed: %s", self._path, exc)
        finally:
            if conn is not None:
                conn.close()
