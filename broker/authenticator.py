"""CONNECT authentication: users by access token, devices by their secret."""

from __future__ import annotations

import logging

from chatmq.auth import TokenService, verify_secret
from chatmq.broker.identity import Identity
from chatmq.errors import AuthError
from chatmq.services.store import Store

log = logging.getLogger(__name__)


class Authenticator:
    """Maps CONNECT credentials to an ``Identity``.

    * ``username`` = user id, ``password`` = a valid access token whose subject is that user,
      who exists and is not disabled, and not revoked (its token version is the user's);
    * ``username`` = device id, ``password`` = the device's secret, device not revoked and its
      owner not disabled.
    Anything else is refused (``None``).
    """

    def __init__(self, store: Store, tokens: TokenService) -> None:
        self._store = store
        self._tokens = tokens

    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        if not username or not password:
            return None
        if username.startswith("d"):
            device = await self._store.get_device(username)
            if device is not None and not device.revoked and verify_secret(device.secret_hash, password):
                owner = await self._store.get_user(device.owner_id)
                if owner is not None and not owner.disabled:
                    return Identity("device", device.device_id, owner=device.owner_id)
            log.info("refused device %s: bad credentials or revoked", username)
            return None
        try:
            claims = self._tokens.verify_access(password)
        except AuthError as exc:
            log.info("refused %s: %s", username, exc)
            return None
        if claims.user_id != username:
            log.info("refused %s: token belongs to another user", username)
            return None
        user = await self._store.get_user(username)
        if user is None or user.disabled:
            log.info("refused %s: unknown or disabled user", username)
            return None
        if claims.revoked_for(user.token_version):
            log.info("refused %s: revoked token", username)
            return None
        return Identity("user", user.user_id)
