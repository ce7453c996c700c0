"""Operator control of live sessions in cluster mode, over ``chat.control``.

The API process keeps a ``ConnectionTable`` (from ``chat.connections``, read from the
start by a group of its own) and implements ``SessionControl`` with it: listing is local,
closing a session publishes a command that the node holding it carries out
(``ControlWorker``, one per node, in the node's process). A ``kick_principal`` goes to
every node, since only the nodes know which devices belong to a user. A node that accepts a
connection publishes a ``takeover`` for its client id and principal, and the other nodes close a
connection with that id if it is the same principal's ([MQTT-3.1.4-2] across the cluster: nginx may
put the new one on another node); another user's or device's connection stays (``take_over``). Commands carry their
time; a node ignores those older than itself (a new node's group reads the topic from the
start).
"""

from __future__ import annotations

import logging
from typing import Protocol

from chatmq.core.bus.base import Bus, Record
from chatmq.core.control import publish_command
from chatmq.core.ids import now_ms
from chatmq.core.records import COMMANDS, Command, Kick, KickPrincipal, Takeover
from chatmq.core.topics import CONTROL
from chatmq.core.worker import BusWorker
from chatmq.services.registry.sessions import Connection, ConnectionTable, Registry

log = logging.getLogger(__name__)


class Kicker(Protocol):
    """What a node offers the control worker (``chatmq.run.components.BrokerNode``)."""

    async def kick(self, client_id: str) -> bool: ...

    async def take_over(self, client_id: str, kind: str, principal: str) -> bool:
        """Close the live connection ``client_id`` if it is of ``principal`` (``kind``: user or device)."""
        ...

    async def kick_principal(self, principal_id: str) -> int: ...


class BusSessionControl:
    """``SessionControl`` of the cluster's API: sessions from ``table``, commands over the bus."""

    def __init__(self, bus: Bus, table: ConnectionTable, registry: Registry) -> None:
        self._bus = bus
        self._table = table
        self._registry = registry

    def sessions(self) -> list[Connection]:
        return self._table.all()

    async def kick(self, client_id: str) -> bool:
        """Ask the node holding ``client_id`` to close it; False when no node reported such a session."""
        holders = [c for c in self._table.all() if c.client_id == client_id]
        for conn in holders:
            await self._command(conn.node, Kick(client_id, conn.node, now_ms()))
        return bool(holders)

    async def kick_principal(self, principal_id: str) -> int:
        """Ask every node to close the connections of ``principal_id`` and its devices; returns the
        number of the principal's own connections known here (devices are counted by the nodes)."""
        await self._command(principal_id, KickPrincipal(principal_id, now_ms()))
        return len(self._table.of(principal_id))

    async def online_users(self) -> int:
        return await self._registry.online_count()

    async def _command(self, key: str, command: Command) -> None:
        await publish_command(self._bus, key, command)


class ControlWorker(BusWorker):
    """Carries out ``chat.control`` commands for node ``node`` (its own consumer group)."""

    def __init__(self, bus: Bus, node: str, kicker: Kicker) -> None:
        super().__init__(bus, f"control.{node}", [CONTROL])
        self._node = node
        self._kicker = kicker
        self._since = now_ms()

    async def process(self, records: list[Record]) -> None:
        for command in COMMANDS.read_all(records):
            if command.ts < self._since:
                continue  # from before this node started: its sessions are not there any more
            if isinstance(command, Kick):
                if command.node == self._node:
                    await self._kicker.kick(command.client_id)
            elif isinstance(command, Takeover):
                if command.node == self._node:
                    continue
                if not command.id:
                    log.warning("ignored a takeover of %s from node %s that names no user or device (a node of an "
                                "older version?)", command.client_id, command.node)
                elif await self._kicker.take_over(command.client_id, command.kind, command.id):
                    log.info("closed %s: %s %s connected with it again on node %s", command.client_id,
                             command.kind, command.id, command.node)
            else:
                closed = await self._kicker.kick_principal(command.id)
                if closed:
                    log.info("closed %d connection(s) of %s on operator request", closed, command.id)
