"""REST API: /healthz, /auth/*, /users/me, /contacts/sync, /push-tokens, and bearer authentication."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable

import httpx
import jwt
import pytest

from chatmq.core.auth import hash_secret, hash_workers, verify_secret
from tests.unit.conftest import PASSWORD, TOKEN_KEY, ApiHarness

V1 = "/api/v1"


async def _register(api: ApiHarness, username: str, password: str = PASSWORD) -> str:
    r = await api.client.post(f"{V1}/auth/register", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    user_id: str = r.json()["user_id"]
    return user_id


async def _login(api: ApiHarness, username: str, password: str) -> httpx.Response:
    return await api.client.post(f"{V1}/auth/login", json={"username": username, "password": password})


def _expired_access(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "typ": "access", "adm": False, "iat": now - 100, "exp": now - 10},
                      TOKEN_KEY, algorithm="HS256")


# health ------------------------------------------------------------------------
async def test_healthz_needs_no_token(api: ApiHarness) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_openapi_lists_the_contract_routes(api: ApiHarness) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    for path in ("/auth/register", "/auth/login", "/auth/refresh", "/users/me", "/contacts/sync",
                 "/push-tokens", "/devices", "/groups", "/groups/{group_id}/members/{user_id}",
                 "/conversations/{peer}/messages"):
        assert f"{V1}{path}" in doc["paths"]
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert "RegisterRequest" in doc["components"]["schemas"]


# register ----------------------------------------------------------------------
async def test_register_creates_a_user_with_a_hashed_password(api: ApiHarness) -> None:
    r = await api.client.post(f"{V1}/auth/register",
                              json={"username": "alice", "password": PASSWORD, "display_name": "Alice A."})
    assert r.status_code == 201
    body = r.json()
    assert body["username"] == "alice"
    assert body["user_id"].startswith("u")
    user = await api.store.get_user(body["user_id"])
    assert user is not None
    assert user.username == "alice"
    assert user.display_name == "Alice A."
    assert PASSWORD not in user.password_hash
    assert verify_secret(user.password_hash, PASSWORD)


async def test_register_taken_username_is_409(api: ApiHarness) -> None:
    await _register(api, "alice")
    r = await api.client.post(f"{V1}/auth/register", json={"username": "alice", "password": "another pass"})
    assert r.status_code == 409
    assert "taken" in r.json()["detail"]
    assert await api.store.count_users() == 1


@pytest.mark.parametrize("username", ["ab", "x" * 33, "Alice", "al ice", "al@ice", "émile", ""])
async def test_register_rejects_bad_usernames(api: ApiHarness, username: str) -> None:
    r = await api.client.post(f"{V1}/auth/register", json={"username": username, "password": PASSWORD})
    assert r.status_code == 422
    assert await api.store.count_users() == 0


@pytest.mark.parametrize("username", ["abc", "x" * 32, "a_b.c-d9"])
async def test_register_accepts_edge_usernames(api: ApiHarness, username: str) -> None:
    await _register(api, username)


@pytest.mark.parametrize(("password", "status"), [("x" * 7, 422), ("x" * 8, 201), ("x" * 256, 201),
                                                  ("x" * 257, 422)])
async def test_register_password_length(api: ApiHarness, password: str, status: int) -> None:
    r = await api.client.post(f"{V1}/auth/register", json={"username": "bob", "password": password})
    assert r.status_code == status


async def test_register_bad_json_is_422(api: ApiHarness) -> None:
    r = await api.client.post(f"{V1}/auth/register", content=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = await api.client.post(f"{V1}/auth/register", json={"username": "alice"})
    assert r.status_code == 422


# login -------------------------------------------------------------------------
async def test_login_returns_tokens(api: ApiHarness) -> None:
    user_id = await _register(api, "alice")
    r = await api.client.post(f"{V1}/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["user_id"] == user_id
    claims = api.tokens.verify_access(body["access_token"])
    assert claims.user_id == user_id
    assert claims.admin is False
    assert api.tokens.verify_refresh(body["refresh_token"]).user_id == user_id


async def test_login_of_an_operator_carries_the_admin_flag(api: ApiHarness) -> None:
    await api.user("root", admin=True)
    r = await api.client.post(f"{V1}/auth/login", json={"username": "root", "password": PASSWORD})
    assert r.status_code == 200
    assert api.tokens.verify_access(r.json()["access_token"]).admin is True


async def test_login_bad_credentials_same_401_for_unknown_user_and_wrong_password(api: ApiHarness) -> None:
    await _register(api, "alice")
    wrong = await _login(api, "alice", "wrong password")
    unknown = await _login(api, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "access_token" not in wrong.json()


async def test_login_disabled_user_is_401(api: ApiHarness) -> None:
    user_id = await _register(api, "alice")
    await api.store.set_user_flags(user_id, disabled=True)
    r = await api.client.post(f"{V1}/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 401
    assert "access_token" not in r.json()


async def test_passwords_and_tokens_are_never_logged(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _register(api, "alice", "my secret passphrase")
    r = await _login(api, "alice", "my secret passphrase")
    body = r.json()
    await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": body["refresh_token"]})
    await api.client.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    await _login(api, "alice", "wrong passphrase!")
    text = caplog.text
    for secret in ("my secret passphrase", "wrong passphrase!", body["access_token"], body["refresh_token"]):
        assert secret not in text


# refresh -----------------------------------------------------------------------
async def test_refresh_returns_working_new_tokens(api: ApiHarness) -> None:
    user_id = await _register(api, "alice")
    login = (await _login(api, "alice", PASSWORD)).json()
    r = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == user_id
    assert body["token_type"] == "bearer"
    assert body["refresh_token"] != login["refresh_token"]
    me = await api.client.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["user_id"] == user_id


async def _refresh(api: ApiHarness, token: str) -> httpx.Response:
    return await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": token})


async def test_stolen_refresh_token_replayed_after_rotation_revokes_the_login(api: ApiHarness) -> None:
    """Each refresh spends its token and hands out the next; a spent token shown again (a copy in an
    attacker's hands) is refused and takes every token of that login with it, while another login
    of the same user goes on."""
    await _register(api, "alice")
    login = (await _login(api, "alice", PASSWORD)).json()
    other_login = (await _login(api, "alice", PASSWORD)).json()
    first = await _refresh(api, login["refresh_token"])
    assert first.status_code == 200
    second = await _refresh(api, first.json()["refresh_token"])
    assert second.status_code == 200
    assert len({login["refresh_token"], first.json()["refresh_token"], second.json()["refresh_token"]}) == 3

    replay = await _refresh(api, login["refresh_token"])  # the attacker's copy of the spent token
    assert (replay.status_code, replay.headers["content-type"]) == (401, "application/problem+json")
    assert "already used" in replay.json()["detail"]
    assert "access_token" not in replay.json()
    # the family is gone: the newest token, which was never used, is refused too
    assert (await _refresh(api, second.json()["refresh_token"])).status_code == 401
    # the user's other login is untouched
    assert (await _refresh(api, other_login["refresh_token"])).status_code == 200


async def test_refresh_token_reused_within_the_grace_gets_tokens_again(api: ApiHarness) -> None:
    """Two tabs of one browser racing with the same refresh token within ``reuse_grace`` seconds
    both get tokens, and the login goes on; the grace is the TokenService's (``refresh_reuse_grace``)."""
    await _register(api, "alice")
    login = (await _login(api, "alice", PASSWORD)).json()
    api.tokens.reuse_grace = 30.0
    first = await _refresh(api, login["refresh_token"])
    second = await _refresh(api, login["refresh_token"])
    assert (first.status_code, second.status_code) == (200, 200)
    assert (await _refresh(api, second.json()["refresh_token"])).status_code == 200
    api.tokens.reuse_grace = 0.0
    assert (await _refresh(api, login["refresh_token"])).status_code == 401  # later: theft, as always


async def test_refresh_token_from_before_rotation_is_spent_once(api: ApiHarness) -> None:
    """A refresh token issued before families existed (no ``fam``) still works, once."""
    user_id = await api.user("alice")
    now = int(time.time())
    legacy = jwt.encode({"sub": user_id, "typ": "refresh", "jti": "legacy-1", "ver": 0, "iat": now,
                         "exp": now + 3600}, TOKEN_KEY, algorithm="HS256")
    fresh = await _refresh(api, legacy)
    assert fresh.status_code == 200
    assert (await _refresh(api, legacy)).status_code == 401
    assert (await _refresh(api, fresh.json()["refresh_token"])).status_code == 401  # its family went with it


async def test_refresh_refuses_an_access_token_and_garbage(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    access = api.tokens.issue(user_id).access_token
    for token in (access, "garbage", jwt.encode({"sub": user_id, "typ": "refresh", "exp": 9999999999},
                                                "another-key" * 4, algorithm="HS256")):
        r = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401, token
        assert "access_token" not in r.json()


async def test_refresh_expired_token_is_401(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    now = int(time.time())
    expired = jwt.encode({"sub": user_id, "typ": "refresh", "jti": "j", "iat": now - 100, "exp": now - 1},
                         TOKEN_KEY, algorithm="HS256")
    r = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": expired})
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


async def test_refresh_refused_for_disabled_and_unknown_users(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    await api.store.set_user_flags(user_id, disabled=True)
    refresh = api.tokens.issue(user_id).refresh_token
    r = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": refresh})
    assert r.status_code == 401
    ghost = api.tokens.issue("u0000000000000000").refresh_token
    r = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": ghost})
    assert r.status_code == 401


# bearer authentication ---------------------------------------------------------
async def test_users_me(api: ApiHarness) -> None:
    user_id = await api.user("alice", display_name="Alice")
    r = await api.client.get(f"{V1}/users/me", headers=api.auth(user_id))
    assert r.status_code == 200
    body = r.json()
    stored = await api.store.get_user(user_id)
    assert stored is not None
    assert body == {"user_id": user_id, "username": "alice", "display_name": "Alice",
                    "created_at": stored.created_at, "phone": None, "presence_visibility": "contacts"}


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==", "Bearer not.a.jwt"])
async def test_missing_or_invalid_token_is_401_with_challenge(api: ApiHarness, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await api.client.get(f"{V1}/users/me", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"]


async def test_expired_access_token_is_401(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    headers = {"Authorization": f"Bearer {_expired_access(user_id)}"}
    r = await api.client.get(f"{V1}/users/me", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "expired" in r.json()["detail"]


async def test_refresh_token_is_not_an_access_token(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    refresh = api.tokens.issue(user_id).refresh_token
    r = await api.client.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {refresh}"})
    assert r.status_code == 401


async def test_token_of_a_user_that_does_not_exist_is_401(api: ApiHarness) -> None:
    r = await api.client.get(f"{V1}/users/me", headers=api.auth("u0000000000000000"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


async def test_disabled_user_is_403(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    headers = api.auth(user_id)
    await api.store.set_user_flags(user_id, disabled=True)
    r = await api.client.get(f"{V1}/users/me", headers=headers)
    assert r.status_code == 403
    assert "disabled" in r.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/users/me"), ("POST", "/contacts/sync"), ("POST", "/push-tokens"), ("DELETE", "/push-tokens/t"),
    ("POST", "/devices"), ("GET", "/devices"), ("DELETE", "/devices/d1"), ("POST", "/groups"),
    ("GET", "/groups"), ("GET", "/groups/g1"), ("PATCH", "/groups/g1"), ("POST", "/groups/g1/members"),
    ("DELETE", "/groups/g1/members/u1"), ("GET", "/conversations/u1/messages"),
])
async def test_every_other_route_needs_a_token(api: ApiHarness, method: str, path: str) -> None:
    r = await api.client.request(method, f"{V1}{path}")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


# contacts ----------------------------------------------------------------------
async def test_contacts_sync_returns_the_registered_ones(api: ApiHarness) -> None:
    me = await api.user("alice")
    bob = await api.user("bob")
    carol = await api.user("carol")
    r = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me),
                              json={"usernames": ["bob", "carol", "nobody", "bob", "Not A Name"]})
    assert r.status_code == 200
    assert r.json() == {"registered": {"bob": bob, "carol": carol}, "phones": {}}


async def test_contacts_sync_empty_and_too_many(api: ApiHarness) -> None:
    me = await api.user("alice")
    r = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me), json={"usernames": []})
    assert r.status_code == 200
    assert r.json() == {"registered": {}, "phones": {}}
    many = [f"user{i}" for i in range(1000)]
    r = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me), json={"usernames": many})
    assert r.status_code == 200
    r = await api.client.post(f"{V1}/contacts/sync", headers=api.auth(me), json={"usernames": [*many, "x"]})
    assert r.status_code == 422


# push tokens -------------------------------------------------------------------
@pytest.mark.parametrize("platform", ["android", "ios", "web"])
async def test_push_token_register_and_remove(api: ApiHarness, platform: str) -> None:
    me = await api.user("alice")
    r = await api.client.post(f"{V1}/push-tokens", headers=api.auth(me),
                              json={"platform": platform, "token": "tok:123"})
    assert r.status_code == 201
    assert r.json()["platform"] == platform
    assert [(t.platform, t.token) for t in await api.store.push_tokens(me)] == [(platform, "tok:123")]
    r = await api.client.delete(f"{V1}/push-tokens/tok:123", headers=api.auth(me))
    assert r.status_code == 204
    assert r.content == b""
    assert await api.store.push_tokens(me) == []


async def test_push_token_bad_platform_or_empty_token_is_422(api: ApiHarness) -> None:
    me = await api.user("alice")
    bodies = ({"platform": "windows", "token": "t"}, {"platform": "ios", "token": ""}, {"platform": "ios"})
    for body in bodies:
        r = await api.client.post(f"{V1}/push-tokens", headers=api.auth(me), json=body)
        assert r.status_code == 422
    assert await api.store.push_tokens(me) == []


async def test_push_token_delete_unknown_or_foreign_is_404(api: ApiHarness) -> None:
    me = await api.user("alice")
    bob = await api.user("bob")
    body = {"platform": "ios", "token": "bobs"}
    r = await api.client.post(f"{V1}/push-tokens", headers=api.auth(bob), json=body)
    assert r.status_code == 201
    r = await api.client.delete(f"{V1}/push-tokens/bobs", headers=api.auth(me))
    assert r.status_code == 404
    r = await api.client.delete(f"{V1}/push-tokens/nothing", headers=api.auth(me))
    assert r.status_code == 404
    assert [t.token for t in await api.store.push_tokens(bob)] == ["bobs"]


async def test_a_failing_store_is_503(api: ApiHarness) -> None:
    user_id = await api.user("alice")
    headers = api.auth(user_id)
    await api.store.stop()
    r = await api.client.get(f"{V1}/users/me", headers=headers)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "/api/v1/problems/unavailable", "title": "Service unavailable", "status": 503,
                        "detail": "storage is unavailable, try again", "instance": "/api/v1/users/me"}


# other users' public profiles -----------------------------------------------------
async def test_public_profile_of_another_user(api: ApiHarness) -> None:
    alice = await api.user("alice")
    bob = await api.user("bob", display_name="Bob B.")
    r = await api.client.get(f"{V1}/users/{bob}", headers=api.auth(alice))
    assert r.status_code == 200
    assert r.json() == {"user_id": bob, "username": "bob", "display_name": "Bob B."}
    assert "password" not in r.text
    missing = await api.client.get(f"{V1}/users/u0000000000000000", headers=api.auth(alice))
    assert missing.status_code == 404
    assert (await api.client.get(f"{V1}/users/{bob}")).status_code == 401


# argon2 off the event loop -----------------------------------------------------
def _one_check_seconds() -> float:
    """How long one argon2 check takes here: on the loop, each would stall it at least this long."""
    stored = hash_secret("something")
    durations = []
    for _ in range(2):
        started = time.perf_counter()
        verify_secret(stored, "else")
        durations.append(time.perf_counter() - started)
    return min(durations)


async def _longest_stall(work: Awaitable[list[httpx.Response]]) -> tuple[list[httpx.Response], float]:
    """``work``'s answers, and the longest the event loop went without ticking (5 ms ticks) meanwhile."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    answers = await work
    done.set()
    await tick
    return answers, max(gaps)


def _assert_bounded_hashing() -> None:
    hashing = [t for t in threading.enumerate() if t.name.startswith("chatmq-argon2")]
    assert 1 <= len(hashing) <= hash_workers()


async def test_burst_of_wrong_password_logins_does_not_stall_the_event_loop(api: ApiHarness) -> None:
    """Argon2 (hundreds of ms of CPU per check) runs in the shared bounded pool: while a burst of
    logins with wrong passwords is checked, the loop keeps ticking, and no more than
    ``hash_workers()`` threads do the hashing."""
    names = [f"victim{i}" for i in range(6)]
    for name in names:
        await api.user(name)
    one_check = _one_check_seconds()
    answers, stall = await _longest_stall(asyncio.gather(*(_login(api, name, "wrong password") for name in names)))
    assert [r.status_code for r in answers] == [401] * len(names)
    assert stall < one_check * 0.7, f"the loop stalled {stall:.3f} s (one argon2 check: {one_check:.3f} s)"
    _assert_bounded_hashing()


async def test_a_burst_of_registrations_does_not_stall_the_event_loop(api: ApiHarness) -> None:
    """Issue 12: registering 200 users for the simulator pegged the loop (each password hashed on it).
    Hashing runs in the same bounded pool: while a burst of registrations is hashed, the loop ticks."""
    one_check = _one_check_seconds()
    names = [f"newcomer{i}" for i in range(6)]
    register = (api.client.post(f"{V1}/auth/register", json={"username": n, "password": PASSWORD}) for n in names)
    answers, stall = await _longest_stall(asyncio.gather(*register))
    assert [r.status_code for r in answers] == [201] * len(names)
    assert stall < one_check * 0.7, f"the loop stalled {stall:.3f} s (one argon2 hash: about {one_check:.3f} s)"
    _assert_bounded_hashing()
