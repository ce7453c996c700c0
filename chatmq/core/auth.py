"""Passwords (argon2) and tokens (signed, expiring JWTs).

Access tokens carry ``sub`` (user id), ``typ="access"``, ``adm`` (admin flag) and
``exp``; refresh tokens carry ``typ="refresh"``, a random ``jti`` and ``fam``, the family: one
per login, kept by every refresh token rotated from it (``/auth/refresh`` spends a refresh
token and issues the next of its family; reusing a spent one revokes the family, see
``UserStore.spend_refresh_token``). Both carry ``ver``, the user's token version when they were
issued (absent: 0), and are HS256 signed with the configured key. ``verify_*`` raise
``AuthError`` on any problem.

Password and device-secret hashing (argon2, ~150 ms of CPU each) must never run on an event
loop: ``hash_secret_async`` and ``verify_secret_async`` run them in one small bounded thread
pool shared by the whole process (REST register, login and device creation; MQTT CONNECT), so a
burst of them queues there while the loop carries on (argon2-cffi releases the GIL).

Revocation is by version, not by time: ``Store.revoke_tokens`` raises the user's version, and
whoever verifies a token for a user they have loaded refuses it when its version is below the
user's (``TokenClaims.revoked_for``). So a token issued in the same second (or millisecond) as a
revocation is judged by which side of it it was issued on, never by its ``iat``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from chatmq.core.errors import AuthError

_hasher = PasswordHasher()
_ALGORITHM = "HS256"
_DUMMY_HASH = _hasher.hash("chatmq-timing-equaliser")

#: Threads of the pool that hashes and verifies secrets unless ``use_hash_workers`` says otherwise
#: (the ``auth_workers`` setting): a few, never more than the CPUs.
HASH_WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_workers = HASH_WORKERS
_pool_lock = threading.Lock()


def hash_secret(secret: str) -> str:
    """An argon2id hash of a password or device secret."""
    return _hasher.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """True when ``secret`` matches ``stored_hash``; spends the same time when there is no hash."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def use_hash_workers(workers: int) -> None:
    """Size the shared argon2 pool (``auth_workers``): a pool already made with another size is
    replaced (the checks under way in it finish)."""
    global _pool, _pool_workers
    if workers < 1:
        raise ValueError("workers must be at least 1")
    with _pool_lock:
        if workers == _pool_workers:
            return
        old, _pool, _pool_workers = _pool, None, workers
    if old is not None:
        old.shutdown(wait=False)


def hash_workers() -> int:
    """Threads of the shared argon2 pool."""
    return _pool_workers


def _hash_pool() -> ThreadPoolExecutor:
    """The process's one pool for argon2 work (``hash_workers()`` threads), made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_pool_workers, thread_name_prefix="chatmq-argon2")
        return _pool


async def hash_secret_async(secret: str) -> str:
    """``hash_secret`` in the shared argon2 pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_hash_pool(), hash_secret, secret)


async def verify_secret_async(stored_hash: str | None, secret: str) -> bool:
    """``verify_secret`` in the shared argon2 pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_hash_pool(), verify_secret, stored_hash, secret)


def new_family() -> str:
    """A new refresh token family id (one per login)."""
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What ``/auth/login`` and ``/auth/refresh`` return."""

    access_token: str
    refresh_token: str
    expires_in: int
    user_id: str


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified content of a token: whose, of which token version, and (access tokens) the
    admin flag and expiry."""

    user_id: str
    version: int = 0
    admin: bool = False
    expires_at: int = 0
    token_id: str = ""  # refresh tokens: ``jti``
    family: str = ""  # refresh tokens: ``fam`` (empty for those issued before families existed)

    def revoked_for(self, user_token_version: int) -> bool:
        """True when the user's tokens were revoked after this one was issued."""
        return self.version < user_token_version



class TokenService:
    """Issues and verifies tokens with one signing key."""

    def __init__(self, key: str, access_ttl: int, refresh_ttl: int, reuse_grace: float = 0.0) -> None:
        self._key = key
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        #: seconds after its first use during which a refresh token may be used again (by the same
        #: client: browser tabs racing, a lost answer) without revoking its family
        self.reuse_grace = reuse_grace

    def issue(self, user_id: str, admin: bool = False, version: int = 0, family: str | None = None) -> TokenPair:
        """A fresh access and refresh token for ``user_id``, of the user's token ``version``; the
        refresh token belongs to ``family`` (a login's), a new one when None (a login)."""
        now = int(time.time())
        access = jwt.encode(
            {"sub": user_id, "typ": "access", "adm": admin, "ver": version, "iat": now,
             "exp": now + self.access_ttl},
            self._key, algorithm=_ALGORITHM,
        )
        refresh = jwt.encode(
            {"sub": user_id, "typ": "refresh", "jti": secrets.token_hex(12), "fam": family or new_family(),
             "ver": version, "iat": now, "exp": now + self.refresh_ttl},
            self._key, algorithm=_ALGORITHM,
        )
        return TokenPair(access, refresh, self.access_ttl, user_id)

    def _decode(self, token: str, typ: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token, self._key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub", "typ"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid token") from exc
        if claims.get("typ") != typ or not isinstance(claims.get("sub"), str):
            raise AuthError(f"not an {typ} token")
        if not isinstance(claims.get("ver", 0), int):
            raise AuthError("invalid token")
        return claims

    def verify_access(self, token: str) -> TokenClaims:
        """The claims of a valid, unexpired access token; ``AuthError`` otherwise. Whether it is
        revoked is for the caller to check against the user (``TokenClaims.revoked_for``)."""
        claims = self._decode(token, "access")
        exp = claims["exp"]
        return TokenClaims(str(claims["sub"]), _int(claims.get("ver", 0)), bool(claims.get("adm", False)),
                           int(exp) if isinstance(exp, int) else 0)

    def verify_refresh(self, token: str) -> TokenClaims:
        """The claims (user id, version, expiry, token id and family) of a valid, unexpired refresh
        token; ``AuthError`` otherwise."""
        claims = self._decode(token, "refresh")
        jti, fam, exp = claims.get("jti"), claims.get("fam", ""), claims["exp"]
        if not isinstance(jti, str) or not jti or not isinstance(fam, str):
            raise AuthError("invalid token")
        return TokenClaims(str(claims["sub"]), _int(claims.get("ver", 0)), expires_at=_int(exp), token_id=jti,
                           family=fam)


class Account(Protocol):
    """What a token check needs of a user record (``chatmq.services.store.base.User``)."""

    @property
    def user_id(self) -> str: ...
    @property
    def disabled(self) -> bool: ...
    @property
    def token_version(self) -> int: ...


AccountT = TypeVar("AccountT", bound=Account, covariant=True)


class AccountLookup(Protocol[AccountT]):
    """Finds a user by id (any store)."""

    async def get_user(self, user_id: str) -> AccountT | None: ...


class AccountDisabledError(AuthError):
    """The token is good but its user is disabled (REST answers 403, not 401)."""


async def live_account(accounts: AccountLookup[AccountT], claims: TokenClaims) -> AccountT:
    """The one "token → live user" check, after a token's signature and expiry were verified: the
    user exists, the token is not revoked, the user is not disabled; ``AuthError`` saying which
    failed otherwise (``AccountDisabledError`` for a disabled user). Used by MQTT CONNECT, every
    REST request and ``/auth/refresh``."""
    user = await accounts.get_user(claims.user_id)
    if user is None:
        raise AuthError("unknown user")
    if claims.revoked_for(user.token_version):
        raise AuthError("token revoked")
    if user.disabled:
        raise AccountDisabledError("account disabled")
    return user


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
