"""HTTP errors of the API and the mapping of chatmq errors to HTTP answers.

Every error body is a JSON object with a human ``detail``; some carry more fields
(for example ``unknown_user_ids``). Validation errors keep FastAPI's 422 shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chatmq.errors import AuthError, ConflictError, ForbiddenError, NotFoundError, StoreError

log = logging.getLogger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class ApiError(Exception):
    """An answer other than success: ``status``, a ``detail`` message, optional extra body fields."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
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


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=exc.headers)


def _simple(status: int, headers: dict[str, str] | None = None) -> Any:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc) or "error"}, status_code=status, headers=headers)

    return handler


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store failed during %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"detail": "storage is unavailable, try again"}, status_code=503,
                        headers={"Retry-After": "1"})


def install_error_handlers(app: FastAPI) -> None:
    """Map ``ApiError`` and the chatmq error classes that can escape a route to JSON answers."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AuthError, _simple(401, BEARER_CHALLENGE))
    app.add_exception_handler(ForbiddenError, _simple(403))
    app.add_exception_handler(NotFoundError, _simple(404))
    app.add_exception_handler(ConflictError, _simple(409))
    app.add_exception_handler(StoreError, _store_error)
