"""Rate limits of register, login and refresh: per client address (behind trusted proxies only)
and per username for failed logins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from chatmq.broker.ratelimit import TokenBucket
from chatmq.core.auth import TokenService
from chatmq.core.settings import Settings
from chatmq.services.api import create_app
from chatmq.services.api.ratelimit import AuthLimits, KeyedBuckets
from chatmq.services.store.sqlite import SQLiteStore
from tests.unit.conftest import PASSWORD, TOKEN_KEY, RecordingNotifier

V1 = "/api/v1"
ALICE = {"username": "alice", "password": PASSWORD}
LOW = AuthLimits(rate_per_address=0.01, burst_per_address=4, rate_per_username=0.01, burst_per_username=2)

Clients = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


def test_token_bucket_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=2, burst=1)
    t0 = bucket._last
    assert bucket.wait(t0) == 0.0
    assert bucket.take(t0)
    assert bucket.wait(t0) == pytest.approx(0.5)
    assert bucket.wait(t0 + 0.25) == pytest.approx(0.25)
    assert bucket.wait(t0 + 0.5) == 0.0


def test_keyed_buckets_are_per_key_and_bounded() -> None:
    buckets = KeyedBuckets(rate=0.001, burst=1, max_keys=3)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0
    for key in "cde":
        buckets.take(key)
    assert len(buckets) == 3
    assert buckets.take("a") == 0.0  # forgotten (least recently used), so full again
    with pytest.raises(ValueError, match="positive"):
        KeyedBuckets(rate=0, burst=1)


def test_settings_carry_the_limits() -> None:
    s = Settings.load(auth_rate_per_address=2.5, auth_burst_per_address=7, login_rate_per_username=0.5,
                      login_burst_per_username=3, login_rate_per_username_address=0.2,
                      login_burst_per_username_address=4, trusted_proxies=["10.0.0.0/8"])
    assert AuthLimits.of(s) == AuthLimits(2.5, 7, 0.5, 3, 0.2, 4)
    assert AuthLimits.of(Settings.load()) == AuthLimits()  # the settings' defaults are the limiter's
    assert s.trusted_proxies == ["10.0.0.0/8"]
    assert Settings.load().trusted_proxies == ["127.0.0.1"]


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[Clients]:
    """Clients of one app with low limits, trusting the proxy 10.0.0.1; each argument is the client's
    TCP peer address."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.start()
    app = create_app(store, TokenService(TOKEN_KEY, 900, 3600), RecordingNotifier(), auth_limits=LOW,
                     trusted_proxies=["10.0.0.1"])

    @asynccontextmanager
    async def client(peer: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c

    try:
        yield client
    finally:
        await store.stop()


def _limited(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"{V1}/problems/rate-limited"
    assert int(r.headers["retry-after"]) == body["retry_after"] >= 1
    return int(body["retry_after"])


async def test_register_login_and_refresh_share_a_limit_per_address(clients: Clients) -> None:
    async with clients("192.0.2.7") as c, clients("192.0.2.8") as other:
        assert (await c.post(f"{V1}/auth/register", json=ALICE)).status_code == 201
        tokens = (await c.post(f"{V1}/auth/login", json={"username": "alice", "password": PASSWORD})).json()
        assert (await c.post(f"{V1}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 200
        assert (await c.post(f"{V1}/auth/login", json={"username": "alice", "password": PASSWORD})).status_code == 200
        for path, body in ((f"{V1}/auth/login", {"username": "alice", "password": PASSWORD}),
                           (f"{V1}/auth/register", {"username": "bob", "password": PASSWORD}),
                           (f"{V1}/auth/refresh", {"refresh_token": tokens["refresh_token"]})):
            assert _limited(await c.post(path, json=body)) > 1  # a token a 100 s
        # other routes, and other addresses, are not limited
        me = await c.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200
        assert (await other.post(f"{V1}/auth/login", json=ALICE)).status_code == 200


async def test_the_address_behind_a_trusted_proxy_counts(clients: Clients) -> None:
    async with clients("10.0.0.1") as proxy, clients("192.0.2.9") as direct:
        for i in range(4):
            r = await proxy.post(f"{V1}/auth/login", json={"username": f"x{i}", "password": "y"},
                                 headers={"X-Forwarded-For": f"198.51.100.{i}"})
            assert r.status_code == 401
        # an untrusted peer's X-Forwarded-For is ignored: it counts as itself
        for i in range(4):
            r = await direct.post(f"{V1}/auth/register", json={"username": f"user{i}", "password": PASSWORD},
                                  headers={"X-Forwarded-For": f"203.0.113.{i}"})
            assert r.status_code == 201
        _limited(await direct.post(f"{V1}/auth/register", json={"username": "user9", "password": PASSWORD},
                                   headers={"X-Forwarded-For": "203.0.113.99"}))
        # the proxy's own address is not what counts: a fifth client behind it still gets in
        r = await proxy.post(f"{V1}/auth/login", json={"username": "user0", "password": PASSWORD},
                             headers={"X-Forwarded-For": "198.51.100.77"})
        assert r.status_code == 200


async def test_failed_logins_are_limited_per_username(clients: Clients) -> None:
    async with clients("192.0.2.1") as setup:
        for name in ("alice", "bob"):
            r = await setup.post(f"{V1}/auth/register", json={"username": name, "password": PASSWORD})
            assert r.status_code == 201
    for i in range(2):  # two wrong guesses from two addresses use up alice's failed logins
        async with clients(f"192.0.2.{10 + i}") as c:
            r = await c.post(f"{V1}/auth/login", json={"username": "alice", "password": "guess"})
            assert r.status_code == 401
    async with clients("192.0.2.20") as c:
        # even the right password is refused now, and the answer says so (not "bad credentials")
        r = await c.post(f"{V1}/auth/login", json={"username": "Alice", "password": PASSWORD})
        assert "failed logins" in r.json()["detail"]
        _limited(r)
        assert (await c.post(f"{V1}/auth/login", json={"username": "bob", "password": PASSWORD})).status_code == 200
        assert (await c.post(f"{V1}/auth/login", json={"username": "bob", "password": PASSWORD})).status_code == 200
        assert (await c.post(f"{V1}/auth/login", json={"username": "bob", "password": PASSWORD})).status_code == 200


async def test_a_stranger_failing_logins_from_one_address_cannot_lock_the_user_out(tmp_path: Path) -> None:
    """Failed logins count per username *and* address: a stranger who used up alice's allowance
    from their address is refused there, while alice logs in from hers. The per-username backstop
    still ends guessing spread over many addresses."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.start()
    limits = AuthLimits(rate_per_address=100, burst_per_address=100, rate_per_username=0.01, burst_per_username=6,
                        rate_per_username_address=0.01, burst_per_username_address=3)
    app = create_app(store, TokenService(TOKEN_KEY, 900, 3600), RecordingNotifier(), auth_limits=limits)

    def client(peer: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://t")

    try:
        async with client("192.0.2.66") as stranger, client("198.51.100.5") as alice:
            assert (await alice.post(f"{V1}/auth/register", json=ALICE)).status_code == 201
            for _ in range(3):
                r = await stranger.post(f"{V1}/auth/login", json={"username": "alice", "password": "guess"})
                assert r.status_code == 401
            _limited(await stranger.post(f"{V1}/auth/login", json=ALICE))  # locked out there, even with it right
            assert (await alice.post(f"{V1}/auth/login", json=ALICE)).status_code == 200
            # guesses from more addresses add up to the username's backstop (6): then alice waits too
            for i in range(3):
                async with client(f"203.0.113.{i}") as other:
                    r = await other.post(f"{V1}/auth/login", json={"username": "alice", "password": "guess"})
                    assert r.status_code == 401
            _limited(await alice.post(f"{V1}/auth/login", json=ALICE))
    finally:
        await store.stop()
