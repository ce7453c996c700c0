"""``/conversations/{user_id|group_id}/messages``: a conversation's history, newest first."""

from typing import Annotated

from fastapi import APIRouter, Query

from chatmq.core.envelopes import ID_PATTERN
from chatmq.core.ids import conversation_key
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import forbidden, not_found
from chatmq.services.api.models import HistoryMessage, HistoryPage

DEFAULT_LIMIT = 50


def conversations_router(max_page: int) -> APIRouter:
    """The history route, with ``limit`` bounded by ``max_page``."""
    router = APIRouter(prefix="/conversations", tags=["conversations"])
    default_limit = min(DEFAULT_LIMIT, max_page)

    @router.get(
        "/{peer}/messages", response_model=HistoryPage,
        responses={403: {"description": "Not a member of the group."},
                   404: {"description": "No such user or group."}},
    )
    async def history(
        peer: str,
        user: CurrentUser,
        ctx: Ctx,
        before: Annotated[str | None, Query(pattern=ID_PATTERN, description="A server message id")] = None,
        limit: Annotated[int, Query(ge=1, le=max_page)] = default_limit,
    ) -> HistoryPage:
        """Messages with ``peer`` (a user id) or in ``peer`` (a group id, starting with ``g``).

        Newest first, older than ``before`` when given; ``next_before`` is the id to pass
        as ``before`` for the next page, or null when this page is the last. Each message carries
        ``edited_at``, ``deleted`` and ``reactions``; those the caller deleted for itself are left out.
        """
        if peer.startswith("g"):
            group = await ctx.store.get_group(peer)
            if group is None:
                raise not_found("no such group")
            if not group.is_member(user.user_id):
                raise forbidden("not a member of this group")
            conversation = conversation_key(user.user_id, group=peer)
        else:
            if peer != user.user_id and not await ctx.store.existing_user_ids([peer]):
                raise not_found("no such user")
            conversation = conversation_key(user.user_id, peer)
        rows = await ctx.store.history(conversation, before, limit, viewer=user.user_id)
        messages = [HistoryMessage.of(m) for m in rows]
        next_before = messages[-1].id if len(messages) == limit else None
        return HistoryPage(messages=messages, next_before=next_before)

    return router
