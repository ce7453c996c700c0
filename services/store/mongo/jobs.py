"""MongoDB store: jobs (one document each, by ``_id``) and their executions (one document per job and
device, ``_id`` = ``pair_key(job_id, device_id)``)."""

from __future__ import annotations

import json
from typing import Any

from pymongo import ASCENDING

from chatmq.core.errors import NotFoundError
from chatmq.services.store.base import Job, JobExecution
from chatmq.services.store.mongo.base import MongoBase, mongo_errors, pair_key


def _ex_doc(e: JobExecution) -> dict[str, Any]:
    return {"job_id": e.job_id, "device_id": e.device_id, "status": e.status, "progress": e.progress,
            "details": None if e.details is None else json.dumps(e.details), "updated_at": e.updated_at}


def _execution(d: dict[str, Any]) -> JobExecution:
    return JobExecution(d["job_id"], d["device_id"], d["status"], d["progress"],
                        None if d["details"] is None else json.loads(d["details"]), int(d["updated_at"]))


class MongoJobs(MongoBase):
    """``jobs`` ``{_id: job_id, owner_id, document (JSON text), created_at, canceled}`` and
    ``job_executions`` ``{_id: pair_key(job_id, device_id), job_id, device_id, status, progress, details,
    updated_at}``; ``job_id`` indexed for the job's view.
    A single execution is read and replaced by ``_id``."""

    async def add_job(self, job: Job, device_ids: list[str]) -> None:
        with mongo_errors():
            await self._coll("jobs").insert_one({"_id": job.job_id, "owner_id": job.owner_id,
                                                 "document": json.dumps(job.document),
                                                 "created_at": job.created_at, "canceled": job.canceled})
            docs = [{"_id": pair_key(job.job_id, d), **_ex_doc(JobExecution(job.job_id, d, updated_at=job.created_at))}
                    for d in dict.fromkeys(device_ids)]
            if docs:
                await self._coll("job_executions").insert_many(docs, ordered=False)

    async def get_job(self, job_id: str) -> Job | None:
        with mongo_errors():
            d = await self._coll("jobs").find_one({"_id": job_id})
        if d is None:
            return None
        return Job(d["_id"], d["owner_id"], json.loads(d["document"]), int(d["created_at"]), bool(d["canceled"]))

    async def cancel_job(self, job_id: str) -> None:
        with mongo_errors():
            result = await self._coll("jobs").update_one({"_id": job_id}, {"$set": {"canceled": True}})
        if result.matched_count != 1:
            raise NotFoundError(f"no job {job_id}")

    async def job_executions(self, job_id: str) -> list[JobExecution]:
        with mongo_errors():
            cursor = self._coll("job_executions").find({"job_id": job_id}).sort([("device_id", ASCENDING)])
            return [_execution(d) async for d in cursor]

    async def get_execution(self, job_id: str, device_id: str) -> JobExecution | None:
        with mongo_errors():
            d = await self._coll("job_executions").find_one({"_id": pair_key(job_id, device_id)})
        return None if d is None else _execution(d)

    async def put_execution(self, execution: JobExecution) -> None:
        key = pair_key(execution.job_id, execution.device_id)
        with mongo_errors():
            await self._coll("job_executions").replace_one({"_id": key}, _ex_doc(execution), upsert=True)
