"""``/users/me`` and ``/push-tokens``: the caller's own profile data, and deleting the caller's account."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from chatmq.core.auth import verify_secret_async
from chatmq.core.errors import ConflictError, NotFoundError
from chatmq.services.api import group_changes as changes
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, forbidden, not_found
from chatmq.services.api.models import (
    AccountDeleteRequest,
    PublicUserOut,
    PushTokenOut,
    PushTokenRequest,
    UserOut,
    UserPatch,
)
from chatmq.services.api.ratelimit import client_address
from chatmq.services.store.base import User

router = APIRouter(tags=["users"])


@router.get("/users/me", response_model=UserOut)
async def me(user: CurrentUser, ctx: Ctx) -> UserOut:
    """The caller's profile."""
    return await _profile(user, ctx)


async def _profile(user: User, ctx: Ctx) -> UserOut:
    visibility = (await ctx.store.presence_states([user.user_id]))[user.user_id].visibility
    return UserOut.of(user, await ctx.store.phone_of(user.user_id), visibility)


@router.patch("/users/me", response_model=UserOut, responses={409: {"description": "Another user has this phone."}})
async def patch_me(body: UserPatch, user: CurrentUser, ctx: Ctx) -> UserOut:
    """Change the caller's profile: ``phone`` (E.164, the caller's verified number; null removes it),
    ``presence_visibility`` (``contacts``: its mutual contacts see its presence; ``nobody``: it shows as
    offline, never seen)."""
    if "phone" in body.model_fields_set:
        try:
            await ctx.store.set_phone(user.user_id, body.phone)
        except ConflictError:
            raise ApiError(409, "another user has this phone number") from None
    if body.presence_visibility is not None:
        before = (await ctx.store.presence_states([user.user_id]))[user.user_id].visibility
        await ctx.store.set_presence_visibility(user.user_id, body.presence_visibility)
        if before != body.presence_visibility and ctx.feed is not None:
            await ctx.feed.presence_visibility(user.user_id, body.presence_visibility)
    return await _profile(user, ctx)


@router.delete("/users/me", status_code=204, response_class=Response,
               responses={403: {"description": "The password does not match (or the account is disabled)."},
                          429: {"description": "Too many wrong passwords for this username; see Retry-After."}})
async def delete_me(body: AccountDeleteRequest, request: Request, user: CurrentUser, ctx: Ctx) -> Response:
    """Delete the caller's account, confirmed with its password: the caller leaves every group (the
    members get ``member_removed``; the last admin's place goes to another member as when leaving),
    then the account goes with its devices, push tokens and pending messages; every token of it stops
    working and its live sessions (and its devices') close. The username is free again. Messages it
    sent stay in the other side's history. Wrong passwords count as failed logins (429 when too many)."""
    address = client_address(request)
    ctx.limiter.check_username(user.username, address)
    if not await verify_secret_async(user.password_hash, body.password):
        ctx.limiter.login_failed(user.username, address)
        raise forbidden("the password does not match")
    for group in await ctx.store.groups_of(user.user_id):
        try:
            await changes.remove_member(ctx, group.group_id, user.user_id, user.user_id, tell_removed=False)
        except ApiError as exc:
            if exc.status != 404:  # 404: it left that group meanwhile
                raise
    try:
        await ctx.store.delete_user(user.user_id)
    except NotFoundError:
        raise not_found("the account is already deleted") from None
    await ctx.close_sessions(user.user_id)
    return Response(status_code=204)


@router.get("/users/{user_id}", response_model=PublicUserOut)
async def user_profile(user_id: str, user: CurrentUser, ctx: Ctx) -> PublicUserOut:
    """Another user's public profile (username and display name), so clients can show names."""
    found = await ctx.store.get_user(user_id)
    if found is None:
        raise not_found("no such user")
    return PublicUserOut(user_id=found.user_id, username=found.username, display_name=found.display_name)


@router.post("/push-tokens", status_code=201, response_model=PushTokenOut)
async def add_push_token(body: PushTokenRequest, user: CurrentUser, ctx: Ctx) -> PushTokenOut:
    """Register a push token of the caller's phone or browser (moving it from another user if needed)."""
    token = await ctx.store.add_push_token(user.user_id, body.platform, body.token)
    return PushTokenOut(platform=token.platform, token=token.token, created_at=token.created_at)


@router.delete("/push-tokens/{token:path}", status_code=204, response_class=Response,
               responses={404: {"description": "The caller has no such token."}})
async def remove_push_token(token: str, user: CurrentUser, ctx: Ctx) -> Response:
    """Remove one of the caller's push tokens."""
    if not await ctx.store.remove_push_token(user.user_id, token):
        raise not_found("no such push token")
    return Response(status_code=204)
