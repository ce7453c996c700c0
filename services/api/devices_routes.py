"""``/devices``: IoT devices owned by the caller, with their MQTT credentials, status and shadow."""

from __future__ import annotations

import secrets
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Response

from chatmq.core import ids
from chatmq.core.auth import hash_secret
from chatmq.services.api.deps import ApiContext, Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, not_found
from chatmq.services.api.models import (
    DeviceCreated,
    DeviceCreateRequest,
    DeviceDetail,
    DeviceOut,
    ShadowOut,
    ShadowPatch,
)
from chatmq.services.store.base import Device, ShadowLimitError, User

router = APIRouter(prefix="/devices", tags=["devices"])


@router.post("", status_code=201, response_model=DeviceCreated)
async def create_device(body: DeviceCreateRequest, user: CurrentUser, ctx: Ctx) -> DeviceCreated:
    """Register a device; its secret is returned once and kept only as an argon2 hash."""
    secret = secrets.token_urlsafe(24)
    secret_hash = await anyio.to_thread.run_sync(hash_secret, secret)
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
    """Revoke a device: its credentials stop working."""
    if not await ctx.store.revoke_device(user.user_id, device_id):
        raise not_found("no such device")
    return Response(status_code=204)


_NO_DEVICE: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such live device of the caller (or, for an admin, at all)."}}


async def owned_device(device_id: str, user: User, ctx: ApiContext) -> Device:
    """The live device ``device_id`` if the caller owns it or is an admin; 404 otherwise."""
    device = await ctx.store.get_device(device_id)
    if device is None or device.revoked or (device.owner_id != user.user_id and not user.is_admin):
        raise not_found("no such device")
    return device


@router.get("/{device_id}", response_model=DeviceDetail, responses=_NO_DEVICE)
async def get_device(device_id: str, user: CurrentUser, ctx: Ctx) -> DeviceDetail:
    """A device with its status: ``online`` while it reads its inbox, when it connected, when it was
    last seen and why it went away."""
    device = await owned_device(device_id, user, ctx)
    return DeviceDetail.of(device, await ctx.store.get_device_status(device_id))


@router.get("/{device_id}/shadow", response_model=ShadowOut, responses=_NO_DEVICE)
async def get_shadow(device_id: str, user: CurrentUser, ctx: Ctx) -> ShadowOut:
    """The device's shadow (version 0, empty, before anything was written)."""
    await owned_device(device_id, user, ctx)
    return ShadowOut.of(await ctx.store.get_shadow(device_id))


@router.patch("/{device_id}/shadow", response_model=ShadowOut,
              responses={**_NO_DEVICE, 409: {"description": "``version`` is not the shadow's current version."},
                         413: {"description": "The desired state would exceed 8 KiB of JSON."},
                         422: {"description": "Invalid body, or objects nested deeper than 6 levels."}})
async def patch_shadow(device_id: str, body: ShadowPatch, user: CurrentUser, ctx: Ctx) -> ShadowOut:
    """Merge ``desired`` into the desired state (``null`` deletes a key); an online device gets the new
    delta in its inbox, an offline one when it next connects."""
    await owned_device(device_id, user, ctx)
    try:
        shadow = await ctx.store.change_shadow(device_id, desired=body.desired, version=body.version)
    except ShadowLimitError as exc:
        if exc.kind == "too_large":
            raise ApiError(413, str(exc), kind="shadow-too-large") from exc
        raise ApiError(422, str(exc), kind="shadow-too-deep") from exc
    if ctx.devices is not None:
        await ctx.devices.shadow_changed(device_id)
    return ShadowOut.of(shadow)
