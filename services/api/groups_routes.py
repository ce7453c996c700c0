"""``/groups``: create, list, read, rename, add and remove members; members hear of each change.

Rules: the creator is admin; only admins rename or add; anyone may leave; only an admin
removes someone else; when the last admin leaves, the store promotes another member.
Every change is committed first, then announced with an ``event`` envelope through the
``Notifier`` (``group_changes``, shared with the operators' routes).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from chatmq.core import ids
from chatmq.core.envelopes import event_envelope
from chatmq.services.api import group_changes as changes
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import forbidden, not_found
from chatmq.services.api.models import GroupCreateRequest, GroupOut, GroupRenameRequest, MembersAddRequest
from chatmq.services.store.base import Group

router = APIRouter(prefix="/groups", tags=["groups"])

_Responses = dict[int | str, dict[str, Any]]

_NOT_FOUND: _Responses = {404: {"description": "No such group."}}
_FORBIDDEN: _Responses = {403: {"description": "The caller may not do this (not a member, or not an admin)."}}
_UNKNOWN: _Responses = {422: {"description": "Unknown user ids, or an invalid body."}}


async def _group_for(ctx: Ctx, group_id: str, user_id: str, *, admin: bool = False) -> Group:
    """The group, when ``user_id`` is a member (an admin when ``admin``); 404 / 403 otherwise."""
    group = await changes.load(ctx, group_id)
    if not group.is_member(user_id):
        raise forbidden("not a member of this group")
    if admin and not group.is_admin(user_id):
        raise forbidden("only a group admin may do this")
    return group


@router.post("", status_code=201, response_model=GroupOut, responses=_UNKNOWN)
async def create_group(body: GroupCreateRequest, user: CurrentUser, ctx: Ctx) -> GroupOut:
    """Create a group with the caller as admin and ``members`` as members (all must be registered)."""
    members = [m for m in dict.fromkeys(body.members) if m != user.user_id]
    await changes.check_users_exist(ctx, members)
    group = await ctx.store.create_group(ids.group_id(), body.name, user.user_id, members)
    out = GroupOut.of(group)
    event = event_envelope("group_created", group=out.model_dump(), by=user.user_id)
    await ctx.notify(group.member_ids(), event)
    return out


@router.get("", response_model=list[GroupOut])
async def my_groups(user: CurrentUser, ctx: Ctx) -> list[GroupOut]:
    """The groups the caller is a member of, oldest first."""
    return [GroupOut.of(g) for g in await ctx.store.groups_of(user.user_id)]


@router.get("/{group_id}", response_model=GroupOut, responses={**_NOT_FOUND, **_FORBIDDEN})
async def get_group(group_id: str, user: CurrentUser, ctx: Ctx) -> GroupOut:
    """One group the caller is a member of."""
    return GroupOut.of(await _group_for(ctx, group_id, user.user_id))


@router.patch("/{group_id}", response_model=GroupOut, responses={**_NOT_FOUND, **_FORBIDDEN})
async def rename_group(group_id: str, body: GroupRenameRequest, user: CurrentUser, ctx: Ctx) -> GroupOut:
    """Rename a group (admins only)."""
    await _group_for(ctx, group_id, user.user_id, admin=True)
    return GroupOut.of(await changes.rename(ctx, group_id, body.name, user.user_id))


@router.post("/{group_id}/members", response_model=GroupOut,
             responses={**_NOT_FOUND, **_FORBIDDEN, **_UNKNOWN})
async def add_members(group_id: str, body: MembersAddRequest, user: CurrentUser, ctx: Ctx) -> GroupOut:
    """Add members (admins only); those already in the group are left as they are."""
    await _group_for(ctx, group_id, user.user_id, admin=True)
    return GroupOut.of(await changes.add_members(ctx, group_id, body.members, user.user_id))


@router.delete("/{group_id}/members/{user_id}", status_code=204, response_class=Response,
               responses={**_NOT_FOUND, **_FORBIDDEN})
async def remove_member(group_id: str, user_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    """Leave (``user_id`` is the caller) or remove a member (admins only).

    When the last admin leaves, the longest-standing member becomes admin; the
    ``member_removed`` event then carries ``new_admin``.
    """
    group = await _group_for(ctx, group_id, user.user_id, admin=user_id != user.user_id)
    if not group.is_member(user_id):
        raise not_found("no such member in this group")
    await changes.remove_member(ctx, group_id, user_id, user.user_id)
    return Response(status_code=204)
