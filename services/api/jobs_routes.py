"""``/jobs``: a document for many of the caller's devices at once, with per-device status."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from chatmq.core.ids import job_id as new_job_id
from chatmq.core.ids import now_ms
from chatmq.services.api.deps import ApiContext, Ctx, CurrentUser
from chatmq.services.api.devices_routes import device_link
from chatmq.services.api.errors import ApiError, not_found
from chatmq.services.api.models import EntityId
from chatmq.services.store.base import JOB_STATUSES, Job, JobExecution, User

router = APIRouter(prefix="/jobs", tags=["devices"])

MAX_JOB_DEVICES = 10_000


class JobCreate(BaseModel):
    """``POST /jobs``: ``document`` for ``devices`` (ids of the caller's devices) or, with ``all_mine``,
    every live device of the caller; ``rollout_per_minute`` paces the sending."""

    document: dict[str, Any]
    devices: Annotated[list[EntityId], Field(max_length=MAX_JOB_DEVICES)] | None = None
    all_mine: bool = False
    rollout_per_minute: Annotated[int, Field(ge=1, le=100_000)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> JobCreate:
        if (self.devices is None) == (not self.all_mine):
            raise ValueError("give either devices or all_mine: true")
        return self


class JobCreated(BaseModel):
    job_id: str


class JobRow(BaseModel):
    device_id: str
    status: str
    progress: int | None
    details: dict[str, Any] | None
    updated_at: int

    @classmethod
    def of(cls, e: JobExecution) -> JobRow:
        return cls(device_id=e.device_id, status=e.status, progress=e.progress, details=e.details,
                   updated_at=e.updated_at)


class JobOut(BaseModel):
    """A job: ``counts`` of its devices by status, and one row per device."""

    job_id: str
    owner: str
    document: dict[str, Any]
    created_at: int
    canceled: bool
    counts: dict[str, int]
    devices: list[JobRow]


async def _view(ctx: ApiContext, job: Job) -> JobOut:
    rows = [e.seen_in(job) for e in await ctx.store.job_executions(job.job_id)]
    counted = Counter(e.status for e in rows)
    return JobOut(job_id=job.job_id, owner=job.owner_id, document=job.document, created_at=job.created_at,
                  canceled=job.canceled, counts={s: counted.get(s, 0) for s in JOB_STATUSES},
                  devices=[JobRow.of(e) for e in rows])


async def _owned_job(job_id: str, user: User, ctx: ApiContext) -> Job:
    job = await ctx.store.get_job(job_id)
    if job is None or (job.owner_id != user.user_id and not user.is_admin):
        raise not_found("no such job")
    return job


@router.post("", status_code=201, response_model=JobCreated,
             responses={413: {"description": "``document`` exceeds 8 KiB of JSON."},
                        422: {"description": "Invalid body, or devices that are not the caller's."},
                        503: {"description": "No device worker is reachable from this API."}})
async def create_job(body: JobCreate, user: CurrentUser, ctx: Ctx) -> JobCreated:
    """Start a job: each device gets ``{"type":"job","id","document"}`` in its inbox (an offline one when it
    connects) and reports with ``job_update``."""
    link = device_link(ctx, "jobs", "document", body.document)
    mine = [d.device_id for d in await ctx.store.list_devices(user.user_id)]
    if body.all_mine:
        targets = mine
    else:
        targets = list(dict.fromkeys(body.devices or []))
        unknown = sorted(set(targets) - set(mine))
        if unknown:
            raise ApiError(422, f"{len(unknown)} of the devices are not yours", kind="invalid-request",
                           errors=[{"field": "body.devices", "message": f"not your device: {d}"}
                                   for d in unknown[:100]])
    if not targets:
        raise ApiError(422, "the job has no devices", kind="invalid-request",
                       errors=[{"field": "body.devices", "message": "no devices"}])
    job = Job(new_job_id(), user.user_id, body.document, now_ms())
    await ctx.store.add_job(job, targets)
    await link.send_job(job.job_id, targets, body.rollout_per_minute)
    return JobCreated(job_id=job.job_id)


@router.get("/{job_id}", response_model=JobOut, responses={404: {"description": "No such job of the caller."}})
async def get_job(job_id: str, user: CurrentUser, ctx: Ctx) -> JobOut:
    """The job with its devices' status counts (``queued``, ``sent``, ``in_progress``, ``succeeded``,
    ``failed``, ``canceled``) and rows."""
    return await _view(ctx, await _owned_job(job_id, user, ctx))


@router.post("/{job_id}/cancel", response_model=JobOut, responses={404: {"description": "No such job of the caller."}})
async def cancel_job(job_id: str, user: CurrentUser, ctx: Ctx) -> JobOut:
    """Cancel the job: devices that have not finished it are not sent it (again), and their updates are
    ignored; they read as ``canceled``."""
    await _owned_job(job_id, user, ctx)
    await ctx.store.cancel_job(job_id)
    return await _view(ctx, await _owned_job(job_id, user, ctx))
