"""``/auth``: register, login and refresh (the only ``/api/v1`` routes without a token), and logout."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response

from chatmq.core import ids
from chatmq.core.auth import hash_secret, live_account, verify_secret
from chatmq.core.errors import AuthError, ConflictError
from chatmq.services.api.deps import RATE_LIMITED, Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, unauthorized
from chatmq.services.api.models import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
)
from chatmq.services.store.base import User

router = APIRouter(prefix="/auth", tags=["auth"])

_LIMITED: dict[int | str, dict[str, str]] = {429: {"description": "Too many requests from this address (or "
                                                   "failed logins for this username); see Retry-After."}}

_BAD_CREDENTIALS = "invalid username or password"


def _tokens(ctx: Ctx, user: User) -> TokenResponse:
    pair = ctx.tokens.issue(user.user_id, admin=user.is_admin, version=user.token_version)
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in, user_id=pair.user_id)


@router.post("/register", status_code=201, response_model=RegisterResponse, dependencies=RATE_LIMITED,
             responses={409: {"description": "The username is taken."}, **_LIMITED})
async def register(body: RegisterRequest, ctx: Ctx) -> RegisterResponse:
    """Create an account; the password is kept as an argon2 hash."""
    if await ctx.store.get_user_by_username(body.username) is not None:
        raise ApiError(409, "username is taken")
    password_hash = await anyio.to_thread.run_sync(hash_secret, body.password)
    try:
        user = await ctx.store.create_user(ids.user_id(), body.username, password_hash, body.display_name)
    except ConflictError:
        raise ApiError(409, "username is taken") from None
    return RegisterResponse(user_id=user.user_id, username=user.username)


@router.post("/login", response_model=TokenResponse, dependencies=RATE_LIMITED,
             responses={401: {"description": "Bad credentials or a disabled account."}, **_LIMITED})
async def login(body: LoginRequest, ctx: Ctx) -> TokenResponse:
    """Trade a username and password for an access and a refresh token."""
    ctx.limiter.check_username(body.username)
    user = await ctx.store.get_user_by_username(body.username)
    ok = await anyio.to_thread.run_sync(verify_secret, user.password_hash if user else None, body.password)
    if user is None or not ok:
        ctx.limiter.login_failed(body.username)
        raise unauthorized(_BAD_CREDENTIALS)
    if user.disabled:
        raise unauthorized("account disabled")
    return _tokens(ctx, user)


@router.post("/refresh", response_model=TokenResponse, dependencies=RATE_LIMITED,
             responses={401: {"description": "Invalid, expired or revoked refresh token, or the account is gone."},
                        **_LIMITED})
async def refresh(body: RefreshRequest, ctx: Ctx) -> TokenResponse:
    """Trade a valid refresh token for a new pair of tokens."""
    try:
        claims = ctx.tokens.verify_refresh(body.refresh_token)
        user = await live_account(ctx.store, claims)
    except AuthError as exc:
        raise unauthorized(str(exc)) from None
    return _tokens(ctx, user)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(user: CurrentUser, ctx: Ctx) -> Response:
    """Sign out everywhere: every access and refresh token of the caller issued until now stops
    working (REST, refresh, MQTT CONNECT) and the caller's live sessions close."""
    await ctx.revoke_tokens(user.user_id)
    return Response(status_code=204)
