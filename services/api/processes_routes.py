"""``GET /admin/processes``: every process of the deployment from its heartbeats (admin only).

The table is ``app.state.processes`` (a ``ProcessTable`` kept by the process's ``ProcessFollower``,
set by ``chatmq.run.ops.operate``); an app without one answers 503.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from chatmq.services.api.admin_routes import Admin
from chatmq.services.api.errors import ApiError
from chatmq.services.registry.processes import ProcessTable

router = APIRouter(prefix="/admin", tags=["admin"])


class ProcessOut(BaseModel):
    """One process as its heartbeats describe it."""

    instance: str = Field(description="The process's name (setting ``instance``; else part@host:pid).")
    part: str = Field(description="embedded, broker, router, group-router, storage, api, ...")
    node: str | None = Field(description="The broker node it runs, if any.")
    host: str
    pid: int
    ops_url: str = Field(description="Base URL of its /metrics, /healthz and /readyz.")
    started: int = Field(description="When it started, ms since the epoch.")
    last_seen: int = Field(description="Its last heartbeat, ms since the epoch (its own clock).")
    status: Literal["ready", "not_ready", "missing"] = Field(
        description="As its last heartbeat said, or missing after 3 heartbeat intervals without one.")
    not_ready: dict[str, str] = Field(description="Its components that were not ready, and why.")


@router.get("/processes", response_model=list[ProcessOut])
async def processes(_: Admin, request: Request) -> list[ProcessOut]:
    """Every process that sent a heartbeat (a process that stopped cleanly leaves the list)."""
    table: ProcessTable | None = getattr(request.app.state, "processes", None)
    if table is None:
        raise ApiError(503, "this process does not follow the heartbeats")
    return [ProcessOut.model_validate(p, from_attributes=True) for p in table.processes()]
