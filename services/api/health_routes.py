"""``/healthz``, ``/readyz`` and ``/metrics``: outside ``/api/v1`` and without authentication.

Served by the REST API (the API part, the embedded server) and by the small ops app of every
other part (``chatmq.run.ops``). ``/readyz`` asks ``app.state.readiness`` (``Stack.readiness`` of the
process, set by ``chatmq.run.ops.operate``); an app without one (a bare test app) has nothing else to
wait for and is ready.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, Field

from chatmq.services.api.models import Health

if TYPE_CHECKING:
    from chatmq.core.lifecycle import Readiness

router = APIRouter(tags=["health"])


class ReadinessOut(BaseModel):
    """``GET /readyz``: 200 when ready; 503 as a problem document (RFC 9457) naming what is not."""

    type: str = "about:blank"
    title: str = Field(description="``Ready`` or ``Service Unavailable``.")
    status: int = Field(description="200 or 503.")
    detail: str = Field(description="What is not ready, and why.")
    ready: bool
    components: dict[str, str] = Field(description="Each component of the process: ``ok``, ``not started``, "
                                                   "or why it is not ready.")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process is up and serving HTTP."""
    return Health()


@router.get("/readyz", response_model=ReadinessOut, responses={503: {"model": ReadinessOut,
                                                                     "description": "Not ready."}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: every component of the process started, its store answers and its bus is reachable."""
    readiness: Callable[[], Awaitable[Readiness]] | None = getattr(request.app.state, "readiness", None)
    if readiness is None:
        ready, components = True, {"http": "ok"}
    else:
        state = await readiness()
        ready, components = state.ready, state.components
    if ready:
        body = ReadinessOut(title="Ready", status=200, detail="every component is ready", ready=True,
                            components=components)
        return JSONResponse(body.model_dump())
    waiting = "; ".join(f"{name}: {why}" for name, why in components.items() if why != "ok")
    body = ReadinessOut(title="Service Unavailable", status=503, detail=f"not ready: {waiting}", ready=False,
                        components=components)
    return JSONResponse(body.model_dump(), status_code=503, media_type="application/problem+json",
                        headers={"Retry-After": "1"})


_METRICS_DOC = "The process's metrics in the Prometheus text format (README: Metrics and health)."


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                                                                  "description": _METRICS_DOC}})
async def metrics() -> Response:
    """The process's metrics in the Prometheus text exposition format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

