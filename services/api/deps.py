"""Dependencies shared by the routes: the API context and the authenticated caller."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatmq.core.auth import AccountDisabledError, TokenService, live_account
from chatmq.core.errors import AuthError
from chatmq.services.api.control import SessionControl
from chatmq.services.api.errors import ApiError, forbidden, not_found, unauthorized
from chatmq.services.api.notifier import ChatFeed, DeviceLink, Notifier
from chatmq.services.api.ratelimit import AuthLimiter
from chatmq.services.store.base import Store, User
from chatmq.services.store.files import FileStore
from chatmq.services.telemetry.reader import TelemetryReader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What every route needs; kept on ``app.state.ctx``."""

    store: Store
    tokens: TokenService
    notifier: Notifier
    max_page: int
    control: SessionControl | None = None
    limiter: AuthLimiter = field(default_factory=AuthLimiter)
    devices: DeviceLink | None = None
    telemetry: TelemetryReader | None = None
    files: FileStore | None = None
    feed: ChatFeed | None = None
    #: the key of the hashes kept of address-book numbers that are no user's (``phones.phone_hash``)
    phone_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    async def notify(self, user_ids: list[str], envelope: dict[str, Any]) -> None:
        """Send an event to ``user_ids`` (each once). The change it reports is already committed,
        so a failing notifier is logged and does not fail the request."""
        recipients = list(dict.fromkeys(user_ids))
        if not recipients:
            return
        try:
            await self.notifier.notify(recipients, envelope)
        except Exception:
            log.exception("notifier failed for event %s to %d users", envelope.get("event"), len(recipients))

    async def blocks_changed(self, blocker: str, blocked: str) -> None:
        """Tell the routers (committed already): the pair's and the blocker's groups' routers read who
        blocks ``blocked`` again before the next message. Without a feed (no routers) nothing to tell."""
        if self.feed is not None:
            groups = [g.group_id for g in await self.store.groups_of(blocker)]
            await self.feed.blocks_changed(blocker, blocked, groups)

    async def check_other_user(self, caller: str, user_id: str, itself: str) -> None:
        """422 (``itself`` says why) when ``user_id`` is the caller, 404 when it is no user."""
        if user_id == caller:
            raise ApiError(422, itself)
        if not await self.store.existing_user_ids([user_id]):
            raise not_found("no such user")

    async def revoke_tokens(self, user_id: str) -> None:
        """Revoke every token of ``user_id`` issued so far, then close the user's live sessions (and
        their devices', which reconnect with their own secrets). ``NotFoundError`` for an unknown user."""
        await self.store.revoke_tokens(user_id)
        await self.close_sessions(user_id)

    async def close_sessions(self, principal_id: str) -> None:
        """Close the live sessions of a user (and of the user's devices) or of one device, on every
        node (in a cluster over ``chat.control``): after its credentials were revoked. Without
        session control (a process with no node to reach) there is nothing to close."""
        if self.control is not None:
            await self.control.kick_principal(principal_id)


def get_ctx(request: Request) -> ApiContext:
    """The ``ApiContext`` of the running app."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


async def limit_address(request: Request, ctx: Ctx) -> None:
    """Take a rate-limit token for the client's address (429 when it has none)."""
    ctx.limiter.check_address(request)


#: On register, login and refresh: rate limited per client address.
RATE_LIMITED = [Depends(limit_address)]

_bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login or /auth/refresh.")


async def current_user(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    """The caller, from ``Authorization: Bearer <access token>``.

    401 (with ``WWW-Authenticate: Bearer``) when the token is missing, invalid, expired or
    revoked or its user no longer exists; 403 when the user is disabled.
    """
    if credentials is None or not credentials.credentials:
        raise unauthorized("missing bearer token")
    try:
        claims = ctx.tokens.verify_access(credentials.credentials)
        return await live_account(ctx.store, claims)
    except AccountDisabledError as exc:
        raise forbidden(str(exc)) from None
    except AuthError as exc:
        raise unauthorized(str(exc)) from None


CurrentUser = Annotated[User, Depends(current_user)]
