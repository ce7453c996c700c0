"""Bus topic names and the JSON records they carry.

* ``chat.outbox`` (key: conversation, or the user for receipts):
  ``{"from": user_id, "node": node, "env": <outbox envelope>}`` — 1:1 messages and receipts.
* ``chat.group-outbox`` (key: group id): the same record for group messages.
* ``chat.presence`` (key: user): ``{"event": "online"|"offline", "user", "node", "epoch"}``; (key: node)
  ``{"event": "node_started", "node", "epoch", "ts"}`` when a node (re)starts.
* ``chat.deliver.<node>`` (key: user): ``{"user", "envs": [...], "replay": null|"page"|"done", "epoch"}``;
  or (key: group) a group fan-out ``{"users": [members on that node], "env": <message without "to">}``.
* ``chat.notices`` (key: first user): ``{"users": [...], "env": <inbox envelope>}`` from the API.
* ``chat.telemetry`` (key: device): ``{"device", "owner", "reading": {...}, "ts"}``.
* ``chat.connections`` (key: user or device): ``{"event": "connected"|"disconnected", "kind":
  "user"|"device", "id", "client_id", "node", "transport": "tcp"|"ws"|null, "ts"}``; the same
  ``node_started`` record as on ``chat.presence``.
* ``chat.control`` (key: node or principal): operator commands for the broker nodes (cluster mode),
  ``{"action": "kick", "client_id", "node"}`` or ``{"action": "kick_principal", "id"}`` (every node).
"""

from __future__ import annotations

from chatmq.bus.base import TopicSpec

OUTBOX = "chat.outbox"
GROUP_OUTBOX = "chat.group-outbox"
PRESENCE = "chat.presence"
NOTICES = "chat.notices"
TELEMETRY = "chat.telemetry"
CONNECTIONS = "chat.connections"
CONTROL = "chat.control"


def deliver_topic(node: str) -> str:
    """The topic carrying inbox deliveries to broker node ``node``."""
    return f"chat.deliver.{node}"


def topic_specs(partitions: int, nodes: list[str]) -> list[TopicSpec]:
    """Every topic chatmq uses, for ``Bus.ensure_topics``."""
    names = [OUTBOX, GROUP_OUTBOX, NOTICES, TELEMETRY, CONNECTIONS, CONTROL] + [deliver_topic(n) for n in nodes]
    return [TopicSpec(n, partitions) for n in names] + [TopicSpec(PRESENCE, partitions, compacted=False)]
