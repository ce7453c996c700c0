"""HTTP errors of the API and the mapping of every error to RFC 9457 problem details.

Every error answer is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and ``instance`` (see ``chatmq.services.api.problems``); some carry more members
(for example ``unknown_user_ids``). That covers ``ApiError``, the chatmq error classes that
can escape a route, request validation (422, with ``errors``), unknown routes (404), wrong
methods (405, with ``Allow``) and unexpected failures (500, logged here, never described to
the client).
"""

from __future__ import annotations

import http
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatmq.core.errors import AuthError, ConflictError, ForbiddenError, NotFoundError, StoreError
from chatmq.services.api.problems import PROBLEM_MEDIA_TYPE, kind_for

log = logging.getLogger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class ApiError(Exception):
    """An answer other than success: ``status``, a ``detail`` message, optional extra members.

    ``kind`` names the problem kind (a slug of ``problems.KINDS``); by default the status's.
    """

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, kind: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.kind = kind
        self.extra = extra


def unauthorized(detail: str) -> ApiError:
    """401 with the ``WWW-Authenticate: Bearer`` challenge."""
    return ApiError(401, detail, headers=BEARER_CHALLENGE)


def forbidden(detail: str) -> ApiError:
    """403."""
    return ApiError(403, detail)


def not_found(detail: str) -> ApiError:
    """404."""
    return ApiError(404, detail)


def problem_response(request: Request, status: int, detail: str, *, kind: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The problem details answer for ``request``: the kind ``kind`` (default: the status's)."""
    found = kind_for(status, kind)
    body: dict[str, Any] = {
        "type": found.type if found else "about:blank",
        "title": found.title if found else _phrase(status),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers, **exc.extra)


def _simple(status: int, headers: dict[str, str] | None = None) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, status, str(exc) or _phrase(status), headers=headers)

    return handler


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store failed during %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return problem_response(request, 503, "storage is unavailable, try again", headers={"Retry-After": "1"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors: unknown routes (404), wrong methods (405), and ``HTTPException``s."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    if exc.status_code == 404 and detail == _phrase(404):
        detail = f"no route {request.url.path}"
    elif exc.status_code == 405 and detail == _phrase(405):
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(request, exc.status_code, detail, headers=dict(exc.headers) if exc.headers else None)


def _field(loc: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each invalid field and why, never echoing the input (it may be a password)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10]) or "invalid request"
    return problem_response(request, 422, detail, kind="invalid-request", errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected failure during %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "the server failed unexpectedly; the failure is logged")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem details (see the module docstring)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AuthError, _simple(401, BEARER_CHALLENGE))
    app.add_exception_handler(ForbiddenError, _simple(403))
    app.add_exception_handler(NotFoundError, _simple(404))
    app.add_exception_handler(ConflictError, _simple(409))
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
