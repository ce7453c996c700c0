"""``WebhookProvider``: each notification as a JSON POST to a URL of the operator's (``push_webhook_url``).

The body is ``{"token", "platform", "data", "collapse_key", "ttl", "urgent"}`` (``data`` as in
docs/contract.md). The answer's status is the outcome: 2xx sent; 429 and 5xx retried (honouring
``Retry-After``); 404 and 410 a dead token (removed); anything else failed. A connection error or
timeout is retried.
"""

from __future__ import annotations

import httpx

from chatmq.services.push.provider import Notification, Outcome, Result, outcome_of_status
from chatmq.services.store.base import PushToken


class WebhookProvider:
    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._url = url
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
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            return Outcome(Result.RETRY, None, f"{type(exc).__name__}")
        return outcome_of_status(response.status_code, response.headers.get("Retry-After"))
