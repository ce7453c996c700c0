"""CONNECT authentication: users by access token, devices by their secret.

A device secret's argon2 check (~150 ms of CPU) runs in the process's one small argon2 pool
(``chatmq.core.auth.verify_secret_async``, ``auth_workers`` threads, shared with the REST API's
password checks), never on the event loop: a burst of CONNECTs with wrong secrets waits its turn
there while every other connection carries on (argon2-cffi releases the GIL while it hashes).
"""

from __future__ import annotations

import logging
from typing import Protocol

from chatmq.broker.identity import Identity
from chatmq.core.auth import Account, TokenService, live_account, verify_secret_async
from chatmq.core.errors import AuthError

log = logging.getLogger(__name__)


class DeviceRecord(Protocol):
    """What CONNECT needs of a device (``chatmq.services.store.base.Device``)."""

    @property
    def device_id(self) -> str: ...
    @property
    def owner_id(self) -> str: ...
    @property
    def secret_hash(self) -> str: ...
    @property
    def revoked(self) -> bool: ...


class Directory(Protocol):
    """The users and devices CONNECT checks against (any store)."""

    async def get_user(self, user_id: str) -> Account | None: ...

    async def get_device(self, device_id: str) -> DeviceRecord | None: ...


class Authenticator:
    """Maps CONNECT credentials to an ``Identity``.

    * ``username`` = user id, ``password`` = a valid access token whose subject is that user,
      who exists and is not disabled, and not revoked (its token version is the user's);
    * ``username`` = device id, ``password`` = the device's secret, device not revoked and its
      owner not disabled;
    * (``authenticate_certified_device``) a device id that a verified client certificate names as its
      CN, with the same device and owner checks but no secret.
    Anything else is refused (``None``).
    """

    def __init__(self, store: Directory, tokens: TokenService) -> None:
        self._store = store
        self._tokens = tokens

    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        if not username or not password:
            return None
        if username.startswith("d"):
            device = await self._store.get_device(username)
            if device is not None and await verify_secret_async(device.secret_hash, password):
                identity = await self._live_device(device)
                if identity is not None:
                    return identity
            log.info("refused device %s: bad credentials or revoked", username)
            return None
        try:
            claims = self._tokens.verify_access(password)
            if claims.user_id != username:
                raise AuthError("token belongs to another user")
            user = await live_account(self._store, claims)
        except AuthError as exc:
            log.info("refused %s: %s", username, exc)
            return None
        return Identity("user", user.user_id)

    async def authenticate_certified_device(self, device_id: str) -> Identity | None:
        """The device ``device_id`` when it is known, not revoked and its owner not disabled: its client
        certificate (verified against ``tls_client_ca``, CN = ``device_id``) stands for its secret."""
        device = await self._store.get_device(device_id) if device_id.startswith("d") else None
        identity = None if device is None else await self._live_device(device)
        if identity is None:
            log.info("refused client certificate of %r: no such device, or revoked", device_id)
        return identity

    async def _live_device(self, device: DeviceRecord) -> Identity | None:
        """``device``'s identity unless it is revoked or its owner is gone or disabled."""
        if device.revoked:
            return None
        owner = await self._store.get_user(device.owner_id)
        if owner is None or owner.disabled:
            return None
        return Identity("device", device.device_id, owner=device.owner_id)
