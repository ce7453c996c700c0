"""Bootstrapping operators: ``chatmq admin create``."""

from __future__ import annotations

from chatmq import ids
from chatmq.auth import hash_secret
from chatmq.services.store.base import Store
from chatmq.settings import Settings


def open_store(settings: Settings) -> Store:
    """The store the settings name: MongoDB when ``mongo_url`` is set (cluster), else SQLite in ``data_dir``."""
    if settings.mongo_url:
        from chatmq.services.store.mongo import MongoStore

        return MongoStore(settings.mongo_url, settings.mongo_db)
    from chatmq.services.store.sqlite import SQLiteStore

    return SQLiteStore(settings.data_dir / "chatmq.db")


async def ensure_admin(store: Store, username: str, password: str) -> tuple[str, bool]:
    """Make ``username`` an admin in ``store`` (not yet started), creating the user (with ``password``)
    when it does not exist. Returns the user id and whether it was created; an existing user keeps
    their password."""
    async with store:
        existing = await store.get_user_by_username(username)
        if existing is not None:
            await store.set_user_flags(existing.user_id, is_admin=True)
            return existing.user_id, False
        user = await store.create_user(ids.user_id(), username, hash_secret(password), None, is_admin=True)
        return user.user_id, True
