"""Publishing on ``chat.control``: commands to broker nodes (``chatmq.core.records.Command``: kick a
client, kick a principal's connections, announce a takeover), stamped with the time they were sent."""

from __future__ import annotations

from chatmq.core.bus.base import Bus
from chatmq.core.ids import now_ms
from chatmq.core.records import Command, Takeover
from chatmq.core.topics import CONTROL


async def publish_command(bus: Bus, key: str, command: Command) -> None:
    """Put ``command`` on ``chat.control`` keyed by ``key``."""
    await bus.publish(CONTROL, key.encode(), command)


async def announce_takeover(bus: Bus, node: str, client_id: str, kind: str, principal: str) -> None:
    """Tell the other nodes that ``client_id`` is now connected to ``node`` as ``principal`` (a user or
    device id; ``kind``: ``user`` or ``device``): they close their connection with it if it is the same
    principal's."""
    await publish_command(bus, client_id, Takeover(client_id, node, now_ms(), kind, principal))
