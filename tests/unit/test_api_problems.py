"""Every error of the REST API is an RFC 9457 problem details object (``application/problem+json``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatmq.core.auth import TokenService
from chatmq.services.api import create_app
from chatmq.services.store.sqlite import SQLiteStore
from tests.unit.conftest import TOKEN_KEY, ApiHarness, RecordingNotifier

V1 = "/api/v1"
MEMBERS = {"type", "title", "status", "detail", "instance"}


def problem(r: httpx.Response, status: int, slug: str | None) -> dict[str, Any]:
    """The body of ``r``, checked to be a problem of ``status`` and kind ``slug`` (None: about:blank)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body.keys() >= MEMBERS
    assert body["status"] == status
    assert body["type"] == (f"{V1}/problems/{slug}" if slug else "about:blank")
    assert body["instance"] == r.request.url.path
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def test_api_errors_are_problems_and_keep_detail(api: ApiHarness) -> None:
    alice = await api.user("alice")
    body = problem(await api.client.get(f"{V1}/groups/g0000000000000000", headers=api.auth(alice)), 404, "not-found")
    assert body["detail"] == "no such group"
    assert body["title"] == "Not found"
    r = await api.client.get(f"{V1}/users/me")
    assert problem(r, 401, "unauthorized")["detail"] == "missing bearer token"
    assert r.headers["www-authenticate"] == "Bearer"
    assert problem(await api.client.get(f"{V1}/admin/stats", headers=api.auth(alice)), 403,
                   "forbidden")["detail"] == "admin only"
    taken = await api.client.post(f"{V1}/auth/register", json={"username": "alice", "password": "x" * 8})
    assert problem(taken, 409, "conflict")["detail"] == "username is taken"


async def test_unknown_members_keep_their_extension_member(api: ApiHarness) -> None:
    alice = await api.user("alice")
    r = await api.client.post(f"{V1}/groups", headers=api.auth(alice),
                              json={"name": "g", "members": ["u00000000000000ff"]})
    body = problem(r, 422, "unknown-users")
    assert body["unknown_user_ids"] == ["u00000000000000ff"]


async def test_validation_problems_list_fields_and_never_echo_input(api: ApiHarness) -> None:
    r = await api.client.post(f"{V1}/auth/register", json={"username": "NO!", "password": "secret1"})
    body = problem(r, 422, "invalid-request")
    assert {e["field"] for e in body["errors"]} == {"body.username", "body.password"}
    assert all(e["message"] for e in body["errors"])
    assert "body.username" in body["detail"]
    assert "secret1" not in r.text
    bad_json = await api.client.post(f"{V1}/auth/login", content=b"{not json",
                                     headers={"content-type": "application/json"})
    assert problem(bad_json, 422, "invalid-request")["errors"]
    alice = await api.user("alice")
    paging = await api.client.get(f"{V1}/conversations/{alice}/messages?limit=0", headers=api.auth(alice))
    assert [e["field"] for e in problem(paging, 422, "invalid-request")["errors"]] == ["query.limit"]


async def test_unknown_routes_and_wrong_methods(api: ApiHarness) -> None:
    body = problem(await api.client.get(f"{V1}/nothing/here"), 404, "not-found")
    assert body["detail"] == f"no route {V1}/nothing/here"
    r = await api.client.delete(f"{V1}/auth/login")
    assert "DELETE" in problem(r, 405, "method-not-allowed")["detail"]
    assert "POST" in r.headers["allow"]


async def test_problem_types_are_documented_where_their_uri_leads(api: ApiHarness) -> None:
    kinds = (await api.client.get(f"{V1}/problems")).json()
    assert {k["type"] for k in kinds} >= {f"{V1}/problems/{s}" for s in ("not-found", "rate-limited",
                                                                         "invalid-request", "internal-error")}
    for kind in kinds:
        doc = (await api.client.get(kind["type"])).json()
        assert doc == kind
        assert doc["description"]
    problem(await api.client.get(f"{V1}/problems/nope"), 404, "not-found")


async def test_openapi_shows_problems(api: ApiHarness) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["Problem"]["properties"].keys() >= MEMBERS
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    me = doc["paths"][f"{V1}/users/me"]["get"]["responses"]
    assert me["401"]["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    register = doc["paths"][f"{V1}/auth/register"]["post"]["responses"]
    assert set(register) >= {"201", "409", "422", "500"}
    for code in ("409", "422"):
        assert list(register[code]["content"]) == ["application/problem+json"]
    assert list(register["201"]["content"]) == ["application/json"]


@pytest.fixture
async def failing_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with a route that fails unexpectedly (``GET /api/v1/boom``)."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.start()
    app = create_app(store, TokenService(TOKEN_KEY, 900, 3600), RecordingNotifier())

    @app.get(f"{V1}/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret/path")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
    finally:
        await store.stop()


async def test_an_unexpected_failure_is_a_500_problem_without_internals(
    failing_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    r = await failing_client.get(f"{V1}/boom")
    assert problem(r, 500, "internal-error")["title"] == "Internal server error"
    assert "hunter2" not in r.text
    assert "RuntimeError" not in r.text
    assert "unexpected failure during GET /api/v1/boom" in caplog.text
