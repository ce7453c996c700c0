"""``DeviceBook``: each user's devices (the MQTT client ids it connected with), as the routers need
them on the message path without a store read per message.

A user's devices come from the store (``Store.sessions_of``, one read for every user of a batch not
known, known too long, or whose device sending now is not among those known: at most once a second)
and are kept ``ttl`` seconds. The storage service records each connect of a device
(``Store.touch_session``) and tells the book (``forget``) when it shares the process (the embedded
server), so a new device counts at once there; in a cluster a router learns of it within ``ttl``,
or as soon as it sends anything. A device it does not know of yet misses nothing it had not already
got: the new device's first sync reads the last ``sync_window`` of its conversations from history.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from chatmq.services.store.base import Store


class DeviceBook:
    def __init__(self, store: Store, ttl: float = 10.0, size: int = 100_000) -> None:
        self._store = store
        self._ttl = ttl
        self._size = size
        # user -> (expires, client ids, no new read for an unknown client id before)
        self._known: dict[str, tuple[float, tuple[str, ...], float]] = {}

    async def of(self, seen: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
        """The client ids of the user of each ``(user, client id)`` (empty for a user with none recorded),
        read again where that client id is not among them (a device the book did not know of yet; an
        empty client id, from no device, is content with what the book knows)."""
        now = time.monotonic()
        out: dict[str, tuple[str, ...]] = {}
        missing: list[str] = []
        for user, client in seen:
            entry = self._known.get(user)
            if entry is not None and entry[0] > now and (not client or client in entry[1] or now < entry[2]):
                out[user] = entry[1]
            elif user not in missing:
                missing.append(user)
        if missing:
            found = await self._store.sessions_of(missing)
            if len(self._known) + len(missing) > self._size:
                self._known.clear()
            for user in missing:
                clients = tuple(s.client_id for s in found.get(user, []))
                self._known[user] = (now + self._ttl, clients, now + 1.0)
                out[user] = clients
        return out

    def forget(self, user: str) -> None:
        """Read ``user``'s devices from the store next time (one was added or removed)."""
        self._known.pop(user, None)


def others(devices: dict[str, tuple[str, ...]], user: str, client: str) -> tuple[str, ...]:
    """``user``'s devices but ``client`` (none when the node did not say which device ``client`` is)."""
    known = devices.get(user)
    if not client or not known or (len(known) == 1 and known[0] == client):  # the usual case: one device
        return ()
    return tuple(c for c in known if c != client)
