"""The rules of presence (issue 15), free of I/O: when a change is announced, and what a viewer is shown.

``Debounce``: a user's last device going away is an ``offline`` only once ``grace_ms`` passed without
any device of the user online again; a reconnect within it is no change. ``view``: a user's presence is
shown to itself and to its mutual contacts (each has the other on its contact list); a user with
``presence_visibility: nobody`` is shown to them as offline, never seen; to anyone else it is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatmq.services.store.base import PresenceState

#: A reconnect within this many ms of the last device going away is no change.
OFFLINE_GRACE_MS = 5000


class Debounce:
    """Users whose last device went away, until they are online again or ``grace_ms`` passed."""

    def __init__(self, grace_ms: int = OFFLINE_GRACE_MS) -> None:
        self._grace = grace_ms
        self._gone: dict[str, int] = {}  # user -> when (ms) its last device went away

    def went_away(self, user: str, at: int) -> None:
        """The user's last device (on some node) went away at ``at`` (ms)."""
        self._gone.setdefault(user, at)

    def came_back(self, user: str) -> bool:
        """A device of the user is online again; True when it was within the grace (no change)."""
        return self._gone.pop(user, None) is not None

    def due(self, now: int) -> list[tuple[str, int]]:
        """``(user, went away at)`` of those away for ``grace_ms`` by ``now``, taken off the list."""
        done = [(u, at) for u, at in self._gone.items() if now - at >= self._grace]
        for u, _ in done:
            del self._gone[u]
        return done

    def __len__(self) -> int:
        return len(self._gone)


@dataclass(frozen=True, slots=True)
class Shown:
    """What a viewer is shown of ``user``: ``state`` None when it may not know."""

    user: str
    state: str | None
    last_seen: int | None


def view(viewer: str, user: str, mutual: bool, stored: PresenceState) -> Shown:
    """What ``viewer`` is shown of ``user`` (``mutual``: each has the other on its contact list)."""
    if viewer == user:
        return Shown(user, stored.state, stored.since)
    if not mutual:
        return Shown(user, None, None)
    if stored.visibility == "nobody":
        return Shown(user, "offline", None)
    return Shown(user, stored.state, stored.since)
