"""``Outlet``: sends inbox envelopes to users wherever they are.

``deliver`` sends to users that are online (per the session registry) through their
node's delivery topic and returns the users that were offline. ``notify`` does the
same for receipts and events and keeps them as pending notices for offline users.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from chatmq.bus.base import Bus
from chatmq.ids import server_id
from chatmq.services.sessions import Registry
from chatmq.services.store import Store
from chatmq.topics import deliver_topic


class Outlet:
    def __init__(self, bus: Bus, registry: Registry, store: Store) -> None:
        self._bus = bus
        self._registry = registry
        self._store = store

    async def to_node(self, node: str, user: str, envs: list[dict[str, Any]]) -> None:
        """Send to ``user`` on ``node`` (for answers to the connection that asked)."""
        if envs:
            await self._bus.publish(deliver_topic(node), user.encode(), orjson.dumps({"user": user, "envs": envs}))

    async def deliver(self, items: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Send each ``(user, envelope)`` to online users in order; return the offline users."""
        by_node: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        offline: list[str] = []
        nodes = await self._registry.nodes_of(list({user for user, _ in items}))
        for user, env in items:
            node = nodes.get(user)
            if node is None:
                offline.append(user)
            else:
                by_node[node][user].append(env)
        for node, users in by_node.items():
            await self._bus.publish_many(deliver_topic(node), [
                (user.encode(), orjson.dumps({"user": user, "envs": envs})) for user, envs in users.items()
            ])
        return offline

    async def fan_out(self, key: str, users: list[str], template: dict[str, Any]) -> list[str]:
        """Send one group message to ``users``: one record per node carrying the member list and the
        envelope without ``to`` (the node fills it in per member), keyed by ``key`` (the group) so the
        group's order holds. Returns the offline users."""
        by_node: dict[str, list[str]] = defaultdict(list)
        offline: list[str] = []
        nodes = await self._registry.nodes_of(users)
        for user in users:
            node = nodes.get(user)
            if node is None:
                offline.append(user)
            else:
                by_node[node].append(user)
        for node, members in by_node.items():
            await self._bus.publish(deliver_topic(node), key.encode(),
                                    orjson.dumps({"users": members, "env": template}))
        return offline

    async def notify(self, users: list[str], env: dict[str, Any]) -> None:
        """Send a receipt or event to ``users``; offline users get it on their next connect."""
        offline = await self.deliver([(u, env) for u in users])
        if offline:
            await self._store.add_notices([(u, server_id(), env) for u in offline])
