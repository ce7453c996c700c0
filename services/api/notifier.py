"""How the API hands ``event`` envelopes to users' inboxes, and what it tells the routers (changed blocks,
conversations marked read)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from chatmq.core.records import CommandDone
from chatmq.services.store.base import DeviceCommand


class Notifier(Protocol):
    """Delivers an inbox envelope to users (online now, or as a pending notice later).

    The API calls it after a group change is committed, with every recipient once.
    """

    async def notify(self, user_ids: list[str], envelope: dict[str, Any]) -> None:
        """Put ``envelope`` into the inbox of every user in ``user_ids``."""
        ...


class DeviceLink(Protocol):
    """How the API reaches devices (through the device worker)."""

    async def shadow_changed(self, device_id: str) -> None:
        """The desired state of ``device_id`` changed: an online device gets its new delta."""
        ...

    async def send_command(self, command: DeviceCommand, wait: float | None) -> CommandDone | None:
        """Send a stored command; with ``wait``, its outcome when it comes within ``wait`` seconds."""
        ...

    async def send_job(self, job_id: str, device_ids: list[str], per_minute: int | None = None) -> None:
        """Send a stored job to its devices (``per_minute`` of them a minute when given)."""
        ...


class ChatFeed(Protocol):
    """What the API tells the routers (``chatmq.services.chat.feed``)."""

    async def blocks_changed(self, blocker: str, blocked: str, groups: list[str]) -> None:
        """``blocker`` (a member of ``groups``) blocked or unblocked ``blocked``; already committed."""
        ...

    async def read(self, user: str, server_ids: list[str]) -> None:
        """``user`` read ``server_ids``: a ``read`` receipt to their senders."""
        ...

    async def presence_visibility(self, user: str, visibility: Literal["contacts", "nobody"]) -> None:
        """``user`` changed its ``presence_visibility``; already committed."""
        ...
