"""The push provider interface: send one notification to one device token, say how it went.

A provider never raises for a failed send: every result is an ``Outcome``. ``SENT`` (the provider
took it), ``RETRY`` (429, 5xx, or the provider unreachable; ``retry_after`` is the server's
``Retry-After`` in seconds when it gave one), ``INVALID_TOKEN`` (the token is dead: the worker
removes it) and ``FAILED`` (anything else; not retried). ``start``/``stop`` open and close its
connections; ``send`` is called only between them, concurrently for different tokens.
"""

from __future__ import annotations

import email.utils
import enum
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Protocol

from chatmq.services.push.records import PushRecord
from chatmq.services.store.base import PushToken


class Result(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    INVALID_TOKEN = "invalid_token"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    retry_after: float | None = None
    detail: str = ""


SENT = Outcome(Result.SENT)


@dataclass(frozen=True, slots=True)
class Notification:
    """What every provider sends for a ``PushRecord``: the data payload, a collapse key per conversation
    (a newer push for the same conversation replaces one still waiting), the time to live in seconds,
    and whether it is urgent (messages are; events are not)."""

    data: dict[str, str]
    collapse_key: str
    ttl: int
    urgent: bool

    @classmethod
    def of(cls, record: PushRecord, ttl: int) -> Notification:
        return cls(record.data(), collapse_key(record.conversation), ttl, record.kind == "message")


def collapse_key(conversation: str) -> str:
    """``conversation`` itself when it fits every platform's collapse field (APNs ``apns-collapse-id``:
    64 bytes; Web Push ``Topic``: 32 URL-safe base64 characters), else a digest of it that does."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", conversation):
        return conversation
    return hashlib.sha256(conversation.encode()).hexdigest()[:32]


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (delta-seconds or an HTTP date); None when
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def outcome_of_status(status: int, retry_after_header: str | None, detail: str = "") -> Outcome:
    """The outcome of an HTTP answer to a send that is not otherwise understood: 2xx sent, 429 and 5xx
    retried (honouring ``Retry-After``), 404 and 410 a dead token, anything else failed."""
    if 200 <= status < 300:
        return SENT
    if status == 429 or status >= 500:
        return Outcome(Result.RETRY, retry_after(retry_after_header), detail or f"HTTP {status}")
    if status in (404, 410):
        return Outcome(Result.INVALID_TOKEN, None, detail or f"HTTP {status}")
    return Outcome(Result.FAILED, None, detail or f"HTTP {status}")


def redact(token: str) -> str:
    """A token as it may be logged: its first characters and its length, never the whole."""
    return f"{token[:6]}…({len(token)})"


class PushProvider(Protocol):
    """Sends notifications to device tokens (``FcmProvider``, ``WebhookProvider``)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, token: PushToken, notification: Notification) -> Outcome:
        """Send ``notification`` to ``token``; never raises for a failed send."""
        ...
