"""``Outlet``: sends inbox envelopes to users wherever they are.

``deliver`` sends to users that are online (per the session registry) through their
nodes' delivery topics (a user's devices may be on several) and returns the users that were offline. ``notify`` does the
same for receipts and events and keeps them as pending notices for offline users.
Envelopes are JSON bytes, made once upstream (``chatmq.core.envelopes``); they ride in typed
``Delivery`` records as they are.
With a ``PushPublisher`` (``push_provider`` set), ``push_offline`` and ``notify`` also ask for push
notifications for offline users (group events only when ``push_group_events`` is on).
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from chatmq.core.bus.base import Bus, Value
from chatmq.core.ids import server_id
from chatmq.core.records import Delivery
from chatmq.core.topics import deliver_topic
from chatmq.services.push.publisher import PushPublisher
from chatmq.services.registry.sessions import Registry
from chatmq.services.store import Store


class Outlet:
    def __init__(self, bus: Bus, registry: Registry, store: Store, push: PushPublisher | None = None) -> None:
        self._bus = bus
        self._registry = registry
        self._store = store
        self._push = push

    async def to_node(self, node: str, user: str, envs: list[bytes], client: str = "") -> None:
        """Send to ``user`` on ``node`` (for answers to the connection that asked: its MQTT client id
        ``client``, or every connection of the user there when "")."""
        await self.to_nodes([(node, user, envs, client)])

    async def to_nodes(self, answers: list[tuple[str, str, list[bytes], str]]) -> None:
        """``to_node`` for several ``(node, user, envelopes, client id)`` at once, in order: one bus write
        per node (on Kafka one round trip for the batch instead of one per user)."""
        by_node: dict[str, list[tuple[bytes, Value]]] = defaultdict(list)
        for node, user, envs, client in answers:
            if envs:
                by_node[node].append((user.encode(), Delivery.live(user, [msgspec.Raw(e) for e in envs],
                                                                   only=client or None)))
        await self._publish(by_node)

    async def _publish(self, by_node: dict[str, list[tuple[bytes, Value]]]) -> None:
        """Each node's ``(key, value)`` records on its delivery topic, in order, one write per node."""
        for node, records in by_node.items():
            await self._bus.publish_many(deliver_topic(node), records)

    async def deliver(self, items: list[tuple[str, bytes]]) -> list[str]:
        """Send each ``(user, envelope)`` to online users in order; return the offline users."""
        by_node: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
        offline: list[str] = []
        nodes = await self._registry.user_nodes(list({user for user, _ in items}))
        for user, env in items:
            on = nodes.get(user)
            if on is None:
                offline.append(user)
            else:
                for node in on:
                    by_node[node][user].append(env)
        await self.to_nodes([(node, user, envs, "") for node, users in by_node.items()
                             for user, envs in users.items()])
        return offline

    async def copies(self, items: list[tuple[str, str, bytes]]) -> None:
        """Send each ``(user, client id, envelope)`` to the user's connections but those of that client id
        (what one device of a user did, for its other devices), where the user is online; nothing is
        kept for an offline user here (what must reach them is pending in the store)."""
        by_node: dict[str, list[tuple[bytes, Value]]] = defaultdict(list)
        nodes = await self._registry.user_nodes(list({user for user, _, _ in items}))
        for user, client, env in items:
            for node in nodes.get(user, ()):
                by_node[node].append((user.encode(), Delivery.live(user, [msgspec.Raw(env)], skip=client or None)))
        await self._publish(by_node)

    async def fan_out(self, key: str, users: list[str], template: bytes) -> list[str]:
        """Send one group message to ``users``: one record per node carrying the member list and the
        envelope without ``to`` (the node fills it in per member), keyed by ``key`` (the group) so the
        group's order holds. Returns the offline users."""
        return await self.fan_out_many([(key, users, template)])

    async def fan_out_many(self, items: list[tuple[str, list[str], bytes]]) -> list[str]:
        """``fan_out`` for several ``(key, users, template)`` at once, in order: one registry lookup and
        one bus write per node for the batch. Returns the offline users (once per item)."""
        by_node: dict[str, list[tuple[bytes, Value]]] = defaultdict(list)
        offline: list[str] = []
        nodes = await self._registry.user_nodes(list({u for _, users, _ in items for u in users}))
        for key, users, envelope in items:
            template = msgspec.Raw(envelope)
            members_on: dict[str, list[str]] = defaultdict(list)
            for user in users:
                on = nodes.get(user)
                if on is None:
                    offline.append(user)
                else:
                    for node in on:
                        members_on[node].append(user)
            for node, members in members_on.items():
                by_node[node].append((key.encode(), Delivery.fan_out(members, template)))
        await self._publish(by_node)
        return offline

    async def notify(self, users: list[str], env: bytes) -> None:
        """Send a receipt or event to ``users``; offline users get it on their next connect."""
        await self.notify_many([(u, env) for u in users])

    async def notify_many(self, items: list[tuple[str, bytes]]) -> None:
        """``notify`` for several ``(user, envelope)`` at once, in order: one registry lookup, one
        bus write per node, one store write for the offline users' notices."""
        if not items:
            return
        offline = set(await self.deliver(items))
        if offline:
            await self._store.add_notices([(u, server_id(), env) for u, env in items if u in offline])
            if self._push is not None:
                await self._push.events([(u, env) for u, env in items if u in offline])

    async def push_offline(self, items: list[tuple[str, bytes]]) -> None:
        """Push notifications for inbox ``message`` envelopes ``(user, envelope)`` of users found offline
        (nothing without a ``PushPublisher``); never raises for a failed bus write."""
        if self._push is not None and items:
            await self._push.messages(items)
