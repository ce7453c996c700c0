"""``/blocks``: the users the caller blocks. A blocked user's 1:1 messages to the caller are refused
with ``error`` code ``blocked`` (nothing stored, delivered or pushed); in groups the caller simply does
not get them (``chatmq.services.chat.blocks``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import not_found
from chatmq.services.api.models import BlockList, EntityId

router = APIRouter(prefix="/blocks", tags=["contacts"])


@router.get("", response_model=BlockList)
async def list_blocks(user: CurrentUser, ctx: Ctx) -> BlockList:
    """Whom the caller blocks, oldest block first."""
    return BlockList(blocked=await ctx.store.blocked_by(user.user_id))


@router.put("/{user_id}", status_code=204, response_class=Response,
            responses={404: {"description": "No such user."}, 422: {"description": "The caller's own id."}})
async def block(user_id: EntityId, user: CurrentUser, ctx: Ctx) -> Response:
    """Block a user (again: no change). Takes effect for every message the user sends after this answer."""
    await ctx.check_other_user(user.user_id, user_id, "you cannot block yourself")
    await ctx.store.block(user.user_id, user_id)
    await ctx.blocks_changed(user.user_id, user_id)
    return Response(status_code=204)


@router.delete("/{user_id}", status_code=204, response_class=Response,
               responses={404: {"description": "The caller does not block this user."}})
async def unblock(user_id: EntityId, user: CurrentUser, ctx: Ctx) -> Response:
    """Stop blocking a user."""
    if not await ctx.store.unblock(user.user_id, user_id):
        raise not_found("you do not block this user")
    await ctx.blocks_changed(user.user_id, user_id)
    return Response(status_code=204)
