"""Persistent state behind one interface (``Store``) with SQLite and (later) MongoDB implementations."""

from chatmq.services.store.base import (
    Device,
    Group,
    GroupMember,
    NewMessage,
    PendingItem,
    PushToken,
    Store,
    StoredMessage,
    User,
)

__all__ = [
    "Device", "Group", "GroupMember", "NewMessage", "PendingItem", "PushToken", "Store",
    "StoredMessage", "User",
]
