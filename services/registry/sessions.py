"""The session registry: which nodes each online user is on.

Presence records carry an epoch that grows with time; the registry keeps an entry per (user,
node): an ``offline`` only removes the entry it belongs to (same node, epoch not older), so a
late disconnect cannot erase a newer connection on that node, and a user's devices on other
nodes keep theirs.
A ``node_started`` record (``{"event": "node_started", "node", "epoch"}``) forgets the
entries a node had before it restarted.

Two implementations of ``Registry``: ``SessionRegistry`` in memory (embedded mode: the
storage service and the routers share the process) and ``StoreRegistry`` in the store
(cluster mode: shared by every router copy and surviving restarts). Either way the
storage service records an ``online`` before it reads the user's pending items, and the
routers look the registry up after they committed a message, so a message is either seen
pending by the replay or delivered live (the store orders the two).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from chatmq.core.records import Connected, ConnectionEvent, NodeStarted, Offline, Online
from chatmq.services.store.base import Store


@dataclass(frozen=True, slots=True)
class Presence:
    user: str
    node: str
    epoch: int


class Registry(abc.ABC):
    """Where each online user is, fed with ``chat.presence`` records in order per user. A user has an
    entry per node it reads its inbox on (its devices may be on several)."""

    async def update(self, record: Online | Offline | NodeStarted) -> bool:
        """Apply one presence record; True when it changed the registry."""
        if isinstance(record, NodeStarted):
            return await self.forget_node(record.node, record.epoch) > 0
        if isinstance(record, Online):
            return await self.set_online(record.user, record.node, record.epoch)
        return await self.set_offline(record.user, record.node, record.epoch)

    @abc.abstractmethod
    async def set_online(self, user: str, node: str, epoch: int) -> bool: ...

    @abc.abstractmethod
    async def set_offline(self, user: str, node: str, epoch: int) -> bool: ...

    @abc.abstractmethod
    async def forget_node(self, node: str, before_epoch: int) -> int: ...

    @abc.abstractmethod
    async def user_nodes(self, users: list[str]) -> dict[str, list[str]]:
        """``{user: [node, ...]}`` for the online ones among ``users``, the newest entry first."""

    async def nodes_of(self, users: list[str]) -> dict[str, str]:
        """``{user: node}`` (the newest entry's) for the online ones among ``users``."""
        return {user: nodes[0] for user, nodes in (await self.user_nodes(users)).items()}

    @abc.abstractmethod
    async def online_count(self) -> int: ...


class StoreRegistry(Registry):
    """The registry kept in the store (``Store.set_online`` and friends)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def set_online(self, user: str, node: str, epoch: int) -> bool:
        return await self._store.set_online(user, node, epoch)

    async def set_offline(self, user: str, node: str, epoch: int) -> bool:
        return await self._store.set_offline(user, node, epoch)

    async def forget_node(self, node: str, before_epoch: int) -> int:
        return await self._store.forget_node(node, before_epoch)

    async def user_nodes(self, users: list[str]) -> dict[str, list[str]]:
        return await self._store.user_nodes(users) if users else {}

    async def online_count(self) -> int:
        return await self._store.count_online()


class SessionRegistry(Registry):
    """The registry in memory (one process)."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, int]] = {}  # user -> {node: epoch}

    async def set_online(self, user: str, node: str, epoch: int) -> bool:
        return self.apply(Online(user, node, epoch))

    async def set_offline(self, user: str, node: str, epoch: int) -> bool:
        return self.apply(Offline(user, node, epoch))

    async def forget_node(self, node: str, before_epoch: int) -> int:
        removed = 0
        for user, nodes in list(self._by_user.items()):
            if nodes.get(node, before_epoch) < before_epoch:
                del nodes[node]
                removed += 1
                if not nodes:
                    del self._by_user[user]
        return removed

    async def user_nodes(self, users: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        by_user = self._by_user
        for u in users:
            nodes = by_user.get(u)
            if nodes:
                found[u] = list(nodes) if len(nodes) == 1 else self._newest_first(nodes)
        return found

    @staticmethod
    def _newest_first(nodes: dict[str, int]) -> list[str]:
        if len(nodes) == 1:
            return list(nodes)
        return sorted(nodes, key=lambda n: -nodes[n])

    async def online_count(self) -> int:
        return len(self._by_user)

    def apply(self, record: Online | Offline) -> bool:
        """Apply one ``online``/``offline`` record at once (synchronously); True when it changed the registry."""
        user, node, epoch = record.user, record.node, record.epoch
        nodes = self._by_user.get(user)
        current = nodes.get(node) if nodes else None
        if isinstance(record, Online):
            if current is not None and current > epoch:
                return False
            self._by_user.setdefault(user, {})[node] = epoch
            return True
        if nodes is not None and current is not None and current <= epoch:
            del nodes[node]
            if not nodes:
                del self._by_user[user]
            return True
        return False

    def node_of(self, user: str) -> str | None:
        """The node of the user's newest entry."""
        nodes = self._by_user.get(user)
        return self._newest_first(nodes)[0] if nodes else None

    def online(self) -> list[Presence]:
        """Every entry."""
        return [Presence(u, n, e) for u, nodes in self._by_user.items() for n, e in nodes.items()]

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
        self._by_client: dict[str, dict[str, Connection]] = {}  # client id -> node -> connection

    def apply(self, record: ConnectionEvent) -> None:
        """Apply a ``connected``/``disconnected`` record, or a ``node_started`` (the node's earlier
        connections are gone)."""
        if isinstance(record, NodeStarted):
            for key in [k for k in self._by_key if k[0] == record.node]:
                self._remove(key)
            return
        key = (record.node, record.client_id)
        if isinstance(record, Connected):
            conn = self._by_key[key] = Connection(record.kind, record.id, record.client_id, record.node,
                                                  record.transport or "tcp", record.ts)
            self._by_client.setdefault(record.client_id, {})[record.node] = conn
        else:
            current = self._by_key.get(key)
            if current is not None and current.id == record.id:
                self._remove(key)

    def _remove(self, key: tuple[str, str]) -> None:
        del self._by_key[key]
        node, client_id = key
        nodes = self._by_client.get(client_id)
        if nodes is not None:
            nodes.pop(node, None)
            if not nodes:
                del self._by_client[client_id]

    def holder(self, client_id: str, other_than: str = "") -> Connection | None:
        """The newest live connection with ``client_id`` on a node other than ``other_than``."""
        nodes = self._by_client.get(client_id)
        if not nodes:
            return None
        found = [c for node, c in nodes.items() if node != other_than]
        return max(found, key=lambda c: c.since) if found else None

    def all(self) -> list[Connection]:
        return sorted(self._by_key.values(), key=lambda c: c.since)

    def of(self, principal_id: str) -> list[Connection]:
        return [c for c in self.all() if c.id == principal_id]
