"""One exception root for every chatmq error, with behaviour flags (after aiokafka's ``errors.py``)."""

from __future__ import annotations


class ChatMQError(Exception):
    """Root of every error chatmq raises on purpose.

    ``retriable`` tells a caller whether the same operation may succeed if tried again.
    """

    retriable: bool = False


class ConfigError(ChatMQError):
    """Configuration is invalid (bad TOML, bad value, unknown key)."""


class BusError(ChatMQError):
    """The message bus failed to take or hand out a record."""

    retriable = True


class BusClosedError(BusError):
    """The bus or consumer was used after ``stop()``."""

    retriable = False


class StoreError(ChatMQError):
    """The store failed; the operation had no effect."""

    retriable = True


class NotFoundError(ChatMQError):
    """The named user, group, device or message does not exist."""


class ConflictError(ChatMQError):
    """The operation conflicts with existing state (for example a taken username)."""


class ForbiddenError(ChatMQError):
    """The caller may not do this."""


class AuthError(ChatMQError):
    """Credentials or a token are missing, invalid or expired."""
