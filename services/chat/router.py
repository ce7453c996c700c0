"""The router: 1:1 messages, receipts and message actions from ``chat.outbox``.

Messages: the recipient must be a registered user (else ``unknown_recipient``) who does not
block the sender (else ``blocked``: nothing is stored, delivered or pushed); the
message is committed with one pending item for the recipient, acked, and delivered
when the recipient is online. Receipts: only for messages addressed to the receipt's
sender (directly or through a group they are in); ``delivered`` removes them from
the sender's pending queue (of a user with several devices: once each device confirmed them);
the receipt goes back to each message's original sender, and to the user's other devices.
A message from a user with other devices is also pending for the sender, for them (``DeviceBook``).
Message actions (edit, delete, reaction, of 1:1 and group messages alike) are handled after the
batch's messages (``chatmq.services.chat.actions``); a message's ``reply_to`` is checked against
the store only for the messages that carry one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable

from chatmq.core.bus.base import Bus, Record
from chatmq.core.envelopes import MessageIn, ReceiptIn, TypingIn, receipt_envelope, typing_envelope
from chatmq.core.ids import conversation_key
from chatmq.core.records import OUTBOX_RECORDS, BlocksChanged
from chatmq.core.topics import OUTBOX
from chatmq.core.worker import BusWorker
from chatmq.services.chat.acceptance import Acceptor, Submission
from chatmq.services.chat.actions import ActionHandler, ActionSubmission, reply_conversations, reply_refusal
from chatmq.services.chat.blocks import BlockList
from chatmq.services.chat.devices import DeviceBook, others
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store import Group, Store
from chatmq.services.store.base import DeviceConfirm, Route
from chatmq.services.store.files import FileStore

log = logging.getLogger(__name__)


class Router(BusWorker):

    def __init__(self, bus: Bus, store: Store, outlet: Outlet, files: FileStore | None = None,
                 edit_window: int = 48 * 3600, devices: DeviceBook | None = None) -> None:
        """``files``: where uploads referenced by messages are recorded; ``edit_window``: seconds after
        sending during which a message may be edited; ``devices``: the users' devices (shared with the
        replay of this process)."""
        super().__init__(bus, "router", [OUTBOX])
        self._store = store
        self._outlet = outlet
        self._acceptor = Acceptor(store, outlet, files)
        self._actions = ActionHandler(store, outlet, self._acceptor, edit_window)
        self._routes = Routes()
        self._blocks = BlockList(store)
        self._devices = devices or DeviceBook(store)

    async def process(self, records: list[Record]) -> None:
        items = OUTBOX_RECORDS.read_all(records)
        messages = [i for i in items if isinstance(i.env, MessageIn)]
        recipients = {i.env.to for i in items if isinstance(i.env, MessageIn | TypingIn) and i.env.to is not None}
        known = await self._store.existing_user_ids(sorted(recipients)) if recipients else set()
        replies = await reply_conversations(self._store, items)
        typists = {i.sender for i in items if isinstance(i.env, TypingIn) and i.env.to is not None}
        senders = {i.sender for i in messages} | typists
        blockers = await self._blocks.lookup(senders) if senders else {}
        # the devices of the users who sent from one, and of those whose receipts came from no device (the
        # REST API's ``POST /conversations/{id}/read``): all their devices are told of those
        devices = await self._devices.of({(i.sender, i.client) for i in items
                                          if i.client or (isinstance(i.env, ReceiptIn) and i.env.status == "read")})
        batch: list[Submission] = []
        actions: list[ActionSubmission] = []
        typing: list[tuple[str, bytes]] = []
        # the batch's receipts, merged per (user, device, status)
        receipts: dict[tuple[str, str, str], list[str]] = {}
        for item in items:
            env, sender, node = item.env, item.sender, item.node
            if isinstance(env, BlocksChanged):  # in order: the messages after it see the change
                blockers[env.user] = await self._blocks.refresh(env.user)
                continue
            if isinstance(env, TypingIn):
                if env.to is not None and env.to in known:
                    if env.to not in blockers.get(sender, ()):  # a blocker is not told (nor is the typist)
                        typing.append((env.to, typing_envelope(sender, env.to, None, env.state)))
                elif env.to is not None:
                    await self._acceptor.refuse(sender, node, "unknown_recipient", f"no user {env.to!r}", None,
                                                item.client)
                continue
            if isinstance(env, ReceiptIn):
                receipts.setdefault((sender, item.client, env.status), []).extend(env.ids)
                continue
            if not isinstance(env, MessageIn):
                actions.append(ActionSubmission(sender, node, env, item.client,
                                                bool(others(devices, sender, item.client))))
            elif env.to is None:
                log.warning("skipping a group message on %s (from %s)", OUTBOX, sender)
            elif env.to not in known:
                await self._acceptor.refuse(sender, node, "unknown_recipient", f"no user {env.to!r}", env.id,
                                            item.client)
            elif env.to in blockers.get(sender, ()):
                await self._acceptor.refuse(sender, node, "blocked", f"{env.to} blocked you", env.id, item.client)
            elif env.reply_to is not None and replies.get(env.reply_to) != conversation_key(sender, env.to):
                await self._acceptor.refuse(sender, node, *reply_refusal(env.reply_to), env.id, item.client)
            else:
                batch.append(Submission(sender, node, env.id, env.to, None, conversation_key(sender, env.to),
                                        env.body, [env.to], env.reply_to, item.client,
                                        bool(others(devices, sender, item.client))))
        if typing:  # to the recipients online now, never kept; ahead of the batch's messages
            await self._outlet.deliver(typing)
        runs: dict[tuple[str, str], list[str]] = {}  # merged per (user, status): what the senders are told
        for (user, _, status), ids in receipts.items():
            runs.setdefault((user, status), []).extend(ids)
        runs = {key: list(dict.fromkeys(ids)) for key, ids in runs.items()}
        confirming: list[tuple[str, list[str]]] = []
        on_device: list[DeviceConfirm] = []
        for (user, client, status), ids in receipts.items():
            if status == "delivered":
                peers = others(devices, user, client)
                if peers:
                    on_device.append(DeviceConfirm(user, client, list(dict.fromkeys(ids)), peers))
                else:
                    confirming.append((user, list(dict.fromkeys(ids))))
        taken = await self._acceptor.accept(batch, confirming, on_device)
        await self._actions.handle(actions)
        confirmers = [user for user, _ in confirming] + [c.user for c in on_device]
        held = {(user, r.server_id): r for user, routes in zip(confirmers, taken, strict=True) for r in routes}
        self._routes.remember(held.values())
        await self._receipts(runs, held)
        # a device's receipts, for the user's other devices (a receipt from no device: for all of them)
        echoes = [(user, client, receipt_envelope(status, list(dict.fromkeys(ids)), user))
                  for (user, client, status), ids in receipts.items()
                  if (others(devices, user, client) if client else devices.get(user))]
        if echoes:
            await self._outlet.copies(echoes)

    async def _receipts(self, runs: dict[tuple[str, str], list[str]], held: dict[tuple[str, str], Route]) -> None:
        """Answer a batch's receipts merged per (user, status), after the batch's messages. Every
        ``delivered`` run's pending items were taken with the batch's messages, in one unit of work
        (``Acceptor.accept``, ``Store.commit_batch``): ``held`` has their routes by (user, server id).
        The receipts for the original senders go out together, in the order each pair first came.
        The store and bus round trips per batch stay a handful however many receipts a backlog brings.

        Moving receipts after messages keeps every order that exists: a receipt names messages
        accepted in an earlier batch (their server ids reach a client only with a delivery, after the
        commit), and no order is promised between a receipt (keyed by its user) and a message (keyed
        by its conversation): they may sit in different partitions.

        Where a receipt goes comes from the working set, never from history on the usual path: a
        ``delivered`` receipt's pending items carry their senders; ``Routes`` remembers the routes
        taken lately (a ``read`` after its ``delivered``); a ``read`` of a message still pending
        finds it there (``Store.held_routes``). Only ids found nowhere else (a receipt repeated
        after a restart, a message read long after it was delivered, an unknown id) are looked up
        in history (``Store.get_messages``).

        A receipt counts for messages addressed to its user: a 1:1 message to them, a group message
        still pending for them (even after they left the group), or a message of a group they are a
        member of (members may read the group's whole history)."""
        if not runs:
            return
        reading = [(user, ids) for (user, status), ids in runs.items() if status == "read"]
        peek = [(user, unknown) for user, ids in reading
                if (unknown := [i for i in ids if (user, i) not in held and i not in self._routes])]
        if peek:
            for (user, _), found in zip(peek, await self._store.held_routes(peek), strict=True):
                held.update(((user, r.server_id), r) for r in found)
        missing = list(dict.fromkeys(i for (user, _), ids in runs.items() for i in ids
                                     if (user, i) not in held and i not in self._routes))
        if missing:
            self._routes.remember(Route.of(m) for m in await self._store.get_messages(missing))
        groups: dict[str, Group | None] = {}
        notes: list[tuple[str, bytes]] = []
        for (user, status), ids in runs.items():
            by_sender: dict[str, list[str]] = defaultdict(list)
            for sid in ids:
                route = held.get((user, sid)) or self._routes.get(sid)
                if route is None or route.sender == user:
                    continue
                allowed = (user, sid) in held or (route.group is None and route.to == user)
                if not allowed and route.group is not None:
                    if route.group not in groups:
                        groups[route.group] = await self._store.get_group(route.group)
                    group = groups[route.group]
                    allowed = group is not None and group.is_member(user)
                if allowed:
                    by_sender[route.sender].append(sid)
            notes.extend((sender, receipt_envelope(status, sids, user)) for sender, sids in by_sender.items())
        await self._outlet.notify_many(notes)


class Routes:
    """The routes of the messages receipts named lately, by server id, up to ``size`` of them (the
    oldest forgotten first): a ``read`` receipt usually follows its ``delivered`` within moments, and
    finds its route here instead of in history."""

    def __init__(self, size: int = 65_536) -> None:
        self._size = size
        # an OrderedDict: forgetting its oldest is O(1) (a dict's first key, after many deletions at
        # its front, is found by scanning the deleted slots: it cost a tenth of the CPU of a paced run).
        # Each route is kept as a tuple of strings, which the garbage collector stops tracking at its
        # first pass: tens of thousands of long-lived ``Route`` objects made the collector's full passes
        # come about once a second under load, each stalling the loop for 25-50 ms.
        self._routes: OrderedDict[str, tuple[str, str | None, str | None]] = OrderedDict()

    def __contains__(self, server_id: str) -> bool:
        return server_id in self._routes

    def get(self, server_id: str) -> Route | None:
        kept = self._routes.get(server_id)
        return None if kept is None else Route(server_id, *kept)

    def remember(self, routes: Iterable[Route]) -> None:
        for r in routes:
            self._routes[r.server_id] = (r.sender, r.to, r.group)
            self._routes.move_to_end(r.server_id)
        while len(self._routes) > self._size:
            self._routes.popitem(last=False)
