"""The router: 1:1 messages and receipts from ``chat.outbox``.

Messages: the recipient must be a registered user (else ``unknown_recipient``); the
message is committed with one pending item for the recipient, acked, and delivered
when the recipient is online. Receipts: only for messages addressed to the receipt's
sender (directly or through a group they are in); ``delivered`` removes them from
the sender's pending queue; the receipt goes back to each message's original sender.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import MessageIn, receipt_envelope
from chatmq.core.ids import conversation_key
from chatmq.core.records import OUTBOX_RECORDS
from chatmq.core.topics import OUTBOX
from chatmq.core.worker import BusWorker
from chatmq.services.chat.acceptance import Acceptor, Submission
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store import Group, Store

log = logging.getLogger(__name__)


class Router(BusWorker):

    def __init__(self, bus: Bus, store: Store, outlet: Outlet) -> None:
        super().__init__(bus, "router", [OUTBOX])
        self._store = store
        self._outlet = outlet
        self._acceptor = Acceptor(store, outlet)

    async def process(self, records: list[Record]) -> None:
        items = OUTBOX_RECORDS.read_all(records)
        recipients = {i.env.to for i in items if isinstance(i.env, MessageIn) and i.env.to is not None}
        known = await self._store.existing_user_ids(sorted(recipients)) if recipients else set()
        batch: list[Submission] = []
        receipts: dict[tuple[str, str], list[str]] = {}  # the batch's receipts, merged per (user, status)
        for item in items:
            env, sender, node = item.env, item.sender, item.node
            if not isinstance(env, MessageIn):
                receipts.setdefault((sender, env.status), []).extend(env.ids)
                continue
            if env.to is None:
                log.warning("skipping a group message on %s (from %s)", OUTBOX, sender)
            elif env.to not in known:
                await self._acceptor.refuse(sender, node, "unknown_recipient", f"no user {env.to!r}", env.id)
            else:
                batch.append(Submission(sender, node, env.id, env.to, None,
                                        conversation_key(sender, env.to), env.body, [env.to]))
        await self._acceptor.accept(batch)
        await self._receipts(receipts)

    async def _receipts(self, runs: dict[tuple[str, str], list[str]]) -> None:
        """Handle a batch's receipts merged per (user, status), after the batch's messages, with one
        ``get_messages`` for the batch, the ``remove_pending`` calls issued together, and the receipts
        for the original senders sent together, in the order each pair first came. The store and bus
        round trips per batch stay a handful however many receipts a backlog brings (clients confirm
        one message at a time); one after another, each pair cost several round trips, each waiting
        its turn on a busy event loop.

        Moving receipts after messages keeps every order that exists: a receipt names messages
        accepted in an earlier batch (their server ids reach a client only with a delivery, after the
        commit), and no order is promised between a receipt (keyed by its user) and a message (keyed
        by its conversation): they may sit in different partitions.

        A receipt counts for messages addressed to its user: a 1:1 message to them, a group message
        still pending for them (even after they left the group), or a message of a group they are a
        member of (members may read the group's whole history)."""
        if not runs:
            return
        runs = {key: list(dict.fromkeys(ids)) for key, ids in runs.items()}
        wanted = list(dict.fromkeys(i for ids in runs.values() for i in ids))
        stored = {m.server_id: m for m in await self._store.get_messages(wanted)}
        # a delivered receipt confirms the user's own pending copies: those were addressed to them
        confirming = [(user, ids) for (user, status), ids in runs.items() if status == "delivered"]
        removed = await asyncio.gather(*(self._store.remove_pending(user, ids) for user, ids in confirming))
        confirmed = {user: set(r) for (user, _), r in zip(confirming, removed, strict=True)}
        groups: dict[str, Group | None] = {}
        notes: list[tuple[str, bytes]] = []
        for (user, status), ids in runs.items():
            by_sender: dict[str, list[str]] = defaultdict(list)
            for m in (stored[i] for i in ids if i in stored):
                if m.sender == user:
                    continue
                allowed = m.server_id in confirmed.get(user, ()) or (m.group is None and m.to == user)
                if not allowed and m.group is not None:
                    if m.group not in groups:
                        groups[m.group] = await self._store.get_group(m.group)
                    group = groups[m.group]
                    allowed = group is not None and group.is_member(user)
                if allowed:
                    by_sender[m.sender].append(m.server_id)
            notes.extend((sender, receipt_envelope(status, sids, user)) for sender, sids in by_sender.items())
        await self._outlet.notify_many(notes)
