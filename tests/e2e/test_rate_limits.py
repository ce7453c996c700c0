"""Register, login and refresh are rate limited per client address, embedded and clustered (there
through nginx, whose X-Forwarded-For the API trusts), with a low configured limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import Deployment, cluster, serve

BURST = 6
LIMITS = {"CHATMQ_AUTH_RATE_PER_ADDRESS": "0.01", "CHATMQ_AUTH_BURST_PER_ADDRESS": str(BURST)}
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment whose addresses may make ``BURST`` auth requests, then one per 100 s."""
    if request.param == "embedded":
        yield from serve(tmp_path_factory.mktemp("limited"), **LIMITS)
    else:
        yield from cluster(tmp_path_factory.mktemp("limited-cluster"), nodes=1, env=LIMITS)


def test_auth_requests_beyond_the_limit_get_429(limited: Deployment) -> None:
    api = f"{limited.api_url}/api/v1"
    name = f"u{uuid.uuid4().hex[:12]}"
    assert httpx.post(f"{api}/auth/register", json={"username": name, "password": PASSWORD}).status_code == 201
    tokens = httpx.post(f"{api}/auth/login", json={"username": name, "password": PASSWORD}).json()
    refreshed = httpx.post(f"{api}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    for _ in range(BURST - 3):
        assert httpx.post(f"{api}/auth/login", json={"username": name, "password": PASSWORD}).status_code == 200
    for path, body in (("login", {"username": name, "password": PASSWORD}),
                       ("register", {"username": f"u{uuid.uuid4().hex[:12]}", "password": PASSWORD}),
                       ("refresh", {"refresh_token": tokens["refresh_token"]})):
        r = httpx.post(f"{api}/auth/{path}", json=body)
        assert (r.status_code, r.headers["content-type"]) == (429, "application/problem+json"), r.text
        assert int(r.headers["retry-after"]) == r.json()["retry_after"] > 1
        assert "from this address" in r.json()["detail"]
    # the limit is on logging in, not on using the API
    me = httpx.get(f"{api}/users/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert me.status_code == 200
    assert httpx.get(f"{limited.api_url}/healthz").status_code == 200
