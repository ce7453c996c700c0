"""Phone numbers of address books that are no user's: kept only as keyed hashes (HMAC-SHA256 with the
deployment's ``phone_hash_secret``), so the server can tell a number it saw before without keeping it."""

from __future__ import annotations

import hmac


def phone_hash(key: bytes, phone: str) -> str:
    """The hex HMAC-SHA256 of an E.164 number under ``key``."""
    return hmac.new(key, phone.encode(), "sha256").hexdigest()
