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


@dataclass(frozen=True, slots=True)
class Connection:
    """One live MQTT connection, as ``chat.connections`` reported it."""

    kind: str  # "user" | "device"
    id: str
    client_id: str
    node: str
    transport: str
    since: int  # ms


class ConnectionTable:
    """Live connections by (node, client id), from ``chat.connections`` records applied in order."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Connection] = {}

    def apply(self, record: dict[str, Any]) -> None:
        key = (record["node"], record["client_id"])
        if record["event"] == "connected":
            self._by_key[key] = Connection(record["kind"], record["id"], record["client_id"], record["node"],
                                           record.get("transport") or "tcp", int(record["ts"]))
        else:
            current = self._by_key.get(key)
            if current is not None and current.id == record["id"]:
                del self._by_key[key]

    def all(self) -> list[Connection]:
        return sorted(self._by_key.values(), key=lambda c: c.since)

    def of(self, principal_id: str) -> list[Connection]:
        return [c for c in self.all() if c.id == principal_id]
