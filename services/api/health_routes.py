"""``GET /healthz``: liveness, outside ``/api/v1`` and without authentication."""

from __future__ import annotations

from fastapi import APIRouter

from chatmq.services.api.models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving HTTP."""
    return Health()
