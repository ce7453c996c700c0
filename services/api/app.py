"""``create_app``: the FastAPI application of the REST API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

import chatmq
from chatmq.core.auth import TokenService
from chatmq.services.api import (
    admin_routes,
    auth_routes,
    blocks_routes,
    contacts_routes,
    devices_routes,
    files_routes,
    groups_routes,
    health_routes,
    jobs_routes,
    presence_routes,
    problems,
    processes_routes,
    search_routes,
    sessions_routes,
    telemetry_routes,
    users_routes,
)
from chatmq.services.api.body_limit import DEFAULT_MAX_BODY, BodyLimit
from chatmq.services.api.control import SessionControl
from chatmq.services.api.conversations_routes import conversations_router
from chatmq.services.api.deps import ApiContext
from chatmq.services.api.errors import install_error_handlers
from chatmq.services.api.notifier import ChatFeed, DeviceLink, Notifier
from chatmq.services.api.ratelimit import AuthLimiter, AuthLimits
from chatmq.services.api.web import mount_web_client
from chatmq.services.store.base import Store
from chatmq.services.store.files import FileStore
from chatmq.services.telemetry.reader import TelemetryReader

API_PREFIX = "/api/v1"

_TAGS = [
    {"name": "admin", "description": "The operators' API: every route needs the access token of an admin "
                                     "(the first one is made with `chatmq admin create`); others get 403."},
    {"name": "problems", "description": "What each problem `type` of an error answer means."},
]


def create_app(store: Store, tokens: TokenService, notifier: Notifier, *, max_page: int = 100,
               control: SessionControl | None = None, auth_limits: AuthLimits | None = None,
               trusted_proxies: Sequence[str] = ("127.0.0.1",), max_body: int = DEFAULT_MAX_BODY,
               devices: DeviceLink | None = None, telemetry: TelemetryReader | None = None,
               files: FileStore | None = None, max_file_size: int = 25 * 1024 * 1024,
               feed: ChatFeed | None = None, phone_key: bytes | None = None) -> FastAPI:
    """The REST API over ``store`` (already started; the caller owns its lifecycle).

    ``tokens`` issues and verifies tokens, ``notifier`` delivers group events to members'
    inboxes, ``max_page`` bounds the ``limit`` of history pages, ``control`` (when given)
    lets the operator API list and close live sessions. ``auth_limits`` are the rate limits of
    register, login and refresh; the client address they count by is the ``X-Forwarded-For``
    address when the peer is one of ``trusted_proxies`` (addresses or networks). Request bodies
    over ``max_body`` bytes are refused with 413 before they are read (``BodyLimit``). ``devices`` tells
    devices about changes of their shadows, commands and jobs (without it they see shadow changes on their
    next ``shadow_get``, and commands and jobs answer 503). ``telemetry`` reads devices' readings back (without
    it ``GET /devices/{id}/telemetry`` answers 503). ``files`` stores uploads (``/files``; without it they
    answer 503) of up to ``max_file_size`` bytes. ``feed`` tells the routers of changed blocks and
    of conversations marked read; ``phone_key`` keys the hashes kept of address-book numbers that are no
    user's (random when not given: every API process of a deployment must share one).
    """
    if max_page < 1:
        raise ValueError("max_page must be at least 1")
    app = FastAPI(title="chatmq", version=chatmq.__version__, openapi_tags=_TAGS,
                  description="REST API of chatmq: accounts, contacts, devices, groups and history, and the "
                              "operators' API. Every error is an RFC 9457 problem details object.")
    app.state.ctx = ApiContext(store=store, tokens=tokens, notifier=notifier, max_page=max_page, control=control,
                               limiter=AuthLimiter(auth_limits), devices=devices, telemetry=telemetry,
                               files=files, feed=feed,
                               **({"phone_key": phone_key} if phone_key is not None else {}))
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted_proxies))
    app.add_middleware(BodyLimit, max_body=max_body,
                       routes={("POST", API_PREFIX + files_routes.PATH): max_file_size + files_routes.MULTIPART_SLACK})
    install_error_handlers(app)

    v1 = APIRouter(prefix=API_PREFIX)
    v1.include_router(auth_routes.router)
    v1.include_router(users_routes.router)
    v1.include_router(contacts_routes.router)
    v1.include_router(presence_routes.router)
    v1.include_router(blocks_routes.router)
    v1.include_router(sessions_routes.router)
    v1.include_router(devices_routes.router)
    v1.include_router(jobs_routes.router)
    v1.include_router(telemetry_routes.router)
    v1.include_router(groups_routes.router)
    v1.include_router(conversations_router(max_page))
    v1.include_router(files_routes.files_router(max_file_size))
    v1.include_router(search_routes.router)
    v1.include_router(admin_routes.router)
    v1.include_router(processes_routes.router)
    v1.include_router(problems.router)
    app.include_router(v1)
    app.include_router(health_routes.router)
    mount_web_client(app)  # the browser client at / (built by scripts/web.sh)
    _document_problems(app)
    return app


def _document_problems(app: FastAPI) -> None:
    """The OpenAPI document shows every error answer as a ``Problem`` (``problems.document_problems``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.document_problems(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
