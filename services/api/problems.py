"""RFC 9457 problem details: the kinds of problem the API answers with, and their documents.

Every error of the API is a ``application/problem+json`` object with the members ``type`` (a URI
naming the kind: ``/api/v1/problems/<slug>``, which answers with the kind's description, or
``about:blank`` for a plain HTTP status with no kind of its own), ``title`` (the kind's fixed
summary), ``status``, ``detail`` (what happened this time, for humans; clients that show an
error show this) and ``instance`` (the request path). Some kinds add members: validation
problems ``errors`` (``[{field, message}]``), unknown members ``unknown_user_ids``, rate limits
``retry_after``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

PROBLEMS_PATH = "/api/v1/problems"
PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """One kind of problem: its URI slug, fixed title, usual status and what it means."""

    slug: str
    title: str
    status: int
    description: str

    @property
    def type(self) -> str:
        return f"{PROBLEMS_PATH}/{self.slug}"


#: slug | status | title | description: one kind a line.
_KIND_TABLE = """
invalid-request | 422 | The request is not valid | The body, path or query does not have the documented shape; \
`errors` lists each field (`field` is its path, e.g. `body.username`) with what is wrong with it.
unknown-users | 422 | Unknown users | Some of the named user ids are not registered; `unknown_user_ids` lists them.
unauthorized | 401 | Authentication required | The bearer token (or the credentials) is missing, invalid, expired \
or revoked. Log in again (or refresh).
forbidden | 403 | Not allowed | The caller may not do this: a disabled account, not an admin, not a member of the group.
not-found | 404 | Not found | No such resource (user, group, device, session, route).
method-not-allowed | 405 | Method not allowed | The path exists but not with this method; `Allow` lists the methods.
conflict | 409 | Conflict | The request conflicts with the current state (a taken username, disabling yourself).
payload-too-large | 413 | Request body too large | The request body is larger than the server accepts \
(`max_request_body`); nothing of it was processed.
rate-limited | 429 | Too many requests | Too many attempts from this client address (or for this username); wait \
`Retry-After` seconds (also in `retry_after`).
internal-error | 500 | Internal server error | The server failed unexpectedly; the failure is logged on the server. \
Try again later.
unavailable | 503 | Service unavailable | A part the request needs (storage, session control) is unavailable; try \
again after `Retry-After` seconds when given.
"""


def _kinds(table: str) -> dict[str, ProblemKind]:
    rows = (line.split(" | ") for line in table.strip().splitlines())
    return {slug: ProblemKind(slug, title, int(status), description) for slug, status, title, description in rows}


KINDS: dict[str, ProblemKind] = _kinds(_KIND_TABLE)

#: The kind of an error that names none, by status (other statuses are ``about:blank``).
DEFAULT_KIND_BY_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
                          409: "conflict", 413: "payload-too-large", 422: "invalid-request", 429: "rate-limited",
                          500: "internal-error", 503: "unavailable"}


def kind_for(status: int, slug: str | None = None) -> ProblemKind | None:
    """The kind ``slug`` names, else the default kind of ``status``; None means ``about:blank``."""
    name = slug or DEFAULT_KIND_BY_STATUS.get(status)
    return KINDS.get(name) if name else None


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Where: `body.username`, `query.limit`, `path.group_id`.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem details object (``application/problem+json``); kinds may add members."""

    type: str = Field(description="A URI naming the kind of problem (`/api/v1/problems/<slug>`), or about:blank.")
    title: str = Field(description="The kind's fixed summary.")
    status: int
    detail: str = Field(description="What went wrong this time, for humans.")
    instance: str = Field(description="The request path.")
    errors: list[FieldError] | None = Field(None, description="Validation problems only: each invalid field.")
    unknown_user_ids: list[str] | None = Field(None, description="`unknown-users` only.")
    retry_after: int | None = Field(None, description="`rate-limited` only: seconds to wait.")


class ProblemType(BaseModel):
    """``GET /api/v1/problems/{slug}``: what a problem ``type`` means."""

    type: str
    title: str
    status: int
    description: str

    @classmethod
    def of(cls, kind: ProblemKind) -> ProblemType:
        """The document of ``kind``."""
        return cls(type=kind.type, title=kind.title, status=kind.status, description=kind.description)


router = APIRouter(prefix="/problems", tags=["problems"])


@router.get("", response_model=list[ProblemType])
async def problem_types() -> list[ProblemType]:
    """Every kind of problem the API answers with."""
    return [ProblemType.of(k) for k in KINDS.values()]


@router.get("/{slug}", response_model=ProblemType)
async def problem_type(slug: str) -> ProblemType:
    """The documentation of one problem ``type`` (where its URI leads)."""
    kind = KINDS.get(slug)
    if kind is None:
        raise HTTPException(404, "no such problem type")
    return ProblemType.of(kind)


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_COMMON: dict[str, str] = {"500": "Internal server error (problem details).",
                           "503": "Storage or session control unavailable (problem details)."}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite an OpenAPI document so every error response (4xx, 5xx) without a schema of its own
    is a ``Problem`` in ``application/problem+json``; add 401/403 to operations that need a bearer token, and 500/503
    to every operation. Returns ``schema`` (changed in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", {"description": "Missing, invalid, expired or revoked token."})
                responses.setdefault("403", {"description": "The account is disabled."})
            if path.startswith("/api/v1"):
                for code, text in _COMMON.items():
                    responses.setdefault(code, {"description": text})
            for code, response in responses.items():
                if code[0] in "45" and _generic(response.get("content")):
                    if code == "422" and response.get("description") == "Validation Error":
                        response["description"] = "The request is not valid (`errors` lists the fields)."
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    return schema


def _generic(content: dict[str, Any] | None) -> bool:
    """True for an error response without a schema of its own (none, or FastAPI's validation error)."""
    if not content:
        return True
    return all(media.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError") for media in content.values())
