"""``/users/me/sessions``: the devices (MQTT client ids) the caller connects with, each getting its own
copy of what is pending (docs/contract.md, "Devices of a user"); signing one out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import not_found
from chatmq.services.api.models import UserSessionOut, UserSessionsOut

router = APIRouter(tags=["users"])

ClientId = Annotated[str, Path(max_length=128, description="The device's MQTT client id.")]


def _live(ctx: Ctx, user_id: str) -> set[str]:
    """The caller's client ids connected now (none known without session control)."""
    if ctx.control is None:
        return set()
    return {c.client_id for c in ctx.control.sessions() if c.kind == "user" and c.id == user_id}


@router.get("/users/me/sessions", response_model=UserSessionsOut)
async def my_sessions(user: CurrentUser, ctx: Ctx) -> UserSessionsOut:
    """The caller's devices: every MQTT client id it connected with and has not signed out, oldest first."""
    found = (await ctx.store.sessions_of([user.user_id])).get(user.user_id, [])
    live = _live(ctx, user.user_id)
    return UserSessionsOut(sessions=[UserSessionOut(client_id=s.client_id, first_seen=s.first_seen,
                                                    last_seen=s.last_seen, online=s.client_id in live)
                                     for s in found])


@router.delete("/users/me/sessions/{client_id}", status_code=204, response_class=Response,
               responses={404: {"description": "The caller has no such device."}})
async def sign_out(client_id: ClientId, user: CurrentUser, ctx: Ctx) -> Response:
    """Sign one of the caller's devices out: it is forgotten with what it still had pending (what every
    other device has had goes), and its live connection closes on whichever node it is. Connecting
    again with that client id makes it a new device (its tokens stay valid: revoke them to keep it out)."""
    if not await ctx.store.remove_session(user.user_id, client_id):
        raise not_found("no such session")
    if client_id in _live(ctx, user.user_id) and ctx.control is not None:
        await ctx.control.kick(client_id)
    return Response(status_code=204)

