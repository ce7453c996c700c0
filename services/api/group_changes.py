"""Group changes, committed then announced: shared by the members' routes (``/groups``, after
their permission checks) and the operators' routes (``/admin/groups``, admins of the service).

Each function commits the change in the store, then sends the members the ``event`` envelope
that reports it (``by`` is who made it), and raises ``ApiError`` 404 for an unknown group or
member and 422 (``unknown-users``) for unregistered user ids.
"""

from __future__ import annotations

from chatmq.core.envelopes import event_envelope
from chatmq.core.errors import NotFoundError
from chatmq.services.api.deps import ApiContext
from chatmq.services.api.errors import ApiError, not_found
from chatmq.services.store.base import Group


async def check_users_exist(ctx: ApiContext, user_ids: list[str]) -> None:
    """422 (``unknown-users``, listing them) unless every one of ``user_ids`` is registered."""
    existing = await ctx.store.existing_user_ids(user_ids) if user_ids else set()
    unknown = [u for u in user_ids if u not in existing]
    if unknown:
        raise ApiError(422, f"unknown user ids: {', '.join(unknown)}", kind="unknown-users", unknown_user_ids=unknown)


async def load(ctx: ApiContext, group_id: str) -> Group:
    """The group; 404 when there is none (or it was deleted meanwhile)."""
    group = await ctx.store.get_group(group_id)
    if group is None:
        raise not_found("no such group")
    return group


async def rename(ctx: ApiContext, group_id: str, name: str, by: str) -> Group:
    """Rename; members get ``group_renamed``."""
    try:
        group = await ctx.store.rename_group(group_id, name)
    except NotFoundError:
        raise not_found("no such group") from None
    await ctx.notify(group.member_ids(), event_envelope("group_renamed", group_id=group_id, name=group.name, by=by))
    return group


async def add_members(ctx: ApiContext, group_id: str, members: list[str], by: str) -> Group:
    """Add registered users as plain members (those already in stay as they are); members,
    the new ones included, get ``member_added`` when anyone was added."""
    wanted = list(dict.fromkeys(members))
    await check_users_exist(ctx, wanted)
    try:
        added = await ctx.store.add_members(group_id, wanted)
    except NotFoundError:
        raise not_found("no such group") from None
    group = await load(ctx, group_id)
    if added:
        await ctx.notify(group.member_ids(), event_envelope("member_added", group_id=group_id, members=added, by=by))
    return group


async def remove_member(ctx: ApiContext, group_id: str, user_id: str, by: str, *, tell_removed: bool = True) -> None:
    """Remove ``user_id``; the remaining members and (unless ``tell_removed`` is False: an account
    being deleted) the removed user get ``member_removed`` (with ``new_admin`` when the last admin
    left and another member was promoted)."""
    try:
        new_admin = await ctx.store.remove_member(group_id, user_id)
    except NotFoundError:
        raise not_found("no such member in this group") from None
    remaining = await ctx.store.get_group(group_id)  # None once the group is empty (deleted)
    recipients = [*(remaining.member_ids() if remaining else []), *([user_id] if tell_removed else [])]
    fields: dict[str, str] = {"group_id": group_id, "user_id": user_id, "by": by}
    if new_admin is not None:
        fields["new_admin"] = new_admin
    await ctx.notify(recipients, event_envelope("member_removed", **fields))


async def delete(ctx: ApiContext, group_id: str, by: str) -> Group:
    """Delete the group; its former members get ``group_deleted``. Its history and the members'
    undelivered messages stay; messages sent to it afterwards are refused as ``unknown_recipient``."""
    try:
        group = await ctx.store.delete_group(group_id)
    except NotFoundError:
        raise not_found("no such group") from None
    await ctx.notify(group.member_ids(), event_envelope("group_deleted", group_id=group_id, by=by))
    return group
