"""Bootstrapping operators: ``chatmq admin create``.

``ensure_admin`` makes a username an admin in the store the settings name (``open_store``):
MongoDB when ``mongo_url`` is set (a cluster), else SQLite under ``data_dir``. A new user is
created with the given password; an existing user is refused (``ConflictError`` saying how to
promote them) unless ``promote`` is given, and then keeps their password; an existing admin is
left as it is. ``credential_problem`` checks a username and password the way registration
does. Passwords are hashed at once and never logged or echoed.
"""

from __future__ import annotations

import re
from enum import Enum

from chatmq.core import ids
from chatmq.core.auth import hash_secret
from chatmq.core.errors import ConflictError
from chatmq.core.settings import Settings
from chatmq.run.assembly import make_store
from chatmq.services.api.models import USERNAME_PATTERN
from chatmq.services.store.base import Store

MIN_PASSWORD, MAX_PASSWORD = 8, 256


class Outcome(Enum):
    """What ``ensure_admin`` did."""

    CREATED = "created admin"
    PROMOTED = "made admin"
    ALREADY = "already an admin (nothing changed):"


def open_store(settings: Settings) -> Store:
    """The store the settings name: MongoDB when ``mongo_url`` is set (cluster), else SQLite in ``data_dir``."""
    return make_store(settings, cluster=bool(settings.mongo_url))


def describe(settings: Settings) -> str:
    """Where ``open_store`` writes, for messages (no credentials: the MongoDB URL's host only)."""
    if settings.mongo_url:
        host = settings.mongo_url.split("://", 1)[-1].split("@")[-1].split("/")[0]
        return f"MongoDB {host}, database {settings.mongo_db}"
    return f"SQLite {settings.data_dir / 'chatmq.db'}"


def credential_problem(username: str, password: str) -> str | None:
    """Why ``username``/``password`` cannot be an account (as registration checks them), or None."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        return f"usernames are 3-32 characters of a-z 0-9 _ . - (got {username!r})"
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"the password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    return None


async def ensure_admin(store: Store, username: str, password: str, *, promote: bool = False) -> tuple[str, Outcome]:
    """Make ``username`` an admin in ``store`` (not yet started; started and stopped here).

    Returns the user id and what was done. ``ConflictError`` when the user exists, is not an
    admin and ``promote`` is false.
    """
    async with store:
        existing = await store.get_user_by_username(username)
        if existing is not None:
            if existing.is_admin:
                return existing.user_id, Outcome.ALREADY
            if not promote:
                raise ConflictError(f"user {username} exists and is not an admin; run again with --promote to make "
                                    "them one (their password stays as it is)")
            await store.set_user_flags(existing.user_id, is_admin=True)
            return existing.user_id, Outcome.PROMOTED
        user = await store.create_user(ids.user_id(), username, hash_secret(password), None, is_admin=True)
        return user.user_id, Outcome.CREATED
