"""``WebhookProvider``: each notification as a JSON POST to a URL of the operator's (``push_webhook_url``).

The body is ``{"token", "platform", "data", "collapse_key", "ttl", "urgent"}`` (``data`` as in
docs/contract.md). With a ``secret`` (``push_webhook_secret``) every POST carries
``X-Chatmq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body under the secret>``, so
the receiver can check that the POST is ours and recent (``signature`` computes it).

The answer's status is the outcome: 2xx sent; 429 and 5xx retried (honouring ``Retry-After``);
404 and 410 a dead token (removed); anything else failed. A connection error or timeout is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from chatmq.services.push.provider import Notification, Outcome, Result, outcome_of_status
from chatmq.services.store.base import PushToken

SIGNATURE_HEADER = "X-Chatmq-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Chatmq-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookProvider:
    name = "webhook"

    def __init__(self, url: str, *, secret: str | None = None, timeout: float = 10.0) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout)

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def send(self, token: PushToken, notification: Notification) -> Outcome:
        assert self._client is not None, "send() before start()"
        body = {"token": token.token, "platform": token.platform, "data": notification.data,
                "collapse_key": notification.collapse_key, "ttl": notification.ttl, "urgent": notification.urgent}
        content = orjson.dumps(body)
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, int(time.time()), content)
        try:
            response = await self._client.post(self._url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(Result.RETRY, None, f"{type(exc).__name__}")
        return outcome_of_status(response.status_code, response.headers.get("Retry-After"))
