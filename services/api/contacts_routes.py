"""``/contacts``: the caller's server-side contact list, and matching an address book's usernames and phone
numbers against the users (numbers that are no user's are kept only as keyed hashes, ``phones``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, not_found
from chatmq.services.api.models import (
    MAX_CONTACTS,
    ContactList,
    ContactOut,
    ContactsSyncRequest,
    ContactsSyncResponse,
    EntityId,
)
from chatmq.services.api.phones import phone_hash

router = APIRouter(prefix="/contacts", tags=["contacts"])


@router.get("", response_model=ContactList)
async def list_contacts(user: CurrentUser, ctx: Ctx) -> ContactList:
    """The caller's contact list, oldest first."""
    return ContactList(contacts=[ContactOut(user_id=c.user_id, added_at=c.added_at)
                                 for c in await ctx.store.contacts_of(user.user_id)])


@router.put("/{user_id}", status_code=204, response_class=Response,
            responses={404: {"description": "No such user."},
                       409: {"description": f"The list already holds {MAX_CONTACTS} contacts."},
                       422: {"description": "The caller's own id."}})
async def add_contact(user_id: EntityId, user: CurrentUser, ctx: Ctx) -> Response:
    """Put a user on the caller's list (again: no change)."""
    await ctx.check_other_user(user.user_id, user_id, "you cannot be your own contact")
    if len(await ctx.store.contacts_of(user.user_id)) >= MAX_CONTACTS:
        raise ApiError(409, f"a contact list holds at most {MAX_CONTACTS} users")
    await ctx.store.add_contact(user.user_id, user_id)
    return Response(status_code=204)


@router.delete("/{user_id}", status_code=204, response_class=Response,
               responses={404: {"description": "Not on the caller's list."}})
async def remove_contact(user_id: EntityId, user: CurrentUser, ctx: Ctx) -> Response:
    """Take a user off the caller's list."""
    if not await ctx.store.remove_contact(user.user_id, user_id):
        raise not_found("not on your contact list")
    return Response(status_code=204)


@router.post("/sync", response_model=ContactsSyncResponse)
async def contacts_sync(body: ContactsSyncRequest, user: CurrentUser, ctx: Ctx) -> ContactsSyncResponse:
    """Which of ``usernames`` and ``phones`` (at most 1000 each; phones in E.164) are users, with their
    user ids (a phone matches a user's verified number). The numbers that are no user's are kept only as
    keyed hashes (HMAC-SHA256 with the server's secret), never as numbers. Nothing is added to the list."""
    usernames = list(dict.fromkeys(body.usernames))
    phones = list(dict.fromkeys(body.phones))
    found = await ctx.store.user_ids_by_usernames(usernames) if usernames else {}
    by_phone = await ctx.store.user_ids_by_phones(phones) if phones else {}
    others = [p for p in phones if p not in by_phone]
    if others:
        await ctx.store.add_phone_hashes(user.user_id, [phone_hash(ctx.phone_key, p) for p in others])
    return ContactsSyncResponse(registered=found, phones=by_phone)
