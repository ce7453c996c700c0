"""The router: 1:1 messages and receipts from ``chat.outbox``.

Messages: the recipient must be a registered user (else ``unknown_recipient``); the
message is committed with one pending item for the recipient, acked, and delivered
when the recipient is online. Receipts: only for messages addressed to the receipt's
sender (directly or through a group they are in); ``delivered`` removes them from
the sender's pending queue; the receipt goes back to each message's original sender.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import orjson

from chatmq.bus.base import Bus, Record
from chatmq.envelopes import receipt_envelope
from chatmq.ids import conversation_key
from chatmq.services.acceptance import Acceptor, Submission
from chatmq.services.outlet import Outlet
from chatmq.services.store import Group, Store, StoredMessage
from chatmq.services.worker import BusWorker
from chatmq.topics import OUTBOX

log = logging.getLogger(__name__)


class Router(BusWorker):

    def __init__(self, bus: Bus, store: Store, outlet: Outlet) -> None:
        super().__init__(bus, "router", [OUTBOX])
        self._store = store
        self._outlet = outlet
        self._acceptor = Acceptor(store, outlet)

    async def process(self, records: list[Record]) -> None:
        items = [orjson.loads(r.value) for r in records]
        recipients = {i["env"]["to"] for i in items if i["env"]["type"] == "message"}
        known = await self._store.existing_user_ids(sorted(recipients)) if recipients else set()
        batch: list[Submission] = []
        receipts: dict[tuple[str, str], list[str]] = {}  # a run of receipts, merged per (user, status)
        for item in items:
            env, sender, node = item["env"], item["from"], item["node"]
            if env["type"] == "receipt":
                await self._acceptor.accept(batch)  # keep order: earlier messages first
                batch = []
                receipts.setdefault((sender, env["status"]), []).extend(env["ids"])
                continue
            await self._receipts(receipts)  # and earlier receipts before later messages
            receipts = {}
            if env["to"] not in known:
                await self._acceptor.refuse(sender, node, "unknown_recipient",
                                            f"no user {env['to']!r}", env["id"])
            else:
                batch.append(Submission(sender, node, env["id"], env["to"], None,
                                        conversation_key(sender, env["to"]), env["body"], [env["to"]]))
        await self._acceptor.accept(batch)
        await self._receipts(receipts)

    async def _receipts(self, runs: dict[tuple[str, str], list[str]]) -> None:
        """Handle a run of receipts merged per (user, status), in the order each pair first came
        (clients confirm one message at a time: one store round trip per pair instead of per receipt)."""
        for (user, status), ids in runs.items():
            await self._receipt(user, status, list(dict.fromkeys(ids)))

    async def _receipt(self, user: str, status: str, ids: list[str]) -> None:
        """A receipt counts for messages addressed to ``user``: a 1:1 message to them, a group
        message still pending for them (even after they left the group), or a message of a group
        they are a member of (members may read the group's whole history)."""
        messages = await self._store.get_messages(ids)
        # a delivered receipt confirms the user's own pending copies: those were addressed to them
        confirmed = set(await self._store.remove_pending(user, ids)) if status == "delivered" else set()
        groups: dict[str, Group | None] = {}
        allowed: list[StoredMessage] = []
        for m in messages:
            if m.sender == user:
                continue
            if m.server_id in confirmed or (m.group is None and m.to == user):
                allowed.append(m)
            elif m.group is not None:
                if m.group not in groups:
                    groups[m.group] = await self._store.get_group(m.group)
                group = groups[m.group]
                if group is not None and group.is_member(user):
                    allowed.append(m)
        by_sender: dict[str, list[str]] = defaultdict(list)
        for m in allowed:
            by_sender[m.sender].append(m.server_id)
        for sender, sids in by_sender.items():
            await self._outlet.notify([sender], receipt_envelope(status, sids, user))
