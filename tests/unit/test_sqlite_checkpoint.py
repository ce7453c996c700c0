"""``Checkpointer``: the SQLite store's checkpoints run beside the writer, never inside a commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from chatmq.core import ids
from chatmq.services.store.sqlite import SQLiteStore
from chatmq.services.store.sqlite.checkpoint import Checkpointer


def _wal_frames_left(path: Path) -> int:
    """WAL frames not yet copied into the database (from a passive checkpoint's report)."""
    with sqlite3.connect(path) as conn:
        _busy, log, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(log) - int(checkpointed)


async def test_commits_do_not_checkpoint_and_the_checkpointer_does(tmp_path: Path) -> None:
    path = tmp_path / "chatmq.db"
    store = SQLiteStore(path)
    store._checkpointer = Checkpointer(path, interval=3600)  # no pass during the writes
    await store.start()
    try:
        auto = await store._run(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert auto == 0
        for i in range(300):  # well past the default 1,000-page automatic checkpoint
            await store.create_user(ids.user_id(), f"user{i:04d}", "x" * 2000, None)
        with sqlite3.connect(path) as conn:
            frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # (busy, WAL frames, copied)
        assert frames[1] > 1000  # no commit checkpointed: the WAL grew past 1,000 pages
    finally:
        await store.stop()


async def test_the_checkpointer_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "chatmq.db"
    store = SQLiteStore(path)
    store._checkpointer = checkpointer = Checkpointer(path, interval=0.05)
    await store.start()
    try:
        for i in range(50):
            await store.create_user(ids.user_id(), f"user{i:04d}", "x" * 2000, None)
        before = checkpointer.checkpoints
        for _ in range(200):
            if checkpointer.checkpoints >= before + 2:
                break
            await asyncio.sleep(0.05)
        assert checkpointer.checkpoints >= before + 2
        assert _wal_frames_left(path) == 0
    finally:
        await store.stop()
    # stopped, started again: it checkpoints again
    await store.start()
    try:
        await store.create_user(ids.user_id(), "again", "x", None)
        before = checkpointer.checkpoints
        for _ in range(200):
            if checkpointer.checkpoints > before:
                break
            await asyncio.sleep(0.05)
        assert checkpointer.checkpoints > before
    finally:
        await store.stop()
