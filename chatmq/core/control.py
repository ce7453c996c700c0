"""The ``chat.control`` record: commands to broker nodes (kick a client, kick a principal's
connections, announce a takeover), stamped with the time they were sent."""

from __future__ import annotations

from typing import Any

import orjson

from chatmq.core.bus.base import Bus
from chatmq.core.ids import now_ms
from chatmq.core.topics import CONTROL


async def publish_command(bus: Bus, key: str, command: dict[str, Any]) -> None:
    """Put ``command`` (stamped with the time) on ``chat.control`` keyed by ``key``."""
    await bus.publish(CONTROL, key.encode(), orjson.dumps({**command, "ts": now_ms()}))


async def announce_takeover(bus: Bus, node: str, client_id: str) -> None:
    """Tell the other nodes that ``client_id`` is now connected to ``node``."""
    await publish_command(bus, client_id, {"action": "takeover", "client_id": client_id, "node": node})
