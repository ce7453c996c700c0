"""``BodyLimit``: every REST request body is bounded before it is buffered (a route may have a limit of
its own: file uploads).

A pure ASGI middleware (no request object, nothing read ahead): a request whose
``Content-Length`` is over the limit is answered 413 at once, before any of its body is read;
one without it (``Transfer-Encoding: chunked``) has its body counted as the application reads
it, and the read that goes past the limit raises ``BodyTooLargeError`` (an ``HTTPException``,
so FastAPI passes it on untouched and the API's handler answers it) instead of returning the
chunk. Either way no more than ``max_body`` bytes plus one chunk of a body are ever held
(uvicorn stops reading the socket while a chunk waits). The answer is the API's usual problem
details (``payload-too-large``), with ``Connection: close``: the client may still be sending.

FastAPI (0.16x) and Starlette have a body limit of their own, but they answer in plain text
or FastAPI's ``{"detail"}``, not problem details, and chatmq supports older FastAPI releases.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmq.services.api.errors import problem_response

DEFAULT_MAX_BODY = 1024 * 1024
_CLOSE = {"Connection": "close"}


class BodyTooLargeError(HTTPException):
    """A request body went past the limit (413)."""

    def __init__(self, max_body: int) -> None:
        super().__init__(413, f"the request body is larger than {max_body} bytes", headers=_CLOSE)


class BodyLimit:
    """Refuses (413) request bodies over ``max_body`` bytes, by header or by count."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY,
                 routes: Mapping[tuple[str, str], int] | None = None) -> None:
        if max_body < 1 or any(limit < 1 for limit in (routes or {}).values()):
            raise ValueError("max_body must be positive")
        self.app = app
        self.max_body = max_body
        self.routes = dict(routes or {})  # (method, path): a limit of its own (file uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body = self.routes.get((scope["method"], scope["path"]), self.max_body)
        declared = _content_length(scope)
        if declared is not None and declared > max_body:
            await self._refuse(scope, receive, send, max_body)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise BodyTooLargeError(max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:  # read outside the API's error handlers
            if not started:
                await self._refuse(scope, receive, send, max_body)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
        error = BodyTooLargeError(max_body)
        response = problem_response(Request(scope), error.status_code, error.detail, headers=_CLOSE)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``; a malformed one counts as too large."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 1 << 62
    return None
