"""``/presence``: the online state and last seen of users, as the caller may see them
(``chatmq.services.chat.presence.view``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError
from chatmq.services.api.models import PresenceItem, PresenceOut
from chatmq.services.chat.presence import view

router = APIRouter(tags=["users"])

#: The most user ids one request asks for.
MAX_USERS = 100


@router.get("/presence", response_model=PresenceOut,
            responses={422: {"description": "`users` names no id, or more than 100."}})
async def presence(
    user: CurrentUser,
    ctx: Ctx,
    users: Annotated[str, Query(max_length=MAX_USERS * 64, description="Comma-separated user ids (at most 100)")],
) -> PresenceOut:
    """Each asked user's ``state`` (``online``, ``offline`` or ``away``) and ``last_seen`` (ms: since when
    it is in that state; null: never seen), in the order asked. Shown for the caller itself and its mutual
    contacts (each has the other on its contact list); one with ``presence_visibility: nobody`` shows as
    ``offline`` with ``last_seen`` null; anyone else (and an unknown id) comes back with both null."""
    ids = list(dict.fromkeys(u.strip() for u in users.split(",") if u.strip()))
    if not ids or len(ids) > MAX_USERS:
        raise ApiError(422, f"users needs 1 to {MAX_USERS} comma-separated user ids")
    mutual = await ctx.store.mutual_contacts(user.user_id)
    shown_ids = [u for u in ids if u == user.user_id or u in mutual]
    stored = await ctx.store.presence_states(shown_ids) if shown_ids else {}
    shown = [view(user.user_id, u, u in mutual, stored[u]) if u in stored else None for u in ids]
    return PresenceOut(presence=[PresenceItem.model_validate({"user": u, "state": s.state if s else None,
                                                              "last_seen": s.last_seen if s else None})
                                 for u, s in zip(ids, shown, strict=True)])
