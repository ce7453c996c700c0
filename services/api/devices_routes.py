"""``/devices``: IoT devices owned by the caller, with their MQTT credentials, status and shadow."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from chatmq.core import ids
from chatmq.core.auth import hash_secret_async
from chatmq.core.ids import now_ms
from chatmq.services.api.deps import ApiContext, Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, not_found
from chatmq.services.api.models import (
    CommandAnswer,
    CommandOut,
    CommandRequestBody,
    DeviceCreated,
    DeviceCreateRequest,
    DeviceDetail,
    DeviceOut,
    ShadowOut,
    ShadowPatch,
)
from chatmq.services.api.notifier import DeviceLink
from chatmq.services.store.base import (
    CommandStatus,
    Device,
    DeviceCommand,
    DocumentLimitError,
    User,
    check_document,
)

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
    except DocumentLimitError as exc:
        raise too_big(exc) from exc
    if ctx.devices is not None:
        await ctx.devices.shadow_changed(device_id)
    return ShadowOut.of(shadow)


def too_big(exc: DocumentLimitError) -> ApiError:
    """The problem for a document over its bounds: 413 too large, 422 too deep."""
    if exc.kind == "too_large":
        return ApiError(413, str(exc), kind="shadow-too-large")
    return ApiError(422, str(exc), kind="shadow-too-deep")


def device_link(ctx: ApiContext, what: str, name: str, document: dict[str, Any]) -> DeviceLink:
    """The way to the devices for a request sending ``document`` (its field ``name``) to them: 503 when this
    API has none, 413/422 when the document breaks the bounds."""
    if ctx.devices is None:
        raise ApiError(503, f"{what} are not available on this server")
    try:
        check_document(name, document)
    except DocumentLimitError as exc:
        raise too_big(exc) from exc
    return ctx.devices


CommandStatusName = Literal["queued", "sent", "succeeded", "failed", "expired"]


@router.post("/{device_id}/commands", response_model=CommandAnswer,
             responses={**_NO_DEVICE, 202: {"description": "A persistent command, queued.",
                                             "model": CommandAnswer},
                        409: {"description": "``device_offline``: the device is not connected."},
                        413: {"description": "``params`` exceed 8 KiB of JSON."},
                        503: {"description": "No device worker is reachable from this API."},
                        504: {"description": "``command_timeout``: no answer within ``timeout_s``."}})
async def send_command(device_id: str, body: CommandRequestBody, user: CurrentUser, ctx: Ctx,
                       response: Response) -> CommandAnswer:
    """Send a command. Plain: wait for the device's ``command_result`` (200 with ``succeeded`` or
    ``failed``), 409 ``device_offline`` when it is not connected, 504 ``command_timeout`` when it does not
    answer in ``timeout_s``. ``persistent``: 202 ``queued``, delivered when the device is (next) connected,
    until ``expires_in_s`` have passed."""
    await owned_device(device_id, user, ctx)
    link = device_link(ctx, "commands", "params", body.params)
    now = now_ms()
    if not body.persistent and not (await ctx.store.get_device_status(device_id)).online:
        raise _offline(device_id)
    lifetime = body.expires_in_s if body.persistent else body.timeout_s
    command = DeviceCommand(ids.command_id(), device_id, body.name, body.params, body.persistent,
                            "queued" if body.persistent else "sent", now, now + lifetime * 1000)
    await ctx.store.add_command(command)
    if body.persistent:
        await link.send_command(command, None)
        response.status_code = 202
        return CommandAnswer(id=command.command_id, status="queued")
    done = await link.send_command(command, body.timeout_s)
    if done is None or done.status == "expired":
        raise ApiError(504, f"the device did not answer within {body.timeout_s} s", kind="command_timeout",
                       id=command.command_id)
    if done.status == "failed" and done.error == "device_offline":
        raise _offline(device_id)
    return CommandAnswer(id=done.id, status=done.status, result=done.result, error=done.error)


def _offline(device_id: str) -> ApiError:
    return ApiError(409, f"device {device_id} is offline; send a persistent command to queue it",
                    kind="device_offline")


@router.get("/{device_id}/commands/{command_id}", response_model=CommandOut, responses=_NO_DEVICE)
async def get_command(device_id: str, command_id: str, user: CurrentUser, ctx: Ctx) -> CommandOut:
    """One command of the device and where it stands."""
    await owned_device(device_id, user, ctx)
    command = await ctx.store.get_command(command_id)
    if command is None or command.device_id != device_id:
        raise not_found("no such command")
    return CommandOut.of(command.seen_at(now_ms()))


@router.get("/{device_id}/commands", response_model=list[CommandOut], responses=_NO_DEVICE)
async def list_commands(device_id: str, user: CurrentUser, ctx: Ctx, status: CommandStatusName | None = None,
                        limit: Annotated[int, Query(ge=1, le=100)] = 100) -> list[CommandOut]:
    """The device's commands, newest first (with ``status``, only those in that state now)."""
    await owned_device(device_id, user, ctx)
    now = now_ms()
    # ``expired`` is also what an unfinished command past its expiry reads as: filter after reading
    stored: list[CommandStatus] | None = None
    if status in ("queued", "sent"):
        stored = [status]
    elif status == "expired":
        stored = ["queued", "sent", "expired"]
    elif status is not None:
        stored = [status]
    commands = [c.seen_at(now) for c in await ctx.store.device_commands(device_id, stored, limit)]
    return [CommandOut.of(c) for c in commands if status is None or c.status == status]
