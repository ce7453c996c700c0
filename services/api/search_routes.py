"""``/search``: full-text search over the texts of the caller's own conversations (``SearchStore``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query

from chatmq.services.api.conversations_routes import conversation_of
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError
from chatmq.services.api.models import EntityId, HistoryMessage, SearchResults

router = APIRouter(tags=["conversations"])

MAX_WORDS = 10
_WORD = re.compile(r"\w+")


@router.get("/search", response_model=SearchResults,
            responses={403: {"description": "`conversation` is a group the caller is not in."},
                       404: {"description": "`conversation` names no user or group."},
                       422: {"description": "`q` has no word (letters or digits), or more than 10."}})
async def search(
    user: CurrentUser,
    ctx: Ctx,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Words, all of which a message's text "
                                                                      "must hold (any case)")],
    conversation: Annotated[EntityId | None, Query(description="Only this conversation: a user id or a group "
                                                               "id, as in /conversations/{id}/messages")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchResults:
    """Messages of the caller's conversations (1:1, and the groups it is in now) whose ``body.text``
    holds every word of ``q``, newest first. Embedded: SQLite FTS5, whole words. Cluster: a MongoDB text
    index, whole words; on FerretDB, which has no text index, each word matches as a substring."""
    words = _WORD.findall(q)
    if not words or len(words) > MAX_WORDS:
        raise ApiError(422, f"q needs 1 to {MAX_WORDS} words (letters or digits)")
    key = None
    if conversation is not None:
        key, _ = await conversation_of(ctx, user.user_id, conversation)
    groups = [g.group_id for g in await ctx.store.groups_of(user.user_id)]
    found = await ctx.store.search_messages(user.user_id, groups, [w.lower() for w in words], key, limit)
    return SearchResults(messages=[HistoryMessage.of(m) for m in found])
