"""``/devices/{id}/telemetry``: a device's readings read back from the time-series store (owner or admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from chatmq.core.ids import now_ms
from chatmq.core.readings import FIELD_NAME
from chatmq.services.api.deps import ApiContext, Ctx, CurrentUser
from chatmq.services.api.devices_routes import owned_device
from chatmq.services.api.errors import ApiError
from chatmq.services.telemetry.reader import Point, TelemetryQueryError, TelemetryReader

router = APIRouter(prefix="/devices", tags=["devices"])

#: The span ``since`` defaults to before ``until`` (ms), and the most points one answer holds.
DEFAULT_SPAN_MS = 3_600_000
MAX_POINTS = 10_000

_ANSWERS: dict[int | str, dict[str, str]] = {
    404: {"description": "No such live device of the caller (or, for an admin, at all)."},
    503: {"description": "No time-series store to read from is configured (``telemetry_query_url``), or it does "
                         "not answer."}}


class PointOut(BaseModel):
    ts: int
    value: float

    @classmethod
    def of(cls, point: Point) -> PointOut:
        return cls(ts=point.ts, value=point.value)


class TelemetryPoints(BaseModel):
    """One field's readings from ``since`` to ``until`` (ms, both included), oldest first."""

    device_id: str
    field: str
    since: int
    until: int
    points: list[PointOut]


class TelemetryLatest(BaseModel):
    """Each field's newest reading (within the last 30 days), by field name."""

    device_id: str
    fields: dict[str, PointOut]


def _reader(ctx: ApiContext) -> TelemetryReader:
    if ctx.telemetry is None:
        raise ApiError(503, "telemetry read-back is not configured on this server (telemetry_query_url)")
    return ctx.telemetry


def _unavailable(exc: TelemetryQueryError) -> ApiError:
    return ApiError(503, str(exc), headers={"Retry-After": "5"})


@router.get("/{device_id}/telemetry", response_model=TelemetryPoints, responses=_ANSWERS)
async def telemetry(
    device_id: str, user: CurrentUser, ctx: Ctx,
    field: Annotated[str, Query(pattern=f"^{FIELD_NAME.pattern}$", description="The reading's field.")],
    since: Annotated[int | None, Query(ge=0, description="From (ms); default an hour before `until`.")] = None,
    until: Annotated[int | None, Query(ge=0, description="Until (ms); default now.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS, description="At most this many points, the oldest "
                                                                  "first (page on with `since`).")] = 1000,
) -> TelemetryPoints:
    """A field's readings, oldest first: at most ``limit`` from ``since`` on (to page, ask again with
    ``since`` = the last ``ts`` + 1)."""
    await owned_device(device_id, user, ctx)
    reader = _reader(ctx)
    end = now_ms() if until is None else until
    start = max(0, end - DEFAULT_SPAN_MS) if since is None else since
    if start > end:
        raise ApiError(422, "since is after until", kind="invalid-request",
                       errors=[{"field": "query.since", "message": "must not be after until"}])
    try:
        points = await reader.points(device_id, field, start, end, limit)
    except TelemetryQueryError as exc:
        raise _unavailable(exc) from exc
    return TelemetryPoints(device_id=device_id, field=field, since=start, until=end,
                           points=[PointOut.of(p) for p in points])


@router.get("/{device_id}/telemetry/latest", response_model=TelemetryLatest, responses=_ANSWERS)
async def telemetry_latest(device_id: str, user: CurrentUser, ctx: Ctx) -> TelemetryLatest:
    """Each field's newest reading (within the last 30 days)."""
    await owned_device(device_id, user, ctx)
    reader = _reader(ctx)
    try:
        latest = await reader.latest(device_id)
    except TelemetryQueryError as exc:
        raise _unavailable(exc) from exc
    return TelemetryLatest(device_id=device_id, fields={k: PointOut.of(p) for k, p in latest.items()})
