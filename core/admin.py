"""Bootstrapping operators: ``chatmq admin create``."""

from __future__ import annotations

from pathlib import Path

from chatmq import ids
from chatmq.auth import hash_secret
from chatmq.services.store.sqlite import SQLiteStore


async def ensure_admin(data_dir: Path, username: str, password: str) -> tuple[str, bool]:
    """Make ``username`` an admin in the SQLite store under ``data_dir``, creating the user (with
    ``password``) when it does not exist. Returns the user id and whether it was created; an
    existing user keeps their password."""
    async with SQLiteStore(data_dir / "chatmq.db") as store:
        existing = await store.get_user_by_username(username)
        if existing is not None:
            await store.set_user_flags(existing.user_id, is_admin=True)
            return existing.user_id, False
        user = await store.create_user(ids.user_id(), username, hash_secret(password), None, is_admin=True)
        return user.user_id, True
