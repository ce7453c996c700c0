"""``PushWorker``: sends the notifications on ``chat.push`` through a ``PushProvider``.

For each record it looks up the user's push tokens and sends to every one of them at once (at
most ``concurrency`` sends in flight). The batch is committed once each token had its first try;
a send answered ``RETRY`` is tried again from a tracked background task after an exponential
backoff (``backoff`` × 2^(attempt-1), capped at ``max_backoff``, with a little jitter) or the
server's ``Retry-After`` when that is longer, so a slow or throttled provider never holds up
other users' pushes. After ``max_attempts`` sends, or with ``max_retrying`` retries already
waiting, the push is given up. Tokens the provider reports dead are removed from the store.
Every result is counted in ``chatmq_push_results_total`` (sent, retried, unregistered, failed).
Retries still waiting at ``stop()`` are cancelled: a push is a hint, the message is in the inbox.
Logs name tokens only in redacted form and never carry message text.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable

from chatmq.core.bus.base import Bus, Record
from chatmq.core.errors import ChatMQError
from chatmq.core.metrics import PUSH_RESULTS
from chatmq.core.tasks import Supervisor
from chatmq.core.topics import PUSH
from chatmq.core.worker import BusWorker
from chatmq.services.push.provider import Notification, Outcome, PushProvider, Result, redact
from chatmq.services.push.records import PUSHES
from chatmq.services.store.base import PushToken, Store

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 3600.0
"""The longest ``Retry-After`` honoured; a longer one is waited for this long."""


class PushWorker(BusWorker):
    def __init__(self, bus: Bus, store: Store, provider: PushProvider, *, ttl: int, max_attempts: int = 5,
                 backoff: float = 1.0, max_backoff: float = 300.0, concurrency: int = 64,
                 max_retrying: int = 10_000) -> None:
        super().__init__(bus, "push", [PUSH])
        self._store = store
        self.provider = provider
        self._ttl = ttl
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._slots = asyncio.Semaphore(concurrency)
        self._max_retrying = max_retrying
        self._retries = Supervisor("push-retries")
        self._closing = False
        self.retrying = 0
        """Retries waiting or running now."""

    async def start(self) -> None:
        self._closing = False
        await self.provider.start()
        try:
            await super().start()
        except BaseException:
            await self.provider.stop()
            raise
        log.info("push notifications through %s (ttl %d s, up to %d sends per token)", self.provider.name,
                 self._ttl, self._max_attempts)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop consuming, cancel the retries still waiting, close the provider."""
        self._closing = True  # no new retries from here: none can slip past the cancelling below
        try:
            await super().stop(grace)
            await self._retries.stop()
        finally:
            await self.provider.stop()

    async def process(self, records: list[Record]) -> None:
        pushes = PUSHES.read_all(records)
        users = list(dict.fromkeys(p.user for p in pushes))
        # every lookup before any send: a store failure retries the batch without sending twice
        found = await asyncio.gather(*(self._store.push_tokens(u) for u in users))
        tokens = dict(zip(users, found, strict=True))
        sends: list[Awaitable[None]] = []
        for push in pushes:
            if user_tokens := tokens[push.user]:
                notification = Notification.of(push, self._ttl)  # once per push, shared by its tokens
                sends.extend(self._attempt(token, notification, 1) for token in user_tokens)
        await asyncio.gather(*sends)

    async def _attempt(self, token: PushToken, notification: Notification, attempt: int) -> None:
        """Send once and act on the outcome (count, remove a dead token, schedule a retry)."""
        async with self._slots:
            try:
                outcome = await self.provider.send(token, notification)
            except Exception as exc:  # a provider must not raise; if one does, this push alone fails
                log.error("push provider %s raised %s for token %s", self.provider.name, type(exc).__name__,
                          redact(token.token))
                outcome = Outcome(Result.FAILED, None, type(exc).__name__)
        counter = PUSH_RESULTS.labels(self.provider.name, _RESULT_LABELS[outcome.result])
        if outcome.result is Result.SENT:
            counter.inc()
        elif outcome.result is Result.INVALID_TOKEN:
            counter.inc()
            await self._remove(token, outcome)
        elif (outcome.result is Result.RETRY and attempt < self._max_attempts
              and self.retrying < self._max_retrying and not self._closing):
            counter.inc()
            delay = self._delay(attempt, outcome.retry_after)
            log.info("push to %s of user %s: %s; try %d in %.1f s", redact(token.token), token.user_id,
                     outcome.detail, attempt + 1, delay)
            self.retrying += 1
            self._retries.spawn(self._retry(token, notification, attempt + 1, delay), f"retry-{token.user_id}")
        else:
            PUSH_RESULTS.labels(self.provider.name, "failed").inc()
            log.warning("push to %s of user %s failed after %d attempt(s): %s", redact(token.token),
                        token.user_id, attempt, outcome.detail)

    async def _retry(self, token: PushToken, notification: Notification, attempt: int, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self._attempt(token, notification, attempt)
        finally:
            self.retrying -= 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with up to 10% jitter, or the server's ``Retry-After`` when longer."""
        backoff = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1)) * (1 + random.random() / 10)
        return max(backoff, min(retry_after or 0.0, MAX_RETRY_AFTER))

    async def _remove(self, token: PushToken, outcome: Outcome) -> None:
        log.info("push token %s of user %s is no longer valid (%s): removing it", redact(token.token),
                 token.user_id, outcome.detail)
        try:
            await self._store.remove_push_token(token.user_id, token.token)
        except ChatMQError as exc:
            log.warning("could not remove push token %s of user %s: %s", redact(token.token), token.user_id, exc)


_RESULT_LABELS = {Result.SENT: "sent", Result.RETRY: "retried", Result.INVALID_TOKEN: "unregistered",
                  Result.FAILED: "failed"}
