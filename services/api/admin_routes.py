"""``/admin``: the operators' API (admin users only).

Sessions (list, kick), users (list, disable, enable, revoke tokens), groups (list, read, rename,
add and remove members, delete: the changes of ``group_changes``, announced to members as usual,
``by`` the operator) and statistics. Closing sessions goes through ``SessionControl``: in the
embedded server straight to its node, in a cluster over ``chat.control`` to every node.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from chatmq.core.errors import NotFoundError
from chatmq.services.api import group_changes as changes
from chatmq.services.api.control import SessionControl
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, forbidden, not_found
from chatmq.services.api.models import EntityId, GroupOut, GroupRenameRequest, MembersAddRequest
from chatmq.services.store.base import User

_Responses = dict[int | str, dict[str, Any]]
_NO_USER: _Responses = {404: {"description": "No such user."}}
_NO_GROUP: _Responses = {404: {"description": "No such group (or member)."}}
MAX_PAGE = 1000

router = APIRouter(prefix="/admin", tags=["admin"],
                   responses={403: {"description": "The caller is not an admin (or is disabled)."}})


async def admin_user(user: CurrentUser) -> User:
    """The caller, who must be an admin (403 otherwise)."""
    if not user.is_admin:
        raise forbidden("admin only")
    return user


Admin = Annotated[User, Depends(admin_user)]
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]


class SessionOut(BaseModel):
    """One live MQTT connection: whose (``kind`` user or device, ``id``), its MQTT client id, the
    node holding it, since when (ms since the epoch) and over what (``tcp`` or ``ws``)."""

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
    pending_messages: int = Field(description="Messages stored and not yet confirmed by a recipient "
                                  "(one per recipient).")
    messages_stored: int = Field(description="Messages in history (an estimate from collection metadata "
                                 "in cluster mode).")
    devices: int = Field(description="Registered devices that are not revoked.")
    user_connections: int
    device_connections: int
    connections_by_node: dict[str, int]
    connections_by_transport: dict[str, int] = Field(description="`tcp` and `ws` (MQTT over WebSocket).")


class AdminUserOut(BaseModel):
    """A user as operators see it."""

    user_id: str
    username: str
    display_name: str | None
    created_at: int
    disabled: bool
    admin: bool

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        return cls(user_id=user.user_id, username=user.username, display_name=user.display_name,
                   created_at=user.created_at, disabled=user.disabled, admin=user.is_admin)


class UsersPage(BaseModel):
    """Users by username; pass ``next_after`` as ``after`` for the next page (null: this is the last)."""

    users: list[AdminUserOut]
    next_after: str | None


class GroupsPage(BaseModel):
    """Groups by group id; pass ``next_after`` as ``after`` for the next page (null: this is the last)."""

    groups: list[GroupOut]
    next_after: str | None


def _control(ctx: Ctx) -> SessionControl:
    if ctx.control is None:
        raise ApiError(503, "session control is not available in this process")
    return ctx.control


# sessions ------------------------------------------------------------------------
@router.get("/sessions", response_model=list[SessionOut])
async def sessions(_: Admin, ctx: Ctx) -> list[SessionOut]:
    """Who is connected, on which node, since when, over TCP or WebSocket (oldest first)."""
    return [SessionOut(kind=c.kind, id=c.id, client_id=c.client_id, node=c.node, transport=c.transport,
                       since=c.since) for c in _control(ctx).sessions()]


@router.post("/sessions/{client_id}/kick", status_code=204, response_class=Response,
             responses={404: {"description": "No such session."}})
async def kick(client_id: str, _: Admin, ctx: Ctx) -> Response:
    """Close one connection (the client may connect again; disable the user to keep it out)."""
    if not await _control(ctx).kick(client_id):
        raise not_found("no such session")
    return Response(status_code=204)


# users ---------------------------------------------------------------------------
@router.get("/users", response_model=UsersPage)
async def users(
    _: Admin, ctx: Ctx,
    prefix: Annotated[str, Query(max_length=32, description="Only usernames starting with this.")] = "",
    after: Annotated[str | None, Query(max_length=32, description="`next_after` of the previous page.")] = None,
    limit: PageLimit = 100,
) -> UsersPage:
    """Users by username, with their ``disabled`` and ``admin`` flags: whom to disable, enable or revoke."""
    found = await ctx.store.list_users(prefix.lower(), after, limit)  # usernames are lower case
    return UsersPage(users=[AdminUserOut.of(u) for u in found],
                     next_after=found[-1].username if len(found) == limit else None)


async def _set_disabled(user_id: str, disabled: bool, ctx: Ctx) -> None:
    try:
        await ctx.store.set_user_flags(user_id, disabled=disabled)
    except NotFoundError:
        raise not_found("no such user") from None


@router.post("/users/{user_id}/disable", status_code=204, response_class=Response,
             responses={**_NO_USER, 409: {"description": "An admin cannot disable themselves."}})
async def disable(user_id: str, admin: Admin, ctx: Ctx) -> Response:
    """Disable a user: their live sessions (and their devices') close at once; logins, tokens, refreshes
    and connections are refused until they are enabled again."""
    if user_id == admin.user_id:
        raise ApiError(409, "an admin cannot disable themselves")
    await _set_disabled(user_id, True, ctx)
    await ctx.close_sessions(user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/enable", status_code=204, response_class=Response, responses=_NO_USER)
async def enable(user_id: str, _: Admin, ctx: Ctx) -> Response:
    """Enable a disabled user again (their old tokens work again unless revoked)."""
    await _set_disabled(user_id, False, ctx)
    return Response(status_code=204)


@router.post("/users/{user_id}/revoke-tokens", status_code=204, response_class=Response, responses=_NO_USER)
async def revoke_tokens(user_id: str, _: Admin, ctx: Ctx) -> Response:
    """Revoke every access and refresh token of the user issued until now (REST, refresh and MQTT
    CONNECT refuse them) and close the user's live sessions. The user may log in again."""
    try:
        await ctx.revoke_tokens(user_id)
    except NotFoundError:
        raise not_found("no such user") from None
    return Response(status_code=204)


# groups --------------------------------------------------------------------------
@router.get("/groups", response_model=GroupsPage)
async def groups(
    _: Admin, ctx: Ctx,
    after: Annotated[str | None, Query(max_length=64, description="`next_after` of the previous page.")] = None,
    limit: PageLimit = 100,
) -> GroupsPage:
    """Every group, by group id, with its members."""
    found = await ctx.store.list_groups(after, limit)
    return GroupsPage(groups=[GroupOut.of(g) for g in found],
                      next_after=found[-1].group_id if len(found) == limit else None)


@router.get("/groups/{group_id}", response_model=GroupOut, responses=_NO_GROUP)
async def group(group_id: str, _: Admin, ctx: Ctx) -> GroupOut:
    """One group, whoever its members are."""
    return GroupOut.of(await changes.load(ctx, group_id))


@router.patch("/groups/{group_id}", response_model=GroupOut, responses=_NO_GROUP)
async def rename_group(group_id: str, body: GroupRenameRequest, admin: Admin, ctx: Ctx) -> GroupOut:
    """Rename a group; members get ``group_renamed`` (``by`` the operator)."""
    return GroupOut.of(await changes.rename(ctx, group_id, body.name, admin.user_id))


@router.post("/groups/{group_id}/members", response_model=GroupOut,
             responses={**_NO_GROUP, 422: {"description": "Unknown user ids, or an invalid body."}})
async def add_members(group_id: str, body: MembersAddRequest, admin: Admin, ctx: Ctx) -> GroupOut:
    """Add members; members get ``member_added``."""
    return GroupOut.of(await changes.add_members(ctx, group_id, body.members, admin.user_id))


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204, response_class=Response,
               responses=_NO_GROUP)
async def remove_member(group_id: str, user_id: EntityId, admin: Admin, ctx: Ctx) -> Response:
    """Remove a member (the last admin's place goes to the longest-standing member; the last
    member's removal deletes the group); they and the members get ``member_removed``."""
    await changes.remove_member(ctx, group_id, user_id, admin.user_id)
    return Response(status_code=204)


@router.delete("/groups/{group_id}", status_code=204, response_class=Response, responses=_NO_GROUP)
async def delete_group(group_id: str, admin: Admin, ctx: Ctx) -> Response:
    """Delete a group; its members get ``group_deleted``. History stays; new messages to it are
    refused (``unknown_recipient``)."""
    await changes.delete(ctx, group_id, admin.user_id)
    return Response(status_code=204)


# statistics ----------------------------------------------------------------------
@router.get("/stats", response_model=StatsOut)
async def stats(_: Admin, ctx: Ctx) -> StatsOut:
    """Registered users and devices, messages stored and pending, live connections by node and by
    transport, users online. Counts, each one query (no scan of messages in cluster mode)."""
    control = ctx.control
    live = control.sessions() if control else []
    return StatsOut(
        users=await ctx.store.count_users(),
        connections=len(live),
        online_users=await control.online_users() if control else 0,
        pending_messages=await ctx.store.count_pending(),
        messages_stored=await ctx.store.count_messages(),
        devices=await ctx.store.count_devices(),
        user_connections=sum(c.kind == "user" for c in live),
        device_connections=sum(c.kind == "device" for c in live),
        connections_by_node=dict(Counter(c.node for c in live)),
        connections_by_transport=dict(Counter(c.transport for c in live)),
    )
