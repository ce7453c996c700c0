"""SQLite store: jobs (one row each) and their executions (one row per job and device)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from chatmq.core.errors import NotFoundError
from chatmq.services.store.base import Job, JobExecution
from chatmq.services.store.sqlite.base import SQLiteBase, marks

_EX_COLS = "job_id, device_id, status, progress, details, updated_at"


def _execution(row: Any) -> JobExecution:
    return JobExecution(row[0], row[1], row[2], row[3], None if row[4] is None else json.loads(row[4]), int(row[5]))


class SQLiteJobs(SQLiteBase):
    """``jobs`` (``job_id`` primary key) and ``job_executions`` (``(job_id, device_id)`` primary key,
    ``device_id`` indexed)."""

    async def add_job(self, job: Job, device_ids: list[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO jobs (job_id, owner_id, document, created_at, canceled) VALUES (?, ?, ?, ?, ?)",
                         (job.job_id, job.owner_id, json.dumps(job.document), job.created_at, int(job.canceled)))
            conn.executemany(f"INSERT INTO job_executions ({_EX_COLS}) VALUES ({marks(6)})",
                             [(job.job_id, d, "queued", None, None, job.created_at) for d in dict.fromkeys(device_ids)])

        await self._write(op)

    async def get_job(self, job_id: str) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute("SELECT job_id, owner_id, document, created_at, canceled FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()
            return None if row is None else Job(row[0], row[1], json.loads(row[2]), int(row[3]), bool(row[4]))

        return await self._run(op)

    async def cancel_job(self, job_id: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("UPDATE jobs SET canceled = 1 WHERE job_id = ?", (job_id,)).rowcount != 1:
                raise NotFoundError(f"no job {job_id}")

        await self._write(op)

    async def job_executions(self, job_id: str) -> list[JobExecution]:
        def op(conn: sqlite3.Connection) -> list[JobExecution]:
            rows = conn.execute(f"SELECT {_EX_COLS} FROM job_executions WHERE job_id = ? ORDER BY device_id",
                                (job_id,))
            return [_execution(r) for r in rows]

        return await self._run(op)

    async def get_execution(self, job_id: str, device_id: str) -> JobExecution | None:
        def op(conn: sqlite3.Connection) -> JobExecution | None:
            row = conn.execute(f"SELECT {_EX_COLS} FROM job_executions WHERE job_id = ? AND device_id = ?",
                               (job_id, device_id)).fetchone()
            return None if row is None else _execution(row)

        return await self._run(op)

    async def put_execution(self, execution: JobExecution) -> None:
        e = execution

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO job_executions ({_EX_COLS}) VALUES ({marks(6)})",
                         (e.job_id, e.device_id, e.status, e.progress,
                          None if e.details is None else json.dumps(e.details), e.updated_at))

        await self._write(op)
