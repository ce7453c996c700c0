"""``/auth``: register, login and refresh (the only ``/api/v1`` routes without a token), and logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from chatmq.core import ids
from chatmq.core.auth import hash_secret_async, live_account, new_family, verify_secret_async
from chatmq.core.errors import AuthError, ConflictError
from chatmq.core.ids import now_ms
from chatmq.services.api.deps import RATE_LIMITED, Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, unauthorized
from chatmq.services.api.models import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
)
from chatmq.services.api.ratelimit import client_address
from chatmq.services.store.base import User

router = APIRouter(prefix="/auth", tags=["auth"])

_LIMITED: dict[int | str, dict[str, str]] = {429: {"description": "Too many requests from this address (or "
                                                   "failed logins for this username); see Retry-After."}}

_BAD_CREDENTIALS = "invalid username or password"


def _tokens(ctx: Ctx, user: User, family: str | None = None) -> TokenResponse:
    pair = ctx.tokens.issue(user.user_id, admin=user.is_admin, version=user.token_version, family=family)
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in, user_id=pair.user_id)


@router.post("/register", status_code=201, response_model=RegisterResponse, dependencies=RATE_LIMITED,
             responses={409: {"description": "The username (or the phone number) is taken."}, **_LIMITED})
async def register(body: RegisterRequest, ctx: Ctx) -> RegisterResponse:
    """Create an account; the password is kept as an argon2 hash."""
    if await ctx.store.get_user_by_username(body.username) is not None:
        raise ApiError(409, "username is taken")
    if body.phone is not None and await ctx.store.user_ids_by_phones([body.phone]):
        raise ApiError(409, "another user has this phone number")
    password_hash = await hash_secret_async(body.password)
    try:
        user = await ctx.store.create_user(ids.user_id(), body.username, password_hash, body.display_name)
    except ConflictError:
        raise ApiError(409, "username is taken") from None
    if body.phone is not None:
        try:
            await ctx.store.set_phone(user.user_id, body.phone)
        except ConflictError:  # taken meanwhile: the account goes again, the answer says why
            await ctx.store.delete_user(user.user_id)
            raise ApiError(409, "another user has this phone number") from None
    return RegisterResponse(user_id=user.user_id, username=user.username)


@router.post("/login", response_model=TokenResponse, dependencies=RATE_LIMITED,
             responses={401: {"description": "Bad credentials or a disabled account."}, **_LIMITED})
async def login(body: LoginRequest, request: Request, ctx: Ctx) -> TokenResponse:
    """Trade a username and password for an access and a refresh token (the first of a new family)."""
    address = client_address(request)
    ctx.limiter.check_username(body.username, address)
    user = await ctx.store.get_user_by_username(body.username)
    ok = await verify_secret_async(user.password_hash if user else None, body.password)
    if user is None or not ok:
        ctx.limiter.login_failed(body.username, address)
        raise unauthorized(_BAD_CREDENTIALS)
    if user.disabled:
        raise unauthorized("account disabled")
    return _tokens(ctx, user)


@router.post("/refresh", response_model=TokenResponse, dependencies=RATE_LIMITED,
             responses={401: {"description": "Invalid, expired, spent or revoked refresh token, or the account is "
                                             "gone."}, **_LIMITED})
async def refresh(body: RefreshRequest, ctx: Ctx) -> TokenResponse:
    """Trade a valid refresh token for a new pair of tokens. The refresh token is spent: the answer
    carries the next one of its family. Presenting a spent refresh token again (a copy in someone
    else's hands) revokes the whole family: every refresh token descended from the same login is
    refused from then on (log in again). Only when an operator set ``refresh_reuse_grace`` (default 0)
    is it honoured again within that many seconds of its first use."""
    try:
        claims = ctx.tokens.verify_refresh(body.refresh_token)
        user = await live_account(ctx.store, claims)
    except AuthError as exc:
        raise unauthorized(str(exc)) from None
    family = claims.family or new_family()  # a token from before families: its own
    keep_until = now_ms() + ctx.tokens.refresh_ttl * 1000  # no token of the family lives longer
    grace_ms = int(ctx.tokens.reuse_grace * 1000)
    if not await ctx.store.spend_refresh_token(claims.token_id, family, user.user_id, keep_until, grace_ms):
        raise unauthorized("refresh token already used, or its login was revoked; log in again")
    return _tokens(ctx, user, family)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(user: CurrentUser, ctx: Ctx) -> Response:
    """Sign out everywhere: every access and refresh token of the caller issued until now stops
    working (REST, refresh, MQTT CONNECT) and the caller's live sessions close."""
    await ctx.revoke_tokens(user.user_id)
    return Response(status_code=204)
