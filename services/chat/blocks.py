"""Blocking on the chat path: who blocks each sender, cached in every router, and the API's word that
it changed.

The routers ask ``BlockList.lookup`` once per batch for the batch's senders: the store is read only for
senders not cached (or cached longer than ``ttl`` seconds ago), in one call; the rest is a dict lookup.
When a user blocks or unblocks someone the API commits it, then ``BusChatFeed`` puts a
``BlocksChanged`` (``chatmq.core.records``) on ``chat.outbox`` keyed by the pair's conversation and on
``chat.group-outbox`` keyed by each group of the blocker: the router that carries the pair's 1:1
messages, and the group router of each of those groups, meet it in order before any message published
after the API answered, and read that user's blockers again (``BlockList.refresh``). A group that
someone joined after a sender's entry was read (``GroupMember.joined_at``, give or take ``JOIN_SKEW_MS`` of
clock difference between hosts) has the group router read the entry again: the newcomer may block the
sender. Copies of the routers that own other partitions drop their cached entry when ``ttl`` runs out:
the bound on how long a change takes to reach a conversation that moved to another copy (a rebalance).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from chatmq.core.ids import now_ms

Blockers = frozenset[str]

#: how far the clocks of the API (which stamps ``joined_at``) and a group router may differ, in ms
JOIN_SKEW_MS = 5_000


class BlockSource(Protocol):
    """Where ``BlockList`` reads blocks from (``SocialStore.blockers_of``)."""

    async def blockers_of(self, users: list[str]) -> dict[str, set[str]]: ...


class BlockList:
    """Who blocks each sender, from ``store``: up to ``size`` senders, each kept ``ttl`` seconds at most
    (the least recently used forgotten first)."""

    def __init__(self, store: BlockSource, *, size: int = 65_536, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], int] = now_ms) -> None:
        self._store = store
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        # sender -> (monotonic time read, wall time read in ms, who blocks the sender)
        self._entries: OrderedDict[str, tuple[float, int, Blockers]] = OrderedDict()

    async def lookup(self, senders: Iterable[str]) -> dict[str, Blockers]:
        """Who blocks each of ``senders`` (one store read for those not cached, none when all are)."""
        now = self._clock()
        out: dict[str, Blockers] = {}
        missing: list[str] = []
        for sender in dict.fromkeys(senders):
            entry = self._entries.get(sender)
            if entry is None or now - entry[0] > self._ttl:
                missing.append(sender)
            else:
                self._entries.move_to_end(sender)
                out[sender] = entry[2]
        if missing:
            out.update(self._keep(now, await self._store.blockers_of(missing)))
        return out

    async def refresh(self, user: str) -> Blockers:
        """Read who blocks ``user`` again (it changed), keep and return it."""
        return self._keep(self._clock(), await self._store.blockers_of([user]))[user]

    def read_at(self, sender: str) -> int:
        """When (wall clock, ms) what is cached of ``sender`` was read; 0 when nothing is."""
        entry = self._entries.get(sender)
        return 0 if entry is None else entry[1]

    def _keep(self, now: float, found: dict[str, set[str]]) -> dict[str, Blockers]:
        kept = {user: frozenset(blockers) for user, blockers in found.items()}
        wall = self._wall()
        for user, blockers in kept.items():
            self._entries[user] = (now, wall, blockers)
            self._entries.move_to_end(user)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return kept
