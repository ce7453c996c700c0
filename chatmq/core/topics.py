"""Bus topic names; the topics are declared in ``config/topics.toml``, the records each carries are
typed in ``chatmq.core.records`` (its docstring lists them by topic, with their keys and JSON)."""

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
DEVICES = "chat.devices"
DEVICE_EVENTS = "chat.device_events"
COMMAND_RESULTS = "chat.command-results"


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
               HEARTBEATS, DEVICES, DEVICE_EVENTS,
               COMMAND_RESULTS} - {t.name for t in specs}
    if missing:
        raise ConfigError(f"topic declarations {path}: missing {', '.join(sorted(missing))}")
    return specs
