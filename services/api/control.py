"""How the operator API reaches live sessions: ``SessionControl``, implemented by the process that
runs the broker node (the embedded server) and, in cluster mode, over the bus."""

from __future__ import annotations

from typing import Protocol

from chatmq.services.registry.sessions import Connection


class SessionControl(Protocol):
    """Live sessions: list them, close one, close all of a user's (and their devices')."""

    def sessions(self) -> list[Connection]:
        """Every live connection, oldest first."""
        ...

    async def kick(self, client_id: str) -> bool:
        """Close the connection with MQTT client id ``client_id``; False when there is none."""
        ...

    async def kick_principal(self, principal_id: str) -> int:
        """Close every connection of a user (and of the user's devices); how many were closed."""
        ...

    async def online_users(self) -> int:
        """Users with at least one connection reading their inbox."""
        ...
