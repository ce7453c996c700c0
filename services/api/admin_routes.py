"""``/admin``: the operators' API (admin users only): sessions, kick, disable/enable a user, stats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from chatmq.errors import NotFoundError
from chatmq.services.api.control import SessionControl
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, forbidden, not_found
from chatmq.services.store.base import User

router = APIRouter(prefix="/admin", tags=["admin"])


async def admin_user(user: CurrentUser) -> User:
    """The caller, who must be an admin (403 otherwise)."""
    if not user.is_admin:
        raise forbidden("admin only")
    return user


Admin = Annotated[User, Depends(admin_user)]


class SessionOut(BaseModel):
    """One live MQTT connection."""

    kind: str
    id: str
    client_id: str
    node: str
    transport: str
    since: int


class StatsOut(BaseModel):
    """Counts at the time of the request."""

    users: int
    connections: int
    online_users: int
    pending_messages: int


def _control(ctx: Ctx) -> SessionControl:
    if ctx.control is None:
        raise ApiError(503, "session control is not available in this process")
    return ctx.control


@router.get("/sessions", response_model=list[SessionOut])
async def sessions(_: Admin, ctx: Ctx) -> list[SessionOut]:
    """Who is connected, on which node, since when, over TCP or WebSocket."""
    return [SessionOut(kind=c.kind, id=c.id, client_id=c.client_id, node=c.node, transport=c.transport,
                       since=c.since) for c in _control(ctx).sessions()]


@router.post("/sessions/{client_id}/kick", status_code=204)
async def kick(client_id: str, _: Admin, ctx: Ctx) -> Response:
    """Close one connection (the client may connect again; disable the user to keep it out)."""
    if not await _control(ctx).kick(client_id):
        raise not_found("no such session")
    return Response(status_code=204)


async def _set_disabled(user_id: str, disabled: bool, ctx: Ctx) -> None:
    try:
        await ctx.store.set_user_flags(user_id, disabled=disabled)
    except NotFoundError:
        raise not_found("no such user") from None


@router.post("/users/{user_id}/disable", status_code=204)
async def disable(user_id: str, admin: Admin, ctx: Ctx) -> Response:
    """Disable a user: their live sessions (and their devices') close at once, new ones are refused."""
    if user_id == admin.user_id:
        raise ApiError(409, "an admin cannot disable themselves")
    await _set_disabled(user_id, True, ctx)
    if ctx.control is not None:
        await ctx.control.kick_principal(user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/enable", status_code=204)
async def enable(user_id: str, _: Admin, ctx: Ctx) -> Response:
    """Enable a disabled user again."""
    await _set_disabled(user_id, False, ctx)
    return Response(status_code=204)


@router.get("/stats", response_model=StatsOut)
async def stats(_: Admin, ctx: Ctx) -> StatsOut:
    """Registered users, live connections, users online, messages waiting for delivery."""
    control = ctx.control
    return StatsOut(
        users=await ctx.store.count_users(),
        connections=len(control.sessions()) if control else 0,
        online_users=await control.online_users() if control else 0,
        pending_messages=await ctx.store.count_pending(),
    )
