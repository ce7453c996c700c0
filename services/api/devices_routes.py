"""``/devices``: IoT devices owned by the caller, with their MQTT credentials."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Response

from chatmq.core import ids
from chatmq.core.auth import hash_secret_async
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import not_found
from chatmq.services.api.models import DeviceCreated, DeviceCreateRequest, DeviceOut

router = APIRouter(prefix="/devices", tags=["devices"])


@router.post("", status_code=201, response_model=DeviceCreated)
async def create_device(body: DeviceCreateRequest, user: CurrentUser, ctx: Ctx) -> DeviceCreated:
    """Register a device; its secret is returned once and kept only as an argon2 hash."""
    secret = secrets.token_urlsafe(24)
    secret_hash = await hash_secret_async(secret)
    device = await ctx.store.create_device(ids.device_id(), user.user_id, body.name, secret_hash)
    return DeviceCreated(device_id=device.device_id, secret=secret, name=device.name,
                         created_at=device.created_at)


@router.get("", response_model=list[DeviceOut])
async def list_devices(user: CurrentUser, ctx: Ctx) -> list[DeviceOut]:
    """The caller's live (not revoked) devices, oldest first."""
    return [DeviceOut.of(d) for d in await ctx.store.list_devices(user.user_id)]


@router.delete("/{device_id}", status_code=204, response_class=Response,
               responses={404: {"description": "No such live device of the caller."}})
async def revoke_device(device_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    """Revoke a device: its credentials stop working and its live sessions close at once, on every
    node, so nothing it publishes is taken any more."""
    if not await ctx.store.revoke_device(user.user_id, device_id):
        raise not_found("no such device")
    await ctx.close_sessions(device_id)
    return Response(status_code=204)
