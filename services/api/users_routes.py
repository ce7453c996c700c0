"""``/users/me``, ``/contacts/sync`` and ``/push-tokens``: the caller's own profile data."""

from __future__ import annotations

from fastapi import APIRouter, Response

from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import not_found
from chatmq.services.api.models import (
    ContactsSyncRequest,
    ContactsSyncResponse,
    PublicUserOut,
    PushTokenOut,
    PushTokenRequest,
    UserOut,
)

router = APIRouter(tags=["users"])


@router.get("/users/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    """The caller's profile."""
    return UserOut.of(user)


@router.get("/users/{user_id}", response_model=PublicUserOut)
async def user_profile(user_id: str, user: CurrentUser, ctx: Ctx) -> PublicUserOut:
    """Another user's public profile (username and display name), so clients can show names."""
    found = await ctx.store.get_user(user_id)
    if found is None:
        raise not_found("no such user")
    return PublicUserOut(user_id=found.user_id, username=found.username, display_name=found.display_name)


@router.post("/contacts/sync", response_model=ContactsSyncResponse)
async def contacts_sync(body: ContactsSyncRequest, user: CurrentUser, ctx: Ctx) -> ContactsSyncResponse:
    """Which of ``usernames`` (at most 1000) are registered, with their user ids."""
    wanted = list(dict.fromkeys(body.usernames))
    found = await ctx.store.user_ids_by_usernames(wanted) if wanted else {}
    return ContactsSyncResponse(registered=found)


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
