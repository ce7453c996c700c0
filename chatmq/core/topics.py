"""Bus topic names and the JSON records they carry; the topics are declared in ``config/topics.toml``.

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
  ``{"action": "kick", "client_id", "node"}``, ``{"action": "kick_principal", "id"}`` (every node), or
  ``{"action": "takeover", "client_id", "node"}`` (a node took a connection: the others close theirs).
* ``chat.push`` (key: user): a push notification for an offline user (``chatmq.services.push.records``),
  ``{"user", "kind": "message"|"event", "id", "from", "conversation", "group": bool, "event", "preview"}``.
* ``chat.heartbeats`` (key: instance; compacted, one partition): every process every
  ``heartbeat_interval`` (``chatmq.run.ops.heartbeat``), ``{"instance", "part", "node", "host", "pid", "ops_url",
  "started", "ready", "not_ready": {component: reason}, "interval", "ts"}``; ``{"instance", "stopped": true, "ts"}``
  when it stops cleanly.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path

from chatmq.core.bus.base import TopicSpec
from chatmq.core.errors import ConfigError

OUTBOX = "chat.outbox"
GROUP_OUTBOX = "chat.group-outbox"
PRESENCE = "chat.presence"
NOTICES = "chat.notices"
TELEMETRY = "chat.telemetry"
CONNECTIONS = "chat.connections"
CONTROL = "chat.control"
HEARTBEATS = "chat.heartbeats"
PUSH = "chat.push"


def deliver_topic(node: str) -> str:
    """The topic carrying inbox deliveries to broker node ``node``."""
    return f"chat.deliver.{node}"


TOPICS_FILE = Path(str(importlib.resources.files("chatmq.config").joinpath("topics.toml")))


def topic_specs(partitions: int, nodes: list[str], path: Path = TOPICS_FILE) -> list[TopicSpec]:
    """The topics declared in ``config/topics.toml`` (``chat.deliver.{node}`` once per node of
    ``nodes``), with ``partitions`` where a topic does not set its own. ``ConfigError`` when the
    file is unreadable or a declaration is bad."""
    try:
        declared = tomllib.loads(path.read_text()).get("topic", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"topic declarations {path}: {exc}") from exc
    specs: list[TopicSpec] = []
    for entry in declared:
        name, count, compacted = entry.get("name"), entry.get("partitions", partitions), entry.get("compacted", False)
        if not isinstance(name, str) or not isinstance(count, int) or count < 1 or not isinstance(compacted, bool):
            raise ConfigError(f"topic declarations {path}: bad entry {entry!r}")
        names = [name.format(node=n) for n in nodes] if "{node}" in name else [name]
        specs.extend(TopicSpec(n, count, compacted) for n in names)
    missing = {OUTBOX, GROUP_OUTBOX, PRESENCE, NOTICES, TELEMETRY, CONNECTIONS, CONTROL, PUSH,
               HEARTBEATS} - {t.name for t in specs}
    if missing:
        raise ConfigError(f"topic declarations {path}: missing {', '.join(sorted(missing))}")
    return specs
