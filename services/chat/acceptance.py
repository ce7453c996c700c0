"""Accepting messages: commit a batch to the store, then ack each sender and deliver to recipients.

The ``ack`` is published only after ``Store.accept_messages`` committed, so an ack means
durable. A repeated (sender, client id) is acked again with the first server id; the copies of it
still pending for recipients are delivered again (the first attempt may have stopped
between the commit and the delivery: a router killed there), and clients drop what they
already have by server id. Recipients who are offline get a push notification (``Outlet.push_offline``),
last: a push never delays an ack or a delivery.

A message whose body names a file (``"body": {"file": "<file_id>"}``) is taken only when its sender
may read that file (``forbidden`` otherwise), and the file is recorded as sent in the message's
conversation before the message is committed, so every recipient can fetch it. Bodies without a
``"file"`` member cost no store call (a byte search decides).

Each recipient's envelope is made once, here, as JSON bytes (a group message's per member from one
template, ``address``): the same bytes are stored as the pending item and delivered. The body is the
client's bytes, validated at the edge and never re-encoded.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import msgspec

from chatmq.core.envelopes import ErrorCode, ack_envelope, address, error_envelope, message_envelope, message_id
from chatmq.core.ids import now_ms, server_id
from chatmq.core.metrics import MESSAGES_ACCEPTED, MESSAGES_REFUSED
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store.base import AcceptResult, DeviceConfirm, NewMessage, Route, Store
from chatmq.services.store.files import FileStore, may_read

_ACCEPTED = {(kind, result): MESSAGES_ACCEPTED.labels(kind, result)
             for kind in ("direct", "group") for result in ("new", "duplicate")}


@dataclass(frozen=True, slots=True)
class Submission:
    """An outbox message from ``sender`` (connected to ``node``) for ``recipients``."""

    sender: str
    node: str
    client_id: str
    to: str | None
    group: str | None
    conversation: str
    body: msgspec.Raw
    recipients: list[str]
    reply_to: str | None = None  # checked by the router: a message of the same conversation
    device: str = ""  # the sender's MQTT client id
    echo: bool = False  # the sender has other devices: they get a copy (pending for the sender)


_FILE_KEY = re.compile(rb'"file"')


class _FileRef(msgspec.Struct):
    file: object = None


def file_reference(body: msgspec.Raw) -> str | None:
    """The file id a message body names (its top-level ``"file"`` string), if any."""
    if _FILE_KEY.search(memoryview(body)) is None:  # read in place: a body without a file costs a scan
        return None
    try:
        ref = msgspec.json.decode(body, type=_FileRef)
    except msgspec.DecodeError:  # not an object: the edge let it through as an opaque body
        return None
    return ref.file if isinstance(ref.file, str) else None


class Acceptor:
    def __init__(self, store: Store, outlet: Outlet, files: FileStore | None = None) -> None:
        self._store = store
        self._outlet = outlet
        self._files = files

    async def _with_files(self, subs: list[Submission]) -> list[Submission]:
        """``subs`` without the messages naming a file their sender may not read (refused with
        ``forbidden``); the files of the others recorded in their conversations."""
        kept: list[Submission] = []
        for sub in subs:
            file_id = file_reference(sub.body)
            if file_id is not None:
                info = await self._files.info(file_id) if self._files is not None else None
                if info is None or info.parent is not None or not await may_read(info, sub.sender, self._store):
                    await self.refuse(sub.sender, sub.node, "forbidden", f"no such file: {file_id[:40]}",
                                      sub.client_id)
                    continue
                if self._files is not None:
                    await self._files.add_conversation(file_id, sub.conversation)
            kept.append(sub)
        return kept

    async def refuse(self, sender: str, node: str, code: ErrorCode, reason: str, client_id: str | None,
                     device: str = "") -> None:
        """Answer the sender's connection (MQTT client id ``device``) with an ``error`` envelope."""
        MESSAGES_REFUSED.labels(code).inc()
        await self._outlet.to_node(node, sender, [error_envelope(code, reason, client_id)], device)

    async def accept(self, subs: list[Submission], confirms: list[tuple[str, list[str]]] | None = None,
                     device_confirms: list[DeviceConfirm] | None = None) -> list[list[Route]]:
        """Store ``subs`` in one transaction, then ack and deliver in their order. ``confirms`` are the
        batch's ``delivered`` receipts, ``(user, server ids)``, of users with one device, and
        ``device_confirms`` those of users with several: their pending items are taken (or marked) in
        the same unit of work (``Store.commit_batch``) and their routes returned, in order (those of
        ``confirms`` first), for the caller to answer. A submission with ``echo`` is also pending for
        its sender (its sending device marked as having it) and sent to the sender's other devices."""
        confirms = confirms or []
        device_confirms = device_confirms or []
        subs = await self._with_files(subs)
        if not subs and not confirms and not device_confirms:
            return []
        news: list[NewMessage] = []
        templates: list[bytes] = []
        for s in subs:
            sid, ts = server_id(), now_ms()
            echo = s.echo and s.sender not in s.recipients
            if s.group is None:
                envelopes = {r: message_envelope(sid, s.client_id, s.sender, r, None, s.body, ts, s.reply_to)
                             for r in s.recipients}
                if echo and s.to is not None:  # the sender's other devices: the recipient's very envelope
                    envelopes[s.sender] = envelopes[s.to]
                templates.append(b"")
            else:
                template = message_envelope(sid, s.client_id, s.sender, None, s.group, s.body, ts, s.reply_to)
                envelopes = {r: address(template, r) for r in s.recipients}
                if echo:  # the sender's other devices: the group's envelope, ``to`` null
                    envelopes[s.sender] = template
                templates.append(template)
            news.append(NewMessage(sid, s.client_id, s.sender, s.to, s.group, s.conversation, bytes(s.body), ts,
                                   envelopes, s.reply_to, s.device if echo else ""))
        results, taken = await self._store.commit_batch(news, confirms, device_confirms)
        if not subs:
            return taken
        copies = await self.pending_copies(results)
        acks: dict[tuple[str, str, str], list[bytes]] = defaultdict(list)  # by (node, sender, its device)
        deliveries: list[tuple[str, bytes]] = []
        echoes: list[tuple[str, str, bytes]] = []  # (sender, its sending device, envelope) for its other devices
        fan_outs: list[tuple[str, list[str], bytes]] = []
        counts = dict.fromkeys(_ACCEPTED, 0)
        for sub, new, template, result in zip(subs, news, templates, results, strict=True):
            counts["direct" if sub.group is None else "group", "duplicate" if result.duplicate else "new"] += 1
            acks[(sub.node, sub.sender, sub.device)].append(ack_envelope(sub.client_id, result.server_id, result.ts))
            to_self = sub.group is None and sub.to == sub.sender  # a note to oneself: every device gets it
            if result.duplicate:
                for user, env in copies.pop(result.server_id, []):  # in its place: order holds
                    if user == sub.sender and not to_self:
                        echoes.append((user, sub.device, env))
                    else:
                        deliveries.append((user, env))
                continue
            if sub.sender in new.envelopes and not to_self:
                echoes.append((sub.sender, sub.device, new.envelopes[sub.sender]))
            if sub.group is None:
                deliveries.extend((u, env) for u, env in new.envelopes.items() if u != sub.sender or to_self)
            elif sub.recipients:  # one record per node with the member list, not one per member
                fan_outs.append((sub.group, sub.recipients, template))
        for key, count in counts.items():
            if count:
                _ACCEPTED[key].inc(count)
        await self._outlet.to_nodes([(node, sender, envs, device) for (node, sender, device), envs in acks.items()])
        offline = set(await self._outlet.deliver(deliveries))
        absent = set(await self._outlet.fan_out_many(fan_outs))
        if echoes:
            await self._outlet.copies(echoes)
        # last, so it never delays an ack or a delivery: pushes for the recipients who are offline
        await self._outlet.push_offline([*((u, env) for u, env in deliveries if u in offline),
                                         *((u, t) for _, users, t in fan_outs for u in users if u in absent)])
        return taken

    async def pending_copies(self, results: list[AcceptResult]) -> dict[str, list[tuple[str, bytes]]]:
        """The still-pending copies of the repeated messages (or actions) among ``results`` (not those
        first stored in this very batch), by server id."""
        fresh = {r.server_id for r in results if not r.duplicate}
        repeated = list(dict.fromkeys(r.server_id for r in results if r.duplicate and r.server_id not in fresh))
        copies: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        if repeated:
            for user, env in await self._store.pending_copies(repeated):
                copies[message_id(env) or ""].append((user, env))
        return copies
