"""The session registry: which node each online user is on.

Presence records carry an epoch that grows with time; an ``offline`` only removes the
entry it belongs to (same node, epoch not older), so a late disconnect from an old
node cannot erase a newer connection, and a newer ``online`` on another node takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Presence:
    user: str
    node: str
    epoch: int


class SessionRegistry:
    """In-memory view of ``chat.presence``, applied in order per user."""

    def __init__(self) -> None:
        self._by_user: dict[str, Presence] = {}

    def apply(self, record: dict[str, Any]) -> bool:
        """Apply one presence record; True when it changed the registry."""
        user, node, epoch = record["user"], record["node"], int(record["epoch"])
        current = self._by_user.get(user)
        if record["event"] == "online":
            if current is not None and current.epoch > epoch:
                return False
            self._by_user[user] = Presence(user, node, epoch)
            return True
        if current is not None and current.node == node and current.epoch <= epoch:
            del self._by_user[user]
            return True
        return False

    def node_of(self, user: str) -> str | None:
        p = self._by_user.get(user)
        return p.node if p else None

    def online(self) -> list[Presence]:
        return list(self._by_user.values())

    def __len__(self) -> int:
        return len(self._by_user)
