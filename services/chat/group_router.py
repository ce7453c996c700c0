"""The group router: group messages from ``chat.group-outbox``.

The sender must be a member (else ``not_member``; an unknown group is
``unknown_recipient``). One copy per member except the sender and those who block the
sender (``chatmq.services.chat.blocks``: they are not told, nor is the sender), each carrying
the group id, is committed as that member's pending item, then acked and delivered. A ``reply_to``
must name a message of the same group (read by primary key, for such messages only).
"""

from __future__ import annotations

import logging

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import MessageIn, TypingIn, typing_envelope
from chatmq.core.records import OUTBOX_RECORDS, BlocksChanged
from chatmq.core.topics import GROUP_OUTBOX
from chatmq.core.worker import BusWorker
from chatmq.services.chat.acceptance import Acceptor, Submission
from chatmq.services.chat.actions import reply_conversations, reply_refusal
from chatmq.services.chat.blocks import JOIN_SKEW_MS, BlockList
from chatmq.services.chat.devices import DeviceBook, others
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store import Store
from chatmq.services.store.files import FileStore

log = logging.getLogger(__name__)


class GroupRouter(BusWorker):

    def __init__(self, bus: Bus, store: Store, outlet: Outlet, files: FileStore | None = None,
                 devices: DeviceBook | None = None) -> None:
        super().__init__(bus, "group-router", [GROUP_OUTBOX])
        self._store = store
        self._acceptor = Acceptor(store, outlet, files)
        self._blocks = BlockList(store)
        self._outlet = outlet
        self._devices = devices or DeviceBook(store)

    async def process(self, records: list[Record]) -> None:
        batch: list[Submission] = []
        items = OUTBOX_RECORDS.read_all(records)
        # the batch's groups, read at once (one store operation, however many groups the batch names)
        named = [i.env.group for i in items if isinstance(i.env, MessageIn | TypingIn) and i.env.group is not None]
        groups = await self._store.get_groups(named) if named else {}
        replies = await reply_conversations(self._store, items)
        blockers = await self._blocks.lookup(i.sender for i in items if isinstance(i.env, MessageIn))
        fresh: set[str] = set()  # senders whose blockers were read again in this batch
        devices = await self._devices.of({(i.sender, i.client) for i in items if i.client})
        typing: list[tuple[str, list[str], bytes]] = []
        for item in items:
            env, sender, node = item.env, item.sender, item.node
            if isinstance(env, BlocksChanged):  # in order: the messages after it see the change
                blockers[env.user] = await self._blocks.refresh(env.user)
                fresh.add(env.user)
                continue
            if isinstance(env, TypingIn) and env.group is not None:
                found = groups.get(env.group)
                if found is not None and found.is_member(sender):
                    members = [m for m in found.member_ids() if m != sender]
                    typing.append((env.group, members, typing_envelope(sender, None, env.group, env.state)))
                else:
                    await self._acceptor.refuse(sender, node, "not_member" if found else "unknown_recipient",
                                                f"you are not a member of {env.group}" if found
                                                else f"no group {env.group!r}", None, item.client)
                continue
            if not isinstance(env, MessageIn) or env.group is None:
                log.warning("skipping a record on %s that is no group message (from %s)", GROUP_OUTBOX, sender)
                continue
            gid = env.group
            group = groups.get(gid)
            if group is None:
                await self._acceptor.refuse(sender, node, "unknown_recipient", f"no group {gid!r}", env.id,
                                            item.client)
            elif not group.is_member(sender):
                await self._acceptor.refuse(sender, node, "not_member", f"you are not a member of {gid}", env.id,
                                            item.client)
            elif env.reply_to is not None and replies.get(env.reply_to) != gid:
                await self._acceptor.refuse(sender, node, *reply_refusal(env.reply_to), env.id, item.client)
            else:
                joined = max(m.joined_at for m in group.members)
                if sender not in fresh and joined + JOIN_SKEW_MS >= self._blocks.read_at(sender):
                    blockers[sender] = await self._blocks.refresh(sender)  # a newcomer may block the sender
                    fresh.add(sender)
                blocking = blockers.get(sender, frozenset())
                recipients = [m for m in group.member_ids() if m != sender and m not in blocking]
                batch.append(Submission(sender, node, env.id, None, gid, gid, env.body, recipients, env.reply_to,
                                        item.client, bool(others(devices, sender, item.client))))
        if typing:  # to the members online now, never kept; ahead of the batch's messages
            await self._outlet.fan_out_many(typing)
        await self._acceptor.accept(batch)
