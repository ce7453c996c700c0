"""``FcmProvider``: push through Firebase Cloud Messaging with firebase-admin (HTTP v1 API).

Each notification is a data-only message to one token (``send_each_async``: httpx, on the event
loop), with the platform fields that make a data message behave: Android ``collapse_key``, ``ttl``
and ``priority``; APNs ``apns-collapse-id``, ``apns-expiration``, a background push
(``content-available``, priority 5); Web Push ``TTL``, ``Topic`` and ``Urgency`` headers.

Three things firebase-admin does are changed on the provider's own app (never the process-wide
defaults), through its messaging service's attributes (firebase-admin 7.x):

* the send URL, when ``url`` is given (``fcm_url``: tests and proxies);
* its own retries (4 on 500/503, ignoring ``Retry-After``) are turned off: the ``PushWorker``
  retries, with backoff that honours ``Retry-After``, without holding up anyone else's pushes;
* the OAuth token is fetched in a thread before a send when it is missing or near expiry
  (google-auth fetches it with ``requests``, which would otherwise block the event loop).

A service account file that cannot be read or is not one is a ``ConfigError`` at construction.

The token a client registers (``POST /push-tokens``) is an FCM registration token and goes in the
message's ``token`` field. firebase-admin 7.7 marks ``Message.token`` deprecated in favour of
Firebase installation IDs (``fid``), a different identifier; that warning is silenced here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
from firebase_admin import _http_client, _retry, credentials, exceptions, messaging

from chatmq.core.errors import ChatMQError, ConfigError
from chatmq.services.push.provider import SENT, Notification, Outcome, Result, outcome_of_status, redact
from chatmq.services.store.base import PushToken

log = logging.getLogger(__name__)

_RETRIABLE_CODES = {exceptions.UNAVAILABLE, exceptions.DEADLINE_EXCEEDED, exceptions.UNKNOWN, exceptions.INTERNAL}


class FcmProvider:
    """Sends to FCM as the project of the service account at ``credentials_path``."""

    name = "fcm"

    def __init__(self, credentials_path: Path, *, url: str | None = None, timeout: int = 10) -> None:
        try:
            self._certificate = credentials.Certificate(str(credentials_path))
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"fcm_credentials {credentials_path}: not a readable Firebase service-account "
                              f"JSON ({type(exc).__name__}: {exc})") from exc
        self.project_id: str | None = self._certificate.project_id
        if not self.project_id:
            raise ConfigError(f"fcm_credentials {credentials_path}: the service account names no project_id")
        self._url = url
        self._timeout = timeout
        self._app: Any = None
        self._service: Any = None
        self._refreshing = asyncio.Lock()

    async def start(self) -> None:
        self._app = firebase_admin.initialize_app(self._certificate, {"httpTimeout": self._timeout},
                                                  name=f"chatmq-push-{uuid.uuid4().hex}")
        service = messaging._get_messaging_service(self._app)
        if not all(hasattr(service, a) for a in ("_fcm_url", "_async_client", "_credential")):
            raise ChatMQError(f"firebase-admin {firebase_admin.__version__} is not supported (chatmq needs 7.x)")
        if self._url:
            service._fcm_url = self._url.format(self.project_id)
        await service._async_client.aclose()
        service._async_client = _http_client.HttpxAsyncClient(
            credential=service._credential, timeout=self._timeout, retry_config=_retry.HttpxRetry(max_retries=0))
        self._service = service

    async def stop(self) -> None:
        if self._app is None:
            return
        app, self._app = self._app, None
        await self._service._async_client.aclose()
        # delete_app closes the service with asyncio.run(): in a thread, away from this loop
        await asyncio.to_thread(firebase_admin.delete_app, app)

    async def send(self, token: PushToken, notification: Notification) -> Outcome:
        try:
            await self._fresh_credential()
        except google.auth.exceptions.GoogleAuthError as exc:
            return Outcome(Result.RETRY, None, f"OAuth token: {type(exc).__name__}")
        try:
            batch = await messaging.send_each_async([_message(token.token, notification)], app=self._app)
        except (ValueError, exceptions.FirebaseError) as exc:
            return Outcome(Result.FAILED, None, _scrub(f"{type(exc).__name__}: {exc}", token.token))
        response = batch.responses[0]
        if response.success:
            return SENT
        return _outcome(response.exception, token.token)

    async def _fresh_credential(self) -> None:
        """Fetch the OAuth token in a thread when there is none or it is about to expire."""
        credential = self._service._credential
        if credential.valid:
            return
        async with self._refreshing:
            if not credential.valid:
                await asyncio.to_thread(credential.refresh, google.auth.transport.requests.Request())


def _message(token: str, n: Notification) -> messaging.Message:
    """A data-only FCM message for one token (no ``notification`` block: the app decides what to show)."""
    with warnings.catch_warnings():  # see the module docstring: registration tokens go in ``token``
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return _build(token, n)


def _build(token: str, n: Notification) -> messaging.Message:
    return messaging.Message(
        token=token,
        data=n.data,
        android=messaging.AndroidConfig(collapse_key=n.collapse_key, ttl=n.ttl,
                                        priority="high" if n.urgent else "normal"),
        apns=messaging.APNSConfig(
            headers={"apns-collapse-id": n.collapse_key, "apns-expiration": str(_expiration(n.ttl)),
                     "apns-push-type": "background", "apns-priority": "5"},
            payload=messaging.APNSPayload(aps=messaging.Aps(content_available=True))),
        webpush=messaging.WebpushConfig(headers={"TTL": str(n.ttl), "Topic": n.collapse_key,
                                                 "Urgency": "high" if n.urgent else "normal"}),
    )


def _expiration(ttl: int) -> int:
    """APNs ``apns-expiration``: epoch seconds, or 0 (deliver now or never) for a zero TTL."""
    return int(time.time()) + ttl if ttl else 0


def _outcome(exc: Any, token: str) -> Outcome:
    """The outcome of an FCM error (a ``FirebaseError``)."""
    detail = _scrub(f"{type(exc).__name__}: {exc}", token)
    if isinstance(exc, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return Outcome(Result.INVALID_TOKEN, None, detail)
    response = getattr(exc, "http_response", None)
    if isinstance(exc, exceptions.InvalidArgumentError):
        return Outcome(Result.INVALID_TOKEN if _about_token(response) else Result.FAILED, None, detail)
    if response is not None:
        return outcome_of_status(int(response.status_code), response.headers.get("Retry-After"), detail)
    if getattr(exc, "code", None) in _RETRIABLE_CODES:  # no answer: unreachable, timed out
        return Outcome(Result.RETRY, None, detail)
    return Outcome(Result.FAILED, None, detail)


def _about_token(response: Any) -> bool:
    """Whether an INVALID_ARGUMENT answer is about the registration token (FCM names the field
    ``message.token`` in a ``BadRequest`` detail, or says so in its message)."""
    try:
        error = response.json()["error"]
    except (AttributeError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(error, dict):
        return False
    for detail in error.get("details") or []:
        for violation in (detail.get("fieldViolations") or []) if isinstance(detail, dict) else []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()


def _scrub(text: str, token: str) -> str:
    """``text`` with ``token`` replaced by its redacted form (errors may quote what was sent)."""
    return text.replace(token, redact(token)) if token else text
